"""Lists as researchers keep them: wide panels, XML archives, trips lists; hostile XML refused."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from relations_etl_flows.cli import main

from relations_etl.audit import LoadResult
from relations_etl.config import Kind, Mapping, Source, load_mapping, source_for
from relations_etl.db import connect
from relations_etl.envelope import ROW
from relations_etl.errors import ColumnsMissingError, ConfigError, LimitError, SourceReadError
from relations_etl.extract import extract
from relations_etl.mapping import reshape
from relations_etl.pipeline import replay, run_source
from relations_etl.query import run_query
from relations_etl.rawtable import RawTable
from relations_etl.readers.xml import RecordPath, parse_xml
from relations_etl.settings import Settings
from tests.conftest import REPO, shared

# --- a wide panel: country-year rows, one column per organization -----------------------------

PANEL = """\
ccode,year,state,UN,NATO,EU,WHO
2,2001,USA,1.0,1.0,-1,1.0
2,2002,USA,1.0,1.0,-1,1.0
2,2003,USA,1.0,1.0,-1,1.0
220,2001,FRA,1.0,1.0,1.0,1.0
220,2002,FRA,1.0,1.0,1.0,1.0
220,2004,FRA,1.0,1.0,1.0,1.0
255,2001,DEU,0,1.0,1.0,3
255,2002,DEU,3.0,1.0,1.0,1
390,2002,DNK,-9,1.0,1.0,2.0
"""
# codes as a pandas export writes them (1.0), keys as YAML reads them (bare numbers)
PANEL_MAPPING = """\
columns: {state: country, year: year}
record_id: [ccode, year, organization]
unpivot: {columns: {exclude: [ccode, year, state]}, name: organization, value: status}
values:
  status: {1: member, 2: associate, 3: observer}
drop:
  - {when: {status: ['0']}, reason: not a member that year}
  - {when: {status: [-1, '-9']}, reason: missing or not a state}
periods: yearly
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _panel(tmp_path: Path, data: str = PANEL, mapping: str = PANEL_MAPPING) -> tuple[Path, Path]:
    return _write(tmp_path / "panel.csv", data), _write(tmp_path / "panel.yaml", mapping)


def test_wide_panel_loads_its_membership_spells(tmp_path: Path, settings: Settings) -> None:
    csv, mapping = _panel(tmp_path)
    result = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, mapping), settings)
    # every cell is a row: 9 country-years by 4 organizations
    assert (result.rows_read, result.rows_dropped, result.rows_rejected) == (36, 5, 0)
    assert result.rows_loaded == 31
    spells = run_query(
        settings,
        "SELECT country, organization, status, year(start_date) AS start, year(end_date) AS end "
        "FROM memberships ORDER BY ALL",
    ).rows()
    assert spells == sorted(
        [
            ("USA", "UN", "member", 2001, 2003),
            ("USA", "NATO", "member", 2001, 2003),
            ("USA", "WHO", "member", 2001, 2003),
            ("FRA", "UN", "member", 2001, 2002),
            ("FRA", "UN", "member", 2004, 2004),
            ("FRA", "NATO", "member", 2001, 2002),
            ("FRA", "NATO", "member", 2004, 2004),
            ("FRA", "EU", "member", 2001, 2002),
            ("FRA", "EU", "member", 2004, 2004),
            ("FRA", "WHO", "member", 2001, 2002),
            ("FRA", "WHO", "member", 2004, 2004),
            ("DEU", "UN", "observer", 2002, 2002),
            ("DEU", "NATO", "member", 2001, 2002),
            ("DEU", "EU", "member", 2001, 2002),
            ("DEU", "WHO", "observer", 2001, 2001),
            ("DEU", "WHO", "member", 2002, 2002),
            ("DNK", "NATO", "member", 2002, 2002),
            ("DNK", "EU", "member", 2002, 2002),
            ("DNK", "WHO", "associate", 2002, 2002),
        ]
    )
    # the record id names the cell: country code, year and the organization's column
    records = run_query(
        settings, "SELECT source_record FROM memberships WHERE country = 'DNK' ORDER BY 1"
    )
    assert records.to_series().to_list() == ["390|2002|EU", "390|2002|NATO", "390|2002|WHO"]
    audit = run_query(
        settings,
        "SELECT rows_read, rows_loaded, rows_rejected, rows_deduplicated, rows_dropped "
        "FROM load_batches WHERE status = 'succeeded'",
    ).rows()
    assert audit == [(36, 31, 0, 0, 5)]
    assert run_query(
        settings, "SELECT reason, rows FROM dropped_by_reason ORDER BY reason"
    ).rows() == [("missing or not a state", 4), ("not a member that year", 1)]
    assert run_query(settings, "SELECT count(*) FROM rejected_rows").item() == 0


