"""Reference data: countries at a date, aliases, titles and roles, user layers, malformed files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relations_etl.config import Mapping
from relations_etl.errors import ReferenceDataError
from relations_etl.reference import ROLES, Reference, reference_digest
from relations_etl.settings import Settings

D = dt.date


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The shipped reference data only (the home has no user reference folder)."""
    return Reference.load(Settings(home=tmp_path_factory.mktemp("home")))


def _user_file(home: Path, name: str, text: str) -> Path:
    folder = home / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_settings_use_the_shipped_reference_dir(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert (settings.reference_dir / "country_aliases.csv").is_file()
    assert settings.user_reference_dir == tmp_path / "reference"


def test_soviet_union_before_and_after_1991(ref: Reference) -> None:
    assert ref.resolve_country("U.S.S.R.", D(1988, 12, 7)).code == "SUN"
    after = ref.resolve_country("U.S.S.R.", D(1995, 1, 1))
    assert after.code is None
    assert after.check == "country_at_date"
    assert "SUN" in (after.error or "")
    assert "1995-01-01" in (after.error or "")


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Germany, Federal Republic of", "DEU"),
        ("Czechia", "CZE"),
        ("Czech Republic", "CZE"),
        ("czech  republic", "CZE"),  # labels are compared cleaned and case-folded
        ("France", "FRA"),
        ("FR", "FRA"),
        ("NLD", "NLD"),
        ("Côte d\u2019Ivoire", "CIV"),
    ],
)
def test_labels_resolve(ref: Reference, label: str, code: str) -> None:
    resolved = ref.resolve_country(label, D(2020, 1, 1))
    assert (resolved.code, resolved.error, resolved.check) == (code, None, None)


def test_korea_is_ambiguous(ref: Reference) -> None:
    found = ref.resolve_country("Korea", D(2000, 1, 1))
    assert found.code is None
    assert found.check == "country_ambiguous"
    assert "KOR" in (found.error or "") and "PRK" in (found.error or "")


def test_korea_with_mapping_override(ref: Reference) -> None:
    assert (
        ref.for_source(Mapping(country_aliases={"Korea": "KOR"}))
        .resolve_country("Korea", D(2000, 1, 1))
        .code
        == "KOR"
    )
    assert (
        ref.for_source(Mapping(country_aliases={"korea": "kor"}))
        .resolve_country("KOREA ", None)
        .code
        == "KOR"
    )


def test_unknown_country(ref: Reference) -> None:
    found = ref.resolve_country("Atlantis", D(2000, 1, 1))
    assert found.code is None
    assert found.check == "country_known"
    assert "Atlantis" in (found.error or "")


def test_republic_of_china_depends_on_date(ref: Reference) -> None:
    assert ref.resolve_country("China, Republic of", D(1945, 8, 1)).code == "CHN"
    assert ref.resolve_country("China, Republic of", D(1970, 1, 1)).code == "TWN"
    # without a date both dated rows apply: ambiguous, not a guess
    undated = ref.resolve_country("China, Republic of", None)
    assert undated.code is None
    assert undated.check == "country_ambiguous"


def test_split_title(ref: Reference) -> None:
    assert ref.split_title("Prime Minister Mark Rutte") == ("Prime Minister", "Mark Rutte")
    assert ref.split_title("prime minister  Mark Rutte") == ("prime minister", "Mark Rutte")
    assert ref.split_title("Premier and Prince Sihanouk") == ("Premier and Prince", "Sihanouk")
    assert ref.split_title("Secretary-General") == ("Secretary-General", None)
    assert ref.split_title("Grand Poobah Bob") == (None, "Grand Poobah Bob")
    assert ref.split_title("Presidential Envoy X") == (None, "Presidential Envoy X")


def test_split_title_with_mapping_titles(ref: Reference) -> None:
    extra = {"Grand Poobah": "other"}
    assert ref.for_source(Mapping(titles=extra)).split_title("Grand Poobah Bob") == (
        "Grand Poobah",
        "Bob",
    )


@pytest.mark.parametrize(
    ("title", "country", "role"),
    [
        ("President", "ESP", "head_of_government"),
        ("President", "ISR", "head_of_state"),
        ("President", None, "head_of_state"),
        ("Secretary of State", "USA", "foreign_minister"),
        ("Secretary of State", "GBR", "other_minister"),
        ("Taoiseach", "IRL", "head_of_government"),
        ("Crown Prince", "JOR", "other"),
        ("Chancellor", "DEU", "head_of_government"),
        ("chancellor", "deu", "head_of_government"),
        ("Premier and Prince", "KHM", "head_of_government"),
        ("Grand Poobah", "FRA", None),
    ],
)
def test_role(ref: Reference, title: str, country: str | None, role: str | None) -> None:
    assert ref.role(title, country) == role


def test_role_with_mapping_titles_wins(ref: Reference) -> None:
    assert (
        ref.for_source(Mapping(titles={"president": "other"})).role("President", "ISR") == "other"
    )


def test_every_shipped_title_has_a_known_role(ref: Reference) -> None:
    roles = {role for rows in ref.titles.values() for role in rows.values()}
    assert roles <= set(ROLES)
    assert ref.titles  # not empty


