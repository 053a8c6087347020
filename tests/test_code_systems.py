"""Country code systems, splits, states' dates at the precision given, and the field's IGOs,
through the real pipeline on lists written here."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from relations_etl.audit import LoadResult
from relations_etl.config import CodeSystem, Kind, Mapping, Source, load_mapping
from relations_etl.errors import ConfigError
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from tests.conftest import shared

D = dt.date


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference.load(Settings(home=tmp_path_factory.mktemp("home")))


def _load(
    tmp_path: Path,
    kind: Kind,
    header: list[str],
    rows: list[list[str]],
    mapping: dict[str, Any],
    settings: Settings | None = None,
) -> tuple[Settings, LoadResult]:
    """Write a CSV and a mapping file, load them as a new user would."""
    data = tmp_path / "list.csv"
    with data.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    settings = settings or Settings(home=tmp_path / "home")
    source = Source(
        name="list",
        kind=kind,
        uri=str(data),
        format="csv",
        mapping=load_mapping(mapping_file, kind, settings),
    )
    return settings, run_source(source, settings)


def _rejections(settings: Settings) -> list[tuple[str, str, str, str]]:
    return run_query(
        settings,
        "SELECT source_record, error_check, error_value, error_message FROM open_rejections() "
        "ORDER BY source_record",
    ).rows()


PANEL = {
    "columns": {"ccode": "country", "year": "year", "ioname": "organization"},
    "constants": {"status": "member"},
    "record_id": ["ccode", "year", "ioname"],
    "codes": {"country": "cow"},
}


def test_cow_panel_with_codes_written_as_floats_resolves_by_year(tmp_path: Path) -> None:
    rows = [
        ["2.0", "1985", "UN"],  # a pandas export writes every code with .0
        ["365.0", "1985", "UN"],
        ["365", "1995", "UN"],
        ["345", "1990", "UPU"],
        ["345", "1995", "UPU"],
        ["345", "2010", "UPU"],
        ["255", "1930", "LoN"],
        ["260", "1970", "ITU"],
        ["265", "1980", "ITU"],
        ["255", "1995", "ITU"],
        ["255", "1990", "ITU"],  # COW 255 is back from 1990-10-03: "1990" covers that day
        ["816", "1970", "UPU"],
        ["817", "1970", "UPU"],
        ["816", "1980", "UPU"],
        ["678", "1980", "LOAS"],
        ["680", "1980", "LOAS"],
        ["300", "1900", "UPU"],
        ["511", "1964", "UPU"],
        ["730", "1900", "UPU"],
        ["240", "1860", "ITU"],
    ]
    settings, result = _load(tmp_path, Kind.MEMBERSHIPS, ["ccode", "year", "ioname"], rows, PANEL)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (20, 20, 0)
    loaded = run_query(
        settings,
        "SELECT source_record, country, organization FROM memberships ORDER BY source_record",
    ).rows()
    assert dict((r, c) for r, c, _ in loaded) == {
        "2.0|1985|UN": "USA",
        "365.0|1985|UN": "SUN",
        "365|1995|UN": "RUS",
        "345|1990|UPU": "YUG",
        "345|1995|UPU": "SCG",
        "345|2010|UPU": "SRB",
        "255|1930|LoN": "DEU",
        "260|1970|ITU": "DEU",
        "265|1980|ITU": "DDR",
        "255|1995|ITU": "DEU",
        "255|1990|ITU": "DEU",
        "816|1970|UPU": "VDR",
        "817|1970|UPU": "XSV",
        "816|1980|UPU": "VNM",
        "678|1980|LOAS": "YEM",
        "680|1980|LOAS": "YMD",
        "300|1900|UPU": "XAH",
        "511|1964|UPU": "XUG",
        "730|1900|UPU": "XKO",
        "240|1860|ITU": "XHN",
    }
    # the COW abbreviations are the organization codes, LOAS being the project's LAS
    assert {o for _, _, o in loaded} == {"UN", "UPU", "LoN", "ITU", "LAS"}


def test_cow_codes_that_name_no_state_are_row_errors(tmp_path: Path) -> None:
    rows = [["255", "1960", "UN"], ["-9", "1960", "UN"], ["265", "1995", "UN"], ["2", "1960", "UN"]]
    settings, result = _load(tmp_path, Kind.MEMBERSHIPS, ["ccode", "year", "ioname"], rows, PANEL)
    assert (result.rows_loaded, result.rows_rejected) == (1, 3)
    errors = {r: (check, message) for r, check, _, message in _rejections(settings)}
    assert errors["255|1960|UN"][0] == "country_at_date"
    assert "names no state on 1960-01-01" in errors["255|1960|UN"][1]
    assert errors["-9|1960|UN"][0] == "country_known"
    assert "not a Correlates of War numeric code" in errors["-9|1960|UN"][1]
    # the GDR's code resolves, but the GDR had ended before 1995
    assert errors["265|1995|UN"][0] == "country_at_date"
    assert "DDR" in errors["265|1995|UN"][1]


def test_letter_gw_and_iso_codes_resolve_by_date(tmp_path: Path) -> None:
    mapping = {
        "columns": {"a": "country", "b": "counterpart", "day": "event_date"},
        "constants": {"event": "established"},
        "record_id": "id",
        "codes": {"country": "iso2", "counterpart": "iso-numeric"},
    }
    rows = [
        ["1", "DD", "810", "1975-01-01"],  # GDR and the Soviet Union
        ["2", "CS", "891", "1985-06-01"],  # Czechoslovakia and Yugoslavia
        ["3", "CS", "840", "2004-01-01"],  # CS again: Serbia and Montenegro from 2003
        ["4", "fr", "280", "1985-06-01"],  # 280 was the Federal Republic's number
        ["5", "YU", "004", "1995-01-01"],  # ISO kept YU for the FRY until 2003
    ]
    settings, result = _load(tmp_path, Kind.RELATIONS, ["id", "a", "b", "day"], rows, mapping)
    assert result.rows_rejected == 0, _rejections(settings)
    loaded = run_query(
        settings, "SELECT source_record, country, counterpart FROM relations ORDER BY 1"
    ).rows()
    assert loaded == [
        ("1", "DDR", "SUN"),
        ("2", "CSK", "YUG"),
        ("3", "SCG", "USA"),
        ("4", "FRA", "DEU"),
        ("5", "SCG", "AFG"),
    ]


def test_gw_numbers_and_cow_letters(tmp_path: Path) -> None:
    mapping = {
        "columns": {"gw": "country", "year": "year"},
        "constants": {"status": "member", "organization": "UN"},
        "record_id": ["gw", "year"],
        "codes": {"country": "gw"},
    }
    rows = [["260", "1995"], ["340", "2010"], ["345", "1995"], ["970", "2000"], ["365", "1991"]]
    settings, result = _load(tmp_path, Kind.MEMBERSHIPS, ["gw", "year"], rows, mapping)
    assert result.rows_rejected == 0, _rejections(settings)
    loaded = dict(run_query(settings, "SELECT source_record, country FROM memberships").rows())
    # G&W differ from COW: 260 is Germany after 1990, 340 Serbia, 970 Kiribati (COW: Nauru);
    # a year stands for its first day, so 365 in 1991 is the Soviet Union
    assert loaded == {
        "260|1995": "DEU",
        "340|2010": "SRB",
        "345|1995": "SCG",
        "970|2000": "KIR",
        "365|1991": "SUN",
    }
    letters = {"cow-letter": ["GMY", "GFR", "RUS", "CZE", "CZR", "DRV", "RVN"]}
    day = {"GMY": D(1930, 1, 1), "RUS": D(1980, 1, 1), "DRV": D(1980, 1, 1)}
    ref = Reference.load(settings)
    found = {
        v: ref.resolve_code("cow-letter", v, day.get(v, D(1970, 1, 1))).code
        for v in letters["cow-letter"]
    }
    # COW's CZE is Czechoslovakia, not the Czech Republic (CZR)
    assert found == {
        "GMY": "DEU",
        "GFR": "DEU",
        "RUS": "SUN",
        "CZE": "CSK",
        "CZR": "CZE",
        "DRV": "VNM",
        "RVN": "XSV",
    }


def test_a_year_is_checked_at_its_precision_at_both_ends(tmp_path: Path) -> None:
    mapping = {
        "columns": {"who": "country", "from": "start_date", "to": "end_date"},
        "constants": {"status": "member", "organization": "UN"},
        "record_id": "id",
    }
    rows = [
        ["a", "Czechoslovakia", "1918", "1920"],  # the state began 1918-10-28: valid in 1918
        ["b", "Czechoslovakia", "1918-03", "1920"],  # but not in March 1918
        ["c", "Serbia and Montenegro", "1992", "2014"],  # ended 2006-06-03
        ["d", "Serbia and Montenegro", "1992", "2006"],
        ["e", "USSR", "1945-10-24", ""],  # an open membership is current: the USSR is not
        ["f", "Russia", "1991-12-24", ""],
        ["g", "Czechoslovakia", "1917", "1920"],
    ]
    settings, _ = _load(tmp_path, Kind.MEMBERSHIPS, ["id", "who", "from", "to"], rows, mapping)
    loaded = sorted(
        r[0] for r in run_query(settings, "SELECT source_record FROM memberships").rows()
    )
    assert loaded == ["a", "d", "f"]
    errors = {r: (check, message) for r, check, _, message in _rejections(settings)}
    assert set(errors) == {"b", "c", "e", "g"}
    assert {check for check, _ in errors.values()} == {"country_at_date"}
    assert "did not exist yet in 1918-03" in errors["b"][1]
    assert "had ended before 2014-12-31" in errors["c"][1]
    assert "SUN" in errors["e"][1] and "open" in errors["e"][1]
    assert "did not exist yet in 1917" in errors["g"][1]


SPLITS = [
    ("Vietnam", "1970", "VDR", "XSV"),
    ("Germany", "1970", "DDR", "DEU"),
    ("Yemen", "1980", "YEM", "YMD"),
    ("Korea", "1960", "KOR", "PRK"),
    ("Congo", "1962", "COD", "COG"),
    ("Republic of the Congo", "1962", "COD", "COG"),
    ("China", "1960", "CHN", "TWN"),
]


def test_a_label_that_names_either_side_of_a_split_is_a_row_error(tmp_path: Path) -> None:
    mapping = {
        "columns": {"who": "country", "year": "year"},
        "constants": {"status": "member", "organization": "UN"},
        "record_id": ["who", "year"],
    }
    settings, result = _load(
        tmp_path,
        Kind.MEMBERSHIPS,
        ["who", "year"],
        [["France", "1970"], *([w, y] for w, y, *_ in SPLITS)],
        mapping,
    )
    # a batch with every row rejected fails: one row that resolves keeps it a load
    assert (result.rows_loaded, result.rows_rejected) == (1, len(SPLITS))
    errors = {r: (check, message) for r, check, _, message in _rejections(settings)}
    for who, year, one, other in SPLITS:
        check, message = errors[f"{who}|{year}"]
        assert check == "country_ambiguous"
        assert f"{one} or {other}" in message


def test_the_list_says_which_side_and_other_years_are_one_state(tmp_path: Path) -> None:
    mapping = {
        "columns": {"who": "country", "year": "year"},
        "constants": {"status": "member", "organization": "UN"},
        "record_id": ["who", "year"],
        "country_aliases": {"Vietnam": "VDR"},
    }
    rows = [
        ["Vietnam", "1970"],
        ["Germany", "1935"],
        ["Germany", "1995"],
        ["Yemen", "1960"],
        ["Yemen", "1995"],
        ["Congo", "1990"],
        ["China", "1990"],
        ["China", "1930"],
        ["Viet Nam", "2008"],
        ["Viet Nam", "1976"],  # from 1976-07-02 one state: the year's first day names none
    ]
    settings, result = _load(tmp_path, Kind.MEMBERSHIPS, ["who", "year"], rows, mapping)
    assert result.rows_rejected == 0, _rejections(settings)
    loaded = dict(run_query(settings, "SELECT source_record, country FROM memberships").rows())
    assert loaded == {
        "Vietnam|1970": "VDR",
        "Germany|1935": "DEU",
        "Germany|1995": "DEU",
        "Yemen|1960": "YEM",
        "Yemen|1995": "YEM",
        "Congo|1990": "COG",
        "China|1990": "CHN",
        "China|1930": "CHN",
        "Viet Nam|2008": "VNM",
        "Viet Nam|1976": "VNM",
    }


@pytest.mark.parametrize(
    ("label", "code"),
    [
        # historical names of Soviet-era republics
        ("Byelorussian SSR", "BLR"),
        ("Kirghizia", "KGZ"),
        ("Moldavia", "MDA"),
        ("Turkmenia", "TKM"),
        ("Tadzhikistan", "TJK"),
        # short and run-together forms
        ("UnitedStates", "USA"),
        ("SouthKorea", "KOR"),
        ("Bosnia", "BIH"),
        ("SaudiArabia", "SAU"),  # no row: the run-together rule
        ("Guinea Bissau", "GNB"),
        # "Old name (New name)", by row and by the rule when both sides are one state
        ("Zaire (Democratic Republic of the Congo)", "COD"),
        ("Burma (Myanmar)", "MMR"),
        ("Abyssinia (Ethiopia)", "ETH"),
        ("Persia (Iran)", "IRN"),
        ("Tanzania (United Republic of)", "TZA"),
        ("Moldova (Republic of)", "MDA"),
        ("Burma/Myanmar", "MMR"),
        # "Country (region)"
        ("Germany (West)", "DEU"),
        ("Korea (South)", "KOR"),
        ("Yemen (Aden)", "YMD"),
        ("China (Hong Kong)", "HKG"),
        # Palestinian institutions
        ("PLO", "PSE"),
        ("Palestinian Authority", "PSE"),
        ("State of Palestine", "PSE"),
    ],
)
def test_label_classes_resolve(ref: Reference, label: str, code: str) -> None:
    assert ref.resolve_country(label, D(1985, 6, 1)).code == code


@pytest.mark.parametrize(
    "label", ["Congo (Zaire)", "Zaire/Congo", "Korea (Peninsula)", "Atlantis (Lost)"]
)
def test_a_label_whose_parts_disagree_stays_a_row_error(ref: Reference, label: str) -> None:
    found = ref.resolve_country(label, D(1985, 6, 1))
    assert found.code is None
    assert found.check in {"country_known", "country_ambiguous"}


def test_every_cow_igo_is_shipped_with_its_years(ref: Reference) -> None:
    with (Settings().reference_dir / "organizations_cow.csv").open(encoding="utf-8") as handle:
        igos = list(csv.DictReader(handle))
    assert len(igos) == 534
    for row in igos:
        code = ref.resolve_organization(row["code"])
        assert code == (row["same_as"] or row["code"]), row
        assert ref.organization_years[code][0] is not None, row
    for code in ("UN", "NATO", "ICAO", "UPU", "ITU", "FAO", "ILO", "GATT", "EEC", "OAU", "LoN"):
        assert ref.resolve_organization(code) == code
    assert ref.organization_years["LoN"] == (1919, 1945)
    assert ref.organization_years["UN"] == (1945, None)
    # the project's codes keep working; a COW abbreviation of the same body points at them
    assert ref.resolve_organization("LOAS") == ref.resolve_organization("Arab League") == "LAS"
    assert ref.resolve_organization("League of Nations") == "LoN"
    assert ref.organizations["ECB"][1] == "EU"
    # COW writes one name for two banks: the name alone names neither
    assert ref.resolve_organization("Eastern Caribb. Central Bank") is None
    assert ref.resolve_organization("Eastern Caribbean Central Bank") == "ECCB"


def test_a_mapping_declares_its_own_organizations(tmp_path: Path) -> None:
    mapping = {
        "columns": {"who": "country", "org": "organization", "body": "body", "year": "year"},
        "constants": {"status": "member"},
        "record_id": ["who", "org", "year"],
        "organizations": [
            {"code": "ACME", "name": "Association of Coastal Municipalities"},
            {"code": "ACME-B", "name": "ACME Board", "parent": "ACME"},
        ],
    }
    rows = [
        ["France", "ACME", "ACME Board", "2020"],
        ["Spain", "Association of Coastal Municipalities", "", "2020"],
    ]
    settings, result = _load(
        tmp_path, Kind.MEMBERSHIPS, ["who", "org", "body", "year"], rows, mapping
    )
    assert result.rows_rejected == 0, _rejections(settings)
    loaded = run_query(
        settings, "SELECT country, organization, body FROM memberships ORDER BY 1"
    ).rows()
    assert loaded == [("ESP", "ACME", None), ("FRA", "ACME", "ACME-B")]


def test_a_user_row_in_country_codes_csv_extends_a_system(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "reference").mkdir(parents=True)
    (home / "reference" / "country_codes.csv").write_text(
        "system,value,code,valid_from,valid_to,note\n"
        "cow,255,DEU,,1945-05-08,\n"
        "cow,255,DEU,1945-05-09,1990-10-02,this list writes West Germany as 255\n"
        "cow,255,DEU,1990-10-03,,\n",
        encoding="utf-8",
    )
    settings, result = _load(
        tmp_path,
        Kind.MEMBERSHIPS,
        ["ccode", "year", "ioname"],
        [["255", "1960", "UN"]],
        PANEL,
        Settings(home=home),
    )
    assert result.rows_rejected == 0, _rejections(settings)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ({"visitor": "cow"}, "not country fields"),
        ({"country": "fips"}, "codes.country"),
    ],
)
def test_codes_names_country_fields_and_known_systems(
    tmp_path: Path, codes: dict[str, str], message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"columns": {"a": "country"}, "codes": codes}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_mapping(path, Kind.MEMBERSHIPS)


def test_the_shipped_crosswalk_gives_one_meaning_per_code_and_day(ref: Reference) -> None:
    for system, values in ref.codes.items():
        for value, spells in values.items():
            bounds = sorted((s.valid_from or D.min, s.valid_to or D.max) for s in spells)
            for (_, end), (start, _) in itertools.pairwise(bounds):
                assert end < start, (system, value, spells)
    assert Mapping().codes == {}


def test_a_trips_list_with_one_country_per_row(tmp_path: Path) -> None:
    mapping = {
        "columns": {"id": "notes", "country": "host_country", "date": "start_date"},
        "constants": {
            "visitor_country": "United States",
            "visitor_name": "Secretary",
            "visitor_role": "foreign_minister",
        },
        "record_id": "id",
    }
    rows = [
        ["1", "Germany, West", "1975-05-20"],
        ["2", "Soviet Union", "1985-11-19"],
        ["3", "Russia", "1995-01-10"],
        ["4", "Soviet Union", "1991-12-20"],  # the trip began in the USSR's last week
        ["5", "Yugoslavia", "1990-06-01"],
        ["6", "Yugoslavia", "1995-06-01"],
        ["7", "Serbia-Montenegro", "2004-06-01"],
        ["8", "Congo (Kinshasa)", "1980-03-01"],
        ["9", "Palestinian Authority", "1999-02-01"],
        ["10", "SouthKorea", "2001-03-01"],
        ["11", "Vietnam", "1967-10-01"],  # which Vietnam: the list does not say
        ["12", "Yugoslavia", "2008-06-01"],  # the label names no state by then
        ["13", "Soviet Union", "1992-01-02"],
        ["14", "Byelorussia", "1995-01-01"],
    ]
    settings, _ = _load(tmp_path, Kind.VISITS, ["id", "country", "date"], rows, mapping)
    loaded = dict(run_query(settings, "SELECT source_record, host_country FROM visits").rows())
    assert loaded == {
        "1": "DEU",
        "2": "SUN",
        "3": "RUS",
        "4": "SUN",
        "5": "YUG",
        "6": "SCG",
        "7": "SCG",
        "8": "COD",
        "9": "PSE",
        "10": "KOR",
        "14": "BLR",
    }
    errors = {r: check for r, check, _, _ in _rejections(settings)}
    assert errors == {
        "11": "country_ambiguous",
        "12": "country_at_date",
        "13": "country_at_date",
    }


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "system", "column"), [("cow", "cow", "cowcode"), ("gw", "gw", "gwcode")]
)
def test_every_state_year_of_the_lists_resolves_to_a_state_of_that_year(
    ref: Reference, name: str, system: CodeSystem, column: str
) -> None:
    """The lists the crosswalk was built from (../shared/reference-sources), year by year: each
    code of each year a state was in the system names one project country that existed then."""
    path = shared(f"../reference-sources/{name}-states.csv")
    with path.open(encoding="utf-8") as handle:
        spells = list(csv.DictReader(handle))
    failures = []
    for spell in spells:
        last = int(spell["end"][:4]) if spell["end"] else 2014
        for year in range(int(spell["start"][:4]), last + 1):
            first, end = D(year, 1, 1), D(year, 12, 31)
            found = ref.resolve_code(system, spell[column], first, end)
            country = ref.countries.get(found.code or "")
            existed = country is not None and (
                (country.valid_from or D.min) <= end and (country.valid_to or D.max) >= first
            )
            if not existed:
                failures.append((spell[column], year, found))
    assert failures == []


def test_a_mapping_organization_needs_a_known_parent(ref: Reference) -> None:
    mapping = Mapping.model_validate(
        {"organizations": [{"code": "ACME-B", "name": "ACME Board", "parent": "ACME"}]}
    )
    with pytest.raises(ConfigError, match="ACME-B has unknown parent ACME"):
        ref.for_source(mapping)
    # a body of a shipped organization, spelled as the mapping likes
    body = Mapping.model_validate(
        {
            "organizations": [
                {"code": "lon-council", "name": "Council of the League", "parent": "lon"}
            ]
        }
    )
    assert ref.for_source(body).organizations["LON-COUNCIL"] == ("Council of the League", "LoN")