def test_panel_rerun_keeps_conservation_with_drops(tmp_path: Path, settings: Settings) -> None:
    csv, mapping = _panel(tmp_path)
    source = source_for(Kind.MEMBERSHIPS, str(csv), None, mapping)
    run_source(source, settings)
    again = run_source(source, settings, force=True)
    assert (again.rows_read, again.rows_loaded, again.rows_deduplicated) == (36, 0, 31)
    assert again.rows_dropped == 5
    by_batch = run_query(
        settings,
        "SELECT bool_and(rows_read = rows_loaded + rows_rejected + rows_deduplicated "
        "+ rows_dropped), count(*) FROM load_batches WHERE status = 'succeeded'",
    ).row(0)
    assert by_batch == (True, 2)
    assert run_query(
        settings,
        "SELECT reason, rows, batches, rows_all_batches FROM dropped_by_reason ORDER BY reason",
    ).rows() == [("missing or not a state", 4, 2, 8), ("not a member that year", 1, 2, 2)]


def _read(tmp_path: Path, mapping: str = PANEL_MAPPING) -> tuple[RawTable, Source]:
    csv, path = _panel(tmp_path, mapping=mapping)
    source = source_for(Kind.MEMBERSHIPS, str(csv), None, path)
    [table] = extract(source)
    return table, source


def test_unpivot_and_drop_give_the_same_rows_chunk_by_chunk(tmp_path: Path) -> None:
    raw, source = _read(tmp_path)
    whole = reshape(raw, source)
    parts = [
        reshape(
            RawTable(raw.frame.slice(start, length), raw.file, raw.content_hash, raw.columns),
            source,
        )
        for start, length in ((0, 4), (4, 5))
    ]
    assert pl.concat([p.table.frame for p in parts]).equals(whole.table.frame)
    assert sum(p.read for p in parts) == whole.read == 36
    counts: dict[str, int] = {}
    for part in parts:
        for reason, n in part.dropped.items():
            counts[reason] = counts.get(reason, 0) + n
    assert counts == whole.dropped == {"not a member that year": 1, "missing or not a state": 4}
    # cell k of raw row r is row (r - 1) * 4 + k: DEU 2001's UN cell (row 7, column 1) is 25
    cells = whole.table.frame.get_column(ROW).to_list()
    assert 25 not in cells and 26 in cells
    assert whole.table.columns == ("ccode", "year", "state", "organization", "status")