def test_user_alias_makes_a_label_resolve(tmp_path: Path) -> None:
    _user_file(
        tmp_path,
        "country_aliases.csv",
        "alias,code,valid_from,valid_to,note\nAtlantis,GRC,,,Plato's island\n",
    )
    user = Reference.load(Settings(home=tmp_path))
    assert user.resolve_country("Atlantis", D(2000, 1, 1)).code == "GRC"
    # the shipped aliases are still there
    assert user.resolve_country("U.S.S.R.", D(1988, 12, 7)).code == "SUN"


def test_the_reference_is_read_again_only_when_its_files_change(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = Reference.load(settings)
    assert Reference.load(settings) is first  # a run of several sources reads it once
    _user_file(tmp_path, "country_aliases.csv", "alias,code,valid_from,valid_to\nAtlantis,GRC,,\n")
    changed = Reference.load(settings)
    assert changed is not first and changed.digest != first.digest
    assert changed.resolve_country("Atlantis", D(2000, 1, 1)).code == "GRC"
    assert changed.digest == reference_digest(settings)


def test_user_alias_replaces_the_shipped_group(tmp_path: Path) -> None:
    _user_file(tmp_path, "country_aliases.csv", "alias,code,valid_from,valid_to\nKorea,KOR,,\n")
    user = Reference.load(Settings(home=tmp_path))
    assert user.resolve_country("Korea", D(2000, 1, 1)).code == "KOR"


def test_user_title_replaces_the_shipped_row(tmp_path: Path) -> None:
    _user_file(
        tmp_path,
        "titles.csv",
        "title,role,country,note\nPresident,head_of_state,ESP,\nGrand Poobah,other,,\n",
    )
    user = Reference.load(Settings(home=tmp_path))
    assert user.role("President", "ESP") == "head_of_state"
    # other rows of the same title are kept
    assert user.role("President", "PYF") == "head_of_government"
    assert user.role("President", "ISR") == "head_of_state"
    assert user.role("Grand Poobah", "FRA") == "other"
    assert user.split_title("Grand Poobah Bob") == ("Grand Poobah", "Bob")


@pytest.mark.parametrize(
    ("name", "text", "line", "match"),
    [
        (
            "country_aliases.csv",
            "alias,code,valid_from,valid_to\nAtlantis,GRC,,\nLemuria,QQQ,,\n",
            3,
            "unknown code QQQ",
        ),
        (
            "country_aliases.csv",
            "alias,code,valid_from,valid_to\nAtlantis,GRC,1990-13-01,\n",
            2,
            "1990-13-01",
        ),
        (
            "countries_extra.csv",
            "code,name,valid_from,valid_to,kind\nXAT,Atlantis,,last week,user-assigned\n",
            2,
            "last week",
        ),
        ("titles.csv", "title,role,country\nGrand Poobah,other,\nWizard,wizard,\n", 3, "'wizard'"),
        ("organization_aliases.csv", "alias,code\nFoo Union,NOPE\n", 2, "NOPE"),
    ],
)
def test_malformed_user_file_names_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, match: str
) -> None:
    path = _user_file(tmp_path, name, text)
    with pytest.raises(ReferenceDataError, match=match) as info:
        Reference.load(Settings(home=tmp_path))
    assert f"{path}:{line}" in str(info.value)


def test_malformed_shipped_dir_names_file_and_line(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "titles.csv").write_text("title,role,country\nPresident,boss,\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError) as info:
        Reference.load(Settings(home=tmp_path / "home", reference_dir=shipped))
    assert f"{shipped / 'titles.csv'}:2" in str(info.value)
    assert "boss" in str(info.value)


def test_reference_file_missing_a_column(tmp_path: Path) -> None:
    path = _user_file(tmp_path, "titles.csv", "title,role\nPresident,head_of_state\n")
    with pytest.raises(ReferenceDataError, match="country") as info:
        Reference.load(Settings(home=tmp_path))
    assert info.value.file == str(path)


def test_unknown_parent_names_file_and_line(tmp_path: Path) -> None:
    path = _user_file(tmp_path, "organizations.csv", "code,name,parent\nXYZ,Some Body,QQQ\n")
    with pytest.raises(ReferenceDataError, match="QQQ") as info:
        Reference.load(Settings(home=tmp_path))
    assert f"{path}:2" in str(info.value)


_SHARED = Reference.load(Settings(home=Path("/nonexistent-relations-etl-home")))
_ISO = sorted((c.name, c.alpha_3) for c in __import__("pycountry").countries)


@given(
    st.sampled_from(_ISO),
    st.lists(st.sampled_from([" ", "\u00a0", "\t", "  "]), min_size=0, max_size=3),
    st.booleans(),
)
def test_every_iso_name_resolves_whatever_its_spacing_and_case(
    entry: tuple[str, str], padding: list[str], upper: bool
) -> None:
    name, code = entry
    label = "".join(padding) + (name.upper() if upper else name.lower()) + "".join(padding)
    assert _SHARED.resolve_country(label, dt.date(2020, 1, 1)).code == code


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_resolution_never_guesses(label: str) -> None:
    found = _SHARED.resolve_country(label, None)
    assert (found.code is None) == (found.error is not None)
    if found.code is not None:
        assert found.code in _SHARED.countries
