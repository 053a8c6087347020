"""Source configuration and mappings: YAML in, strict models out, every mistake a ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from relations_etl.config import (
    FIELDS,
    Kind,
    Mapping,
    builtin_mapping,
    canonical_uri,
    derived_name,
    guess_format,
    load_mapping,
    load_sources,
    source_for,
)
from relations_etl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MAPPINGS = sorted((REPO / "examples" / "mappings").glob("*.yaml"))


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _source(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "visits-a",
        "kind": "visits",
        "uri": "data/visits.csv",
        "mapping": {"columns": {"Host": "host_country", "Date": "start_date"}},
    }
    entry.update(overrides)
    return entry


def test_load_sources_makes_relative_uri_absolute(tmp_path: Path) -> None:
    path = _write(tmp_path / "conf" / "sources.yaml", {"sources": [_source()]})
    [source] = load_sources(path)
    assert source.name == "visits-a"
    assert source.kind is Kind.VISITS
    assert Path(source.uri).is_absolute()
    assert Path(source.uri) == (tmp_path / "conf" / "data" / "visits.csv").resolve()
    assert source.mapping.columns == {"Host": "host_country", "Date": "start_date"}
    assert source.resolved_format == "csv"


def test_load_sources_keeps_urls_and_absolute_paths(tmp_path: Path) -> None:
    absolute = str((tmp_path / "elsewhere" / "m.json").resolve())
    path = _write(
        tmp_path / "sources.yaml",
        {
            "sources": [
                _source(name="web", uri="https://example.org/list.xlsx"),
                _source(name="abs", uri=absolute, format="ndjson"),
            ]
        },
    )
    web, absolute_source = load_sources(path)
    assert web.uri == "https://example.org/list.xlsx"
    assert web.resolved_format == "xlsx"
    assert absolute_source.uri == absolute
    assert absolute_source.resolved_format == "ndjson"


def test_load_sources_reads_a_mapping_file_next_to_it(tmp_path: Path) -> None:
    _write(
        tmp_path / "mappings" / "m.yaml",
        {
            "format": "tsv",
            "columns": {"Member": "country", "Org": "organization"},
            "record_id": "Id",
            "dates": {"order": "dmy"},
        },
    )
    path = _write(
        tmp_path / "sources.yaml",
        {
            "sources": [
                {"name": "m", "kind": "memberships", "uri": "x.data", "mapping": "mappings/m.yaml"},
            ]
        },
    )
    [source] = load_sources(path)
    assert source.mapping.columns == {"Member": "country", "Org": "organization"}
    assert source.mapping.record_id == ["Id"]  # a single id column becomes a list
    assert source.mapping.dates.order == "dmy"
    assert source.resolved_format == "tsv"  # from the mapping, the URI says nothing


def test_unknown_target_field_names_the_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sources.yaml",
        {
            "sources": [
                _source(mapping={"columns": {"Host": "hots_country"}}),
            ]
        },
    )
    with pytest.raises(ConfigError, match="hots_country"):
        load_sources(path)


def test_unknown_mapping_key_names_it(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sources.yaml",
        {
            "sources": [
                _source(mapping={"colums": {"Host": "host_country"}}),
            ]
        },
    )
    with pytest.raises(ConfigError, match="colums"):
        load_sources(path)


def test_unknown_constant_or_derive_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "a.yaml",
        {
            "sources": [
                _source(mapping={"constants": {"planet": "Earth"}}),
            ]
        },
    )
    with pytest.raises(ConfigError, match="planet"):
        load_sources(path)
    path = _write(
        tmp_path / "b.yaml",
        {
            "sources": [
                _source(
                    mapping={
                        "columns": {"Notes": "notes"},
                        "derive": {
                            "mood": {"from": "notes", "patterns": [{"match": "x", "value": "y"}]}
                        },
                    }
                )
            ]
        },
    )
    with pytest.raises(ConfigError, match="mood"):
        load_sources(path)


def test_unknown_key_in_a_source_entry(tmp_path: Path) -> None:
    path = _write(tmp_path / "sources.yaml", {"sources": [_source(url="data/x.csv")]})
    with pytest.raises(ConfigError, match="url"):
        load_sources(path)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sources.yaml", {"defaults": {"date_order": "dmy"}, "sources": [_source()]}
    )
    with pytest.raises(ConfigError, match="defaults"):
        load_sources(path)


def test_missing_sources_list(tmp_path: Path) -> None:
    path = _write(tmp_path / "sources.yaml", {"source": [_source()]})
    with pytest.raises(ConfigError, match="sources"):
        load_sources(path)


def test_duplicate_source_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sources.yaml",
        {
            "sources": [
                _source(),
                _source(uri="data/other.csv"),
                _source(name="unique"),
            ]
        },
    )
    with pytest.raises(ConfigError, match=r"repeated: \['visits-a'\]"):
        load_sources(path)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (_source(kind="visit"), "kind"),
        (_source(name="bad name!"), "name"),
        (_source(mapping={"format": "docx"}), "docx"),
        ({"name": "x", "kind": "visits"}, "uri"),
        (_source(kind="relations", mapping={"periods": "yearly"}), "yearly"),
        (_source(mapping={"dates": {"order": "ydm"}}), "order"),
        (_source(max_rejected_share=1.5), "max_rejected_share"),
        (_source(max_rejected_share=-0.1), "max_rejected_share"),
    ],
)
def test_invalid_source_entries(tmp_path: Path, entry: dict[str, Any], match: str) -> None:
    path = _write(tmp_path / "sources.yaml", {"sources": [entry]})
    with pytest.raises(ConfigError, match=match):
        load_sources(path)


def test_unknown_source_format_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "sources.yaml", {"sources": [_source(format="docx")]})
    with pytest.raises(ConfigError, match="docx"):
        load_sources(path)


def test_missing_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sources(tmp_path / "nope.yaml")
    path = _write(tmp_path / "broken.yaml", "sources: [ {name: a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sources(path)


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.TSV", "tsv"),
        ("list.txt", "csv"),
        ("book.xlsx", "xlsx"),
        ("x.json", "json"),
        ("x.ndjson", "ndjson"),
        ("x.jsonl", "ndjson"),
        ("https://example.org/dir.v2/data.parquet", "parquet"),
        ("/abs/path/visits.CSV", "csv"),
    ],
)
def test_guess_format(uri: str, fmt: str) -> None:
    assert guess_format(uri) == fmt


@pytest.mark.parametrize("uri", ["folder/", "noext", "dir.v2/data", "x.docx"])
def test_guess_format_refuses(uri: str) -> None:
    with pytest.raises(ConfigError, match="format"):
        guess_format(uri)


@pytest.mark.parametrize(
    ("uri", "says", "command"),
    [
        ("s3://archive/events.csv.gz", "gzip", "gunzip"),
        ("archive.tar.gz", "gzip", "tar -xf"),
        ("lists/igo.CSV.ZIP", "zip", "unzip"),
        ("visits.tsv.zst", "zstd", "unzstd"),
    ],
)
def test_a_compressed_name_is_refused_with_the_command_that_unpacks_it(
    uri: str, says: str, command: str
) -> None:
    with pytest.raises(ConfigError, match=f"named as a {says}-compressed file") as refused:
        guess_format(uri)
    assert f"({command})" in str(refused.value)


def test_load_mapping(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.yaml",
        {
            "name": "ignored",
            "kind": "visits",
            "description": "ignored too",
            "columns": {"who": "visitor"},
            "constants": {"host_country": "USA"},
        },
    )
    mapping = load_mapping(path, Kind.VISITS)
    assert mapping.columns == {"who": "visitor"}
    assert mapping.constants == {"host_country": "USA"}
    with pytest.raises(ConfigError, match="visitor"):
        load_mapping(path, Kind.RELATIONS)  # 'visitor' is not a relations field


def test_load_mapping_rejects_non_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_mapping(path, Kind.VISITS)


def test_builtin_hsg_mapping_is_valid() -> None:
    mapping = builtin_mapping("hsg-visits-xml", Kind.VISITS)
    assert mapping.columns["visitor"] == "visitor"
    assert mapping.country_aliases == {"Korea": "KOR", "Congo, Republic of": "COG"}
    assert builtin_mapping("csv", Kind.VISITS) == Mapping()


def _kinds_for(path: Path) -> list[Kind]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and data.get("kind"):
        return [Kind(data["kind"])]
    return list(Kind)


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in EXAMPLE_MAPPINGS]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no examples/mappings/*.yaml"))],
)
def test_example_mappings_load(path: Path) -> None:
    errors = []
    for kind in _kinds_for(path):
        try:
            mapping = load_mapping(path, kind)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        assert set(mapping.columns.values()) <= set(FIELDS[kind])
        return
    pytest.fail(f"{path.name} is not a valid mapping for any kind: {errors}")


# --- source names and URIs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("visités 2023.csv", "visites-2023"),
        ("a/data.csv", "data"),
        ("/lists/Übersicht (Besuche) 2023.xlsx", "Ubersicht-Besuche-2023"),
        ("https://example.org/exports/kz_visits.v2.csv?token=abc#top", "kz_visits.v2"),
        ("file:///lists/relations/", "relations"),
        ("Визиты.csv", "source"),
        ("--.csv", "source"),
    ],
)
def test_a_derived_name_is_a_valid_ascii_name(uri: str, name: str) -> None:
    assert derived_name(uri) == name
    source = source_for(Kind.VISITS, uri, "csv", None)  # valid by the Source name rule
    assert source.name == name


def test_an_explicit_name_is_kept_and_still_checked() -> None:
    assert source_for(Kind.VISITS, "visités.csv", None, None, name="kz-visits").name == "kz-visits"
    with pytest.raises(ConfigError, match="name"):
        source_for(Kind.VISITS, "visits.csv", None, None, name="visités")


def test_spellings_of_one_list_have_one_canonical_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "lists" / "data.csv"
    listing.parent.mkdir()
    listing.write_text("country\n", encoding="utf-8")
    (tmp_path / "link.csv").symlink_to(listing)
    monkeypatch.chdir(tmp_path)
    spellings = [
        "lists/data.csv",
        "./lists/../lists/data.csv",
        str(listing),
        f"file://{listing}",
        "file:lists/data.csv",
        str(tmp_path / "link.csv"),
    ]
    assert {canonical_uri(s) for s in spellings} == {str(listing.resolve())}
    assert canonical_uri("HTTPS://Example.ORG/Lists/a.csv") == "https://example.org/Lists/a.csv"
    assert canonical_uri("s3://bucket/visits/") == "s3://bucket/visits"
    assert canonical_uri("s3://bucket/visits/") != canonical_uri("s3://bucket/other/")


def test_moved_from_is_resolved_like_the_uri(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "conf" / "sources.yaml",
        {"sources": [_source(uri="new/visits.csv", moved_from="old/visits.csv")]},
    )
    [source] = load_sources(path)
    assert source.moved_from == str((tmp_path / "conf" / "old" / "visits.csv").resolve())
    assert source.max_rejected_share == 1.0
    moved = source_for(Kind.VISITS, "b/x.csv", None, None, moved_from="a/x.csv")
    assert moved.moved_from == str(Path.cwd() / "a" / "x.csv")


def test_compressed_bytes_are_told_from_text_that_begins_alike() -> None:
    import bz2
    import gzip
    import io
    import lzma
    import zipfile

    from relations_etl.compressed import by_content

    text = b"code,name\nKAZ,Kazakhstan\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as packed:
        packed.writestr("list.csv", text)
    for data, kind in (
        (gzip.compress(text), "gzip"),
        (archive.getvalue(), "zip"),
        (bz2.compress(text), "bzip2"),
        (bz2.compress(b""), "bzip2"),
        (lzma.compress(text), "xz"),
    ):
        found = by_content(data)
        assert found is not None and found[0] == kind, kind
    for list_text in (b"BZh_code,name\n", b"BZh9,x\n", b"PK,name\n", text):
        assert by_content(list_text) is None