def test_a_wide_panel_is_transformed_in_chunks_of_bounded_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_rows bounds cells, not raw rows, once a list is unpivoted: at 16, chunks of 2 raw
    rows of 7 columns (at most 14 cells each), so the 9 country-years go through in 5 chunks,
    with the same result as one."""
    import relations_etl.pipeline as pipeline

    seen: list[int] = []

    def counted(raw: RawTable, source: Source) -> object:
        seen.append(raw.frame.height)
        return reshape(raw, source)

    monkeypatch.setattr(pipeline, "reshape", counted)
    csv, mapping = _panel(tmp_path)
    source = source_for(Kind.MEMBERSHIPS, str(csv), None, mapping)
    query = "SELECT country, organization, status, start_date, end_date FROM memberships"
    results = {}
    for rows in (250_000, 16):
        seen.clear()
        settings = Settings(home=tmp_path / str(rows), batch_rows=rows)
        result = run_source(source, settings)
        results[rows] = (
            (result.rows_read, result.rows_loaded, result.rows_dropped),
            sorted(run_query(settings, query).rows()),
        )
    assert sorted(seen) == [1, 2, 2, 2, 2]  # raw rows per chunk at batch_rows 16 (side by side)
    assert results[16] == results[250_000]
    assert results[16][0] == (36, 31, 5)


def test_unpivot_by_list_and_by_pattern(tmp_path: Path, settings: Settings) -> None:
    listed = PANEL_MAPPING.replace("{exclude: [ccode, year, state]}", "[UN, WHO]")
    raw, source = _read(tmp_path, listed)
    shaped = reshape(raw, source)
    assert shaped.read == 18
    assert set(shaped.table.frame.get_column("organization")) == {"UN", "WHO"}
    # the columns not unpivoted stay, the other organizations too
    assert shaped.table.columns == (
        "ccode",
        "year",
        "state",
        "NATO",
        "EU",
        "organization",
        "status",
    )
    matched = PANEL_MAPPING.replace("{exclude: [ccode, year, state]}", "{match: '^[A-Z]{2,4}$'}")
    _, source = _read(tmp_path, matched)
    result = run_source(source, settings)
    assert (result.rows_read, result.rows_loaded, result.rows_dropped) == (36, 31, 5)


def test_unpivot_of_a_column_the_list_lacks_names_it(tmp_path: Path) -> None:
    mapping = PANEL_MAPPING.replace("[ccode, year, state]", "[ccode, year, country_name]")
    csv, path = _panel(tmp_path, mapping=mapping)
    source = source_for(Kind.MEMBERSHIPS, str(csv), None, path)
    with pytest.raises(ColumnsMissingError, match="country_name") as info:
        run_source(source, Settings(home=tmp_path / "w"))
    assert info.value.exit_code == 65


def test_drop_rule_on_a_missing_column_is_refused(tmp_path: Path) -> None:
    mapping = PANEL_MAPPING.replace("{status: ['0']}", "{standing: ['0']}")
    csv, path = _panel(tmp_path, mapping=mapping)
    with pytest.raises(ColumnsMissingError, match="standing"):
        run_source(
            source_for(Kind.MEMBERSHIPS, str(csv), None, path), Settings(home=tmp_path / "w")
        )


def test_unmapped_code_is_quarantined_as_written(tmp_path: Path, settings: Settings) -> None:
    data = PANEL + "740,2002,JPN,-2,-1,-1,1.0\n"
    csv, mapping = _panel(tmp_path, data)
    result = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, mapping), settings)
    assert (result.rows_read, result.rows_rejected, result.rows_dropped) == (40, 1, 7)
    assert result.rows_read == (
        result.rows_loaded + result.rows_rejected + result.rows_deduplicated + result.rows_dropped
    )
    errors = run_query(
        settings,
        "SELECT source_record, e.value, e.message FROM rejected_rows, unnest(errors) AS u(e)",
    ).rows()
    assert len(errors) == 1
    record, value, message = errors[0]
    assert (record, value) == ("740|2002|UN", "-2")  # as written, not '_2'
    assert "'-2'" in message


def test_values_match_numbers_as_numbers(tmp_path: Path, settings: Settings) -> None:
    data = "country,year,standing\nFRA,2001,1.0\nDEU,2001,01\nDNK,2001,2\nUSA,2001,Member\n"
    mapping = (
        "columns: {country: country, year: year, standing: status}\n"
        "constants: {organization: UN}\n"
        "values:\n  status: {'1': member, '2.0': associate}\n"
    )
    csv, path = _panel(tmp_path, data, mapping)
    run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, path), settings)
    rows = run_query(settings, "SELECT country, status FROM memberships ORDER BY 1").rows()
    assert rows == [("DEU", "member"), ("DNK", "associate"), ("FRA", "member"), ("USA", "member")]


def test_two_columns_for_one_field_is_a_configuration_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.yaml", "columns: {ccode: country, state: country}\n")
    with pytest.raises(ConfigError, match="'ccode' and 'state' both map to field 'country'") as e:
        load_mapping(path, Kind.MEMBERSHIPS)
    assert e.value.exit_code == 78
    unpivoted = _write(
        tmp_path / "u.yaml",
        "columns: {org: organization}\n"
        "unpivot: {columns: [UN], name: organization, value: status}\n",
    )
    with pytest.raises(ConfigError, match="'organization' and 'org' both map") as e:
        load_mapping(unpivoted, Kind.MEMBERSHIPS)
    assert e.value.exit_code == 78


def test_dated_aliases_in_a_mapping(tmp_path: Path, settings: Settings) -> None:
    data = "who,year\nThe Neighbour,1999\nThe Neighbour,2005\nHome,2005\n"
    mapping = (
        "columns: {who: country, year: year}\n"
        "constants: {organization: UN, status: member}\n"
        "country_aliases:\n"
        "  - {alias: The Neighbour, code: FRA, valid_to: 1999-12-31, note: before the move}\n"
        "  - {alias: The Neighbour, code: DEU, valid_from: 2000-01-01}\n"
        "  - {alias: Home, code: DNK}\n"
    )
    csv, path = _panel(tmp_path, data, mapping)
    run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, path), settings)
    rows = run_query(
        settings, "SELECT country, year(start_date) FROM memberships ORDER BY 2, 1"
    ).rows()
    assert rows == [("FRA", 1999), ("DEU", 2005), ("DNK", 2005)]


# --- XML archives ------------------------------------------------------------------------------

ARCHIVE = """<?xml version="1.0" encoding="UTF-8"?>
<archive xmlns="urn:example:archive">
  <meta><title>Visits received</title></meta>
  <trips>
    <trip id="a-1" who="Prime Minister Mark Rutte">
      <country code="nl">Netherlands</country>
      <dates><start>2013-06-02</start><end>2013-06-03</end></dates>
      <remarks>Official <i>working</i> visit.</remarks>
    </trip>
    <trip id="a-2" who="King Philippe">
      <country code="be">Belgium</country>
      <dates><start>2014-04-22</start></dates>
      <remarks>State visit &amp; dinner.</remarks>
    </trip>
    <trip id="a-3" who="President Emmanuel Macron">
      <country code="fr">France</country><country code="de">Germany</country>
      <dates><start>2018-04-23</start></dates>
    </trip>
  </trips>
</archive>
"""
ARCHIVE_MAPPING = """\
format: xml
options: {record: trips/trip}
record_id: '@id'
columns:
  '@who': visitor
  country: visitor_country
  dates/start: start_date
  dates/end: end_date
  remarks: notes
constants: {host_country: USA}
"""


def test_xml_archive_with_attributes_and_nested_elements(
    tmp_path: Path, settings: Settings
) -> None:
    xml = _write(tmp_path / "archive.xml", ARCHIVE)
    mapping = _write(tmp_path / "archive.yaml", ARCHIVE_MAPPING)
    result = run_source(source_for(Kind.VISITS, str(xml), None, mapping), settings)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    visits = run_query(
        settings,
        "SELECT source_record, visitor_country, visitor_title, visitor_role, start_date::VARCHAR,"
        " end_date::VARCHAR, notes FROM visits ORDER BY 1",
    ).rows()
    assert visits == [
        (
            "a-1",
            "NLD",
            "Prime Minister",
            "head_of_government",
            "2013-06-02",
            "2013-06-03",
            "Official working visit.",
        ),
        ("a-2", "BEL", "King", "head_of_state", "2014-04-22", None, "State visit & dinner."),
    ]
    # two <country> elements in one record: a column holds one value, the row says why
    rejected = run_query(
        settings,
        "SELECT source_row, source_record, e.column, e.check, e.value FROM rejected_rows, "
        "unnest(errors) AS u(e) WHERE e.check = 'xml_record'",
    ).rows()
    assert rejected == [(3, "a-3", "country", "xml_record", "France; Germany")]


def test_xml_folder_and_unasked_columns(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    _write(folder / "1.xml", ARCHIVE)
    _write(folder / "2.xml", ARCHIVE.replace('"a-', '"b-'))
    _write(folder / "notes.txt", "not XML")
    mapping = _write(tmp_path / "m.yaml", "format: xml\noptions: {record: trip}\n")
    [table] = extract(source_for(Kind.VISITS, str(folder), None, mapping))
    assert table.frame.height == 6
    assert set(
        table.frame.get_column("_file").map_elements(lambda f: Path(f).name, return_dtype=pl.String)
    ) == {"1.xml", "2.xml"}
    # a mapping that names no columns gets every attribute and child the records hold
    assert table.columns == ("@id", "@who", "country", "country/@code", "dates", "remarks")
    assert table.frame.get_column("@id").to_list() == ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"]
    assert table.frame.get_column("country").to_list()[2] == "France; Germany"


def test_xml_record_path_anchored_and_missing(tmp_path: Path) -> None:
    data = b"<a><trip><x>1</x></trip><b><trip><x>2</x></trip></b></a>"
    frame, _ = parse_xml(
        data, RecordPath.parse("/a/trip", "s"), ["x"], discover=False, file="f.xml", source="s"
    )
    assert frame.get_column("x").to_list() == ["1"]
    frame, _ = parse_xml(
        data, RecordPath.parse("trip", "s"), ["x"], discover=False, file="f.xml", source="s"
    )
    assert frame.get_column("x").to_list() == ["1", "2"]
    with pytest.raises(SourceReadError, match="no <visit> element") as info:
        parse_xml(
            data, RecordPath.parse("visit", "s"), ["x"], discover=False, file="f.xml", source="s"
        )
    assert info.value.exit_code == 65
    with pytest.raises(ConfigError, match=r"options\.record"):
        RecordPath.parse(None, "s")


TRIPS = """<?xml version="1.0" encoding="UTF-8"?>
<trips>
{rows}</trips>
"""
TRIP = """  <trip who="{who}">
    <name>{name}</name>
    <role>{role}</role>
    <country id="{code}">{country}</country>
    <locale>{city}</locale>
    <start-date>{start}</start-date>
    <end-date>{end}</end-date>
  </trip>
"""


def test_trips_list_one_country_per_row(tmp_path: Path, settings: Settings) -> None:
    trips = [
        ("Dean Acheson", "Secretary of State", "FR", "France", "Paris", "1950-05-10", "1950-05-12"),
        (
            "Dean Acheson",
            "Secretary of State",
            "GB",
            "United Kingdom",
            "London",
            "1950-05-12",
            "1950-05-19",
        ),
        ("Harry S. Truman", "President", "MX", "Mexico", "Mexico City", "1947-03-03", "1947-03-06"),
        (
            "Antony Blinken",
            "Secretary of State",
            "KZ",
            "Kazakhstan",
            "Astana",
            "2023-02-28",
            "2023-03-01",
        ),
    ]
    rows = "".join(
        TRIP.format(who=w, name=w, role=r, code=c, country=n, city=t, start=s, end=e)
        for w, r, c, n, t, s, e in trips
    )
    xml = _write(tmp_path / "trips.xml", TRIPS.format(rows=rows))
    mapping = _write(
        tmp_path / "trips.yaml",
        "format: xml\n"
        "options: {record: trip}\n"
        "columns:\n"
        "  name: visitor_name\n  role: visitor_title\n  country: host_country\n"
        "  locale: city\n  start-date: start_date\n  end-date: end_date\n"
        "constants: {visitor_country: USA}\n",
    )
    result = run_source(source_for(Kind.VISITS, str(xml), None, mapping), settings)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (4, 4, 0)
    by_role = run_query(
        settings,
        "SELECT host_country, visitor_role, city FROM visits ORDER BY start_date",
    ).rows()
    assert by_role == [
        ("MEX", "head_of_state", "Mexico City"),
        ("FRA", "foreign_minister", "Paris"),
        ("GBR", "foreign_minister", "London"),
        ("KAZ", "foreign_minister", "Astana"),
    ]


HOSTILE = {
    "dtd": '<?xml version="1.0"?>\n<!DOCTYPE trips SYSTEM "trips.dtd">\n<trips><trip/></trips>',
    "entity": '<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY who "Dean">]>\n'
    "<trips><trip><name>&who;</name></trip></trips>",
    "billion_laughs": '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + "]>\n<trips><trip><name>&lol9;</name></trip></trips>",
    "external": '<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "\n<trips><trip><name>&x;</name></trip></trips>",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_xml_is_refused(tmp_path: Path, settings: Settings, case: str) -> None:
    xml = _write(tmp_path / f"{case}.xml", HOSTILE[case])
    mapping = _write(
        tmp_path / "m.yaml",
        "format: xml\noptions: {record: trip}\ncolumns: {name: visitor_name}\n"
        "constants: {host_country: USA, visitor_country: FRA, start_date: '2001'}\n",
    )
    with pytest.raises(SourceReadError, match="refused: the XML declares a DTD") as info:
        run_source(source_for(Kind.VISITS, str(xml), None, mapping), settings)
    assert info.value.exit_code == 65
    assert info.value.file == str(xml)
    assert "passwd" not in str(info.value) and "lol" not in str(info.value)
    status = run_query(settings, "SELECT status, rows_read FROM load_batches").rows()
    assert status == [("failed", 0)]


def test_malformed_xml_names_its_line(tmp_path: Path) -> None:
    xml = _write(tmp_path / "bad.xml", "<trips>\n<trip><name>x</trip>\n</trips>")
    mapping = _write(tmp_path / "m.yaml", "format: xml\noptions: {record: trip}\n")
    with pytest.raises(SourceReadError, match="not well-formed XML at line 2") as info:
        list(extract(source_for(Kind.VISITS, str(xml), None, mapping)))
    assert info.value.exit_code == 65


# --- the public visits list, read by the generic reader with its shipped mapping ---------------


@pytest.mark.shared_data
def test_hsg_visits_through_the_generic_xml_reader(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "w")
    mapping = REPO / "src" / "relations_etl" / "readers" / "hsg-visits-xml.yaml"
    source = source_for(Kind.VISITS, str(shared("hsg-visits")), "xml", mapping)
    result: LoadResult = run_source(source, settings)
    assert (result.rows_read, result.rows_rejected) == (3264, 0)
    assert (
        run_query(
            settings,
            "SELECT count(DISTINCT source_record) FROM visits WHERE year(start_date) = 2023",
        ).item()
        == 80
    )
    assert (
        run_query(settings, "SELECT count(*) FROM visits WHERE visitor_country = 'SUN'").item() == 6
    )


def test_the_readme_examples_of_these_keys_are_valid_mappings() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Mapping keys for real list shapes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 3
    for block in blocks:
        Mapping.model_validate(yaml.safe_load(block))


def test_quarantined_cells_replay_as_cells(tmp_path: Path, settings: Settings) -> None:
    data = PANEL + "390,2003,Dnmark,1.0,-9,1.0,1.0\n"
    csv, mapping = _panel(tmp_path, data)
    first = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, mapping), settings)
    # the unknown label stops its row's three cells that are facts; the -9 cell is dropped
    assert (first.rows_read, first.rows_rejected, first.rows_dropped) == (40, 3, 6)
    quarantined = run_query(
        settings, "SELECT source_row, source_record FROM rejected_rows ORDER BY 1"
    ).rows()
    assert quarantined == [(37, "390|2003|UN"), (39, "390|2003|EU"), (40, "390|2003|WHO")]
    settings.user_reference_dir.mkdir(parents=True)
    _write(
        settings.user_reference_dir / "country_aliases.csv",
        "alias,code,valid_from,valid_to,note\nDnmark,DNK,,,typo in the panel\n",
    )
    [again] = replay(settings)
    assert (again.rows_read, again.rows_loaded, again.rows_rejected) == (3, 3, 0)
    replayed = run_query(
        settings,
        "SELECT organization FROM memberships WHERE country = 'DNK' AND year(end_date) = 2003 "
        "ORDER BY 1",
    ).to_series()
    assert replayed.to_list() == ["EU", "UN", "WHO"]
    assert (
        run_query(
            settings, "SELECT count(*) FROM rejected_rows WHERE resolved_batch_id IS NULL"
        ).item()
        == 0
    )


def test_a_warehouse_from_before_drop_rules_gains_the_columns(
    tmp_path: Path, settings: Settings
) -> None:
    conn = connect(settings)
    conn.execute("DROP VIEW dropped_by_reason")
    conn.execute("DROP TABLE dropped_rows")
    conn.execute("ALTER TABLE load_batches DROP COLUMN rows_dropped")
    conn.execute("DROP TABLE schema_applied")
    conn.close()
    csv, mapping = _panel(tmp_path)
    result = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, mapping), settings)
    assert result.rows_dropped == 5
    assert (
        run_query(
            settings, "SELECT rows_dropped FROM load_batches WHERE status = 'succeeded'"
        ).item()
        == 5
    )
    assert run_query(settings, "SELECT sum(rows) FROM dropped_by_reason").item() == 5


def test_xml_records_offering_too_many_columns_are_refused(tmp_path: Path) -> None:
    children = "".join(f"<c{i}>x</c{i}>" for i in range(30))
    data = f"<trips><trip>{children}</trip></trips>".encode()
    with pytest.raises(LimitError, match="RELATIONS_ETL_MAX_COLUMNS") as info:
        parse_xml(
            data,
            RecordPath.parse("trip", "s"),
            [],
            discover=True,
            file="f.xml",
            source="s",
            settings=Settings(home=tmp_path, max_columns=20),
        )
    assert info.value.exit_code == 65


@pytest.mark.usefixtures("prefect_server")
def test_the_cli_exit_codes_of_these_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(tmp_path / "warehouse"))
    csv, mapping = _panel(tmp_path)
    assert main(["ingest", "memberships", str(csv), "--mapping", str(mapping)]) == 0
    assert "read 36, loaded 31, rejected 0, deduplicated 0, dropped 5" in capsys.readouterr().out
    twice = _write(tmp_path / "twice.yaml", "columns: {ccode: country, state: country}\n")
    assert main(["ingest", "memberships", str(csv), "--mapping", str(twice)]) == 78
    err = capsys.readouterr().err
    assert "'ccode' and 'state' both map to field 'country'" in err and "internal" not in err
    bomb = _write(tmp_path / "bomb.xml", HOSTILE["billion_laughs"])
    trips = _write(tmp_path / "trips.yaml", "format: xml\noptions: {record: trip}\n")
    assert main(["ingest", "visits", str(bomb), "--mapping", str(trips)]) == 65
    assert "refused: the XML declares a DTD" in capsys.readouterr().err


def test_a_panel_whose_headers_are_fields_needs_only_the_unpivot(
    tmp_path: Path, settings: Settings
) -> None:
    data = "Country,Year,UN,WHO\nFRA,2001,1.0,-9\nDEU,2001,1,1.0\n"
    mapping = (
        "unpivot: {columns: {exclude: [Country, Year]}, name: organization, value: status}\n"
        "values: {status: {1: member}}\n"
        "drop: [{when: {status: ['-9']}, reason: missing}]\n"
    )
    csv, path = _panel(tmp_path, data, mapping)
    result = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, path), settings)
    assert (result.rows_read, result.rows_loaded, result.rows_dropped) == (4, 3, 1)
    rows = run_query(settings, "SELECT country, organization FROM memberships ORDER BY ALL")
    assert rows.rows() == [("DEU", "UN"), ("DEU", "WHO"), ("FRA", "UN")]


def test_drop_reads_a_field_that_a_header_fills(tmp_path: Path, settings: Settings) -> None:
    data = "Country,Year,Organization,Status\nFRA,2001,UN,member\nDEU,2001,UN,-9\n"
    csv, path = _panel(tmp_path, data, "drop: [{when: {status: [-9]}, reason: missing}]\n")
    result = run_source(source_for(Kind.MEMBERSHIPS, str(csv), None, path), settings)
    assert (result.rows_read, result.rows_loaded, result.rows_dropped) == (2, 1, 1)
