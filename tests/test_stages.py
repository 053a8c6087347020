"""map -> normalize -> validate -> split (and yearly periods) on small in-memory raw tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from relations_etl.config import Kind, Source
from relations_etl.envelope import PERSON, RAW_KEYS
from relations_etl.errors import ColumnsMissingError, ConfigError
from relations_etl.mapping import apply_mapping
from relations_etl.normalize import normalize
from relations_etl.periods import collapse_years
from relations_etl.rawtable import RawTable, as_text_table
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from relations_etl.split import Split, split
from relations_etl.validate import validate

D = dt.date
VISIT_COLUMNS = {"who": "visitor", "from": "visitor_country", "date": "start_date"}


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference.load(Settings(home=tmp_path_factory.mktemp("home")))


def _raw(columns: dict[str, list[str | None]]) -> RawTable:
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    return as_text_table(frame, "mem.csv", "h")


def _source(kind: Kind, **mapping: Any) -> Source:
    return Source(name="t", kind=kind, uri="mem.csv", mapping=mapping)


def _visits(**mapping: Any) -> Source:
    mapping.setdefault("columns", VISIT_COLUMNS)
    mapping.setdefault("constants", {"host_country": "USA"})
    return _source(Kind.VISITS, **mapping)


def _run(raw: RawTable, source: Source, ref: Reference) -> Split:
    mapped = apply_mapping(raw, source, ref)
    normalized = normalize(mapped, source, ref)
    return split(validate(normalized, source.kind), source.kind, source.name)


def _visit_rows(
    who: list[str | None],
    country: list[str | None] | None = None,
    date: list[str | None] | None = None,
    ids: list[str | None] | None = None,
) -> RawTable:
    n = len(who)
    return _raw(
        {
            "id": ids or [str(i) for i in range(1, n + 1)],
            "who": who,
            "from": country or ["Poland"] * n,
            "date": date or ["2024-03-12"] * n,
        }
    )


# --- apply_mapping ---------------------------------------------------------------------------


def test_missing_mapped_column_lists_the_list_columns(ref: Reference) -> None:
    raw = _raw({"name": ["x"], "country": ["Poland"]})
    source = _visits(columns={"who": "visitor", "country": "visitor_country"})
    with pytest.raises(ConfigError) as info:
        apply_mapping(raw, source, ref)
    message = str(info.value)
    assert "['who']" in message
    assert "['name', 'country']" in message
    assert info.value.file == "mem.csv"
    assert info.value.source == "t"


def test_headers_named_like_fields_map_without_a_mapping(ref: Reference) -> None:
    raw = _raw(
        {
            "Country": ["Kazakhstan"],
            " counterpart ": ["France"],
            "EVENT": ["established"],
            "event date": ["1992-01-25"],
            "remarks": ["not a field: ignored"],
        }
    )
    source = _source(Kind.RELATIONS)
    mapped = apply_mapping(raw, source, ref)
    assert mapped.select("country", "counterpart", "event", "event_date", "notes").rows() == [
        ("Kazakhstan", "France", "established", "1992-01-25", None)
    ]
    result = _run(raw, source, ref)
    assert (result.facts.height, result.rejected.height) == (1, 0)


def test_a_mapping_that_names_columns_keeps_full_control(ref: Reference) -> None:
    raw = _raw({"Land": ["Kazakhstan"], "country": ["Atlantis"], "notes": ["unmapped"]})
    source = _source(Kind.RELATIONS, columns={"Land": "country"})
    mapped = apply_mapping(raw, source, ref)
    assert mapped.select("country", "notes").rows() == [("Kazakhstan", None)]


def test_a_list_with_no_mapped_column_is_refused(ref: Reference) -> None:
    raw = _raw({"Land": ["Kazakhstan"], "Partner": ["France"]})
    with pytest.raises(ColumnsMissingError) as info:
        apply_mapping(raw, _source(Kind.RELATIONS), ref)
    assert info.value.exit_code == 65
    assert "['Land', 'Partner']" in str(info.value) and "'counterpart'" in str(info.value)
    assert "--mapping" in str(info.value)


def test_two_headers_for_one_field_need_a_mapping(ref: Reference) -> None:
    raw = _raw({"country": ["Kazakhstan"], "Country ": ["France"]})
    with pytest.raises(ConfigError, match="'country' and 'Country ' both name field country"):
        apply_mapping(raw, _source(Kind.RELATIONS), ref)


def test_missing_record_id_column(ref: Reference) -> None:
    raw = _visit_rows(["President Andrzej Duda"])
    with pytest.raises(ConfigError, match="record_no"):
        apply_mapping(raw, _visits(record_id=["record_no"]), ref)


def test_derive_from_an_unfilled_field(ref: Reference) -> None:
    source = _visits(
        derive={"visit_type": {"from": "notes", "patterns": [{"match": "state", "value": "state"}]}}
    )
    with pytest.raises(ConfigError, match="notes"):
        apply_mapping(_visit_rows(["King X"]), source, ref)


def test_constants_fill_empty_cells(ref: Reference) -> None:
    raw = _raw({"host": ["France", None, "", " \u00a0 "], "who": ["King X"] * 4})
    source = _visits(
        columns={"host": "host_country", "who": "visitor"},
        constants={"host_country": "USA", "city": " Washington\u00a0D.C. "},
    )
    mapped = apply_mapping(raw, source, ref)
    assert mapped.get_column("host_country").to_list() == ["France", "USA", "USA", "USA"]
    assert mapped.get_column("city").to_list() == ["Washington D.C."] * 4


def test_mapped_text_is_cleaned_and_every_field_exists(ref: Reference) -> None:
    raw = _visit_rows(["  Prime\u00a0Minister   Mark Rutte "], ["\u201cNetherlands\u201d"])
    mapped = apply_mapping(raw, _visits(), ref)
    assert mapped.get_column("visitor").to_list() == ["Prime Minister Mark Rutte"]
    assert mapped.get_column("visitor_country").to_list() == ['"Netherlands"']
    for field in ("host_country", "visitor_organization", "end_date", "city", "notes"):
        assert field in mapped.columns


def test_values_maps(ref: Reference) -> None:
    raw = _raw({"who": ["King X"] * 4, "kind": ["Official  Visit", "STATE", "working", None]})
    source = _visits(
        columns={"who": "visitor", "kind": "visit_type"},
        values={"visit_type": {"official visit": "official", "State": "state"}},
    )
    mapped = apply_mapping(raw, source, ref)
    assert mapped.get_column("visit_type").to_list() == ["official", "state", "working", None]


def test_values_map_with_sharp_s(ref: Reference) -> None:
    raw = _raw({"c": ["Kazakhstan"], "o": ["UN"], "st": ["Außerordentliches Mitglied"]})
    source = _source(
        Kind.MEMBERSHIPS,
        columns={"c": "country", "o": "organization", "st": "status"},
        values={"status": {"Außerordentliches Mitglied": "associate"}},
    )
    assert apply_mapping(raw, source, ref).get_column("status").to_list() == ["associate"]


def test_derive_patterns(ref: Reference) -> None:
    raw = _raw(
        {
            "who": ["King X"] * 5,
            "notes": [
                "State Visit with dinner",
                "Official working visit.",
                "Official visit.",
                "Met the President.",
                None,
            ],
            "type": [None, None, None, None, "private"],
        }
    )
    source = _visits(
        columns={"who": "visitor", "notes": "notes", "type": "visit_type"},
        derive={
            "visit_type": {
                "from": "notes",
                "default": "working",
                "patterns": [
                    {"match": "(?i)\\bstate visit", "value": "state"},
                    {"match": "(?i)\\bofficial working visit", "value": "working"},
                    {"match": "(?i)\\bofficial visit", "value": "official"},
                ],
            }
        },
    )
    mapped = apply_mapping(raw, source, ref)
    assert mapped.get_column("visit_type").to_list() == [
        "state",
        "working",
        "official",
        "working",
        "private",  # a given value is kept
    ]


def test_two_people_in_one_visitor(ref: Reference) -> None:
    raw = _visit_rows(["President Andrzej Duda and Prime Minister Donald Tusk"])
    source = _visits()
    mapped = apply_mapping(raw, source, ref)
    assert mapped.select(PERSON, "visitor_title", "visitor_name").rows() == [
        (1, "President", "Andrzej Duda"),
        (2, "Prime Minister", "Donald Tusk"),
    ]
    normalized = normalize(mapped, source, ref)
    assert normalized.get_column("visitor_role").to_list() == [
        "head_of_state",
        "head_of_government",
    ]
    result = split(validate(normalized, Kind.VISITS), Kind.VISITS, "t")
    assert result.rejected.height == 0
    assert result.facts.select(
        "visit_id", "visitor_name", "visitor_role", "source_record"
    ).rows() == [
        ("t:1", "Andrzej Duda", "head_of_state", "1"),
        ("t:1#2", "Donald Tusk", "head_of_government", "1"),
    ]
    assert result.facts.get_column(RAW_KEYS).to_list() == [["mem.csv#1"], ["mem.csv#1"]]


def test_compound_title_stays_one_person(ref: Reference) -> None:
    raw = _visit_rows(["Premier and Prince Sihanouk"], ["Cambodia"], ["1961-09-24"])
    result = _run(raw, _visits(), ref)
    assert result.rejected.height == 0
    assert result.facts.select(
        "visit_id", "visitor_title", "visitor_name", "visitor_role", "visitor_country"
    ).rows() == [
        ("t:1", "Premier and Prince", "Sihanouk", "head_of_government", "KHM"),
    ]


def test_people_separator_off(ref: Reference) -> None:
    raw = _visit_rows(["President Andrzej Duda and Prime Minister Donald Tusk"])
    mapped = apply_mapping(raw, _visits(people_separator=None), ref)
    assert mapped.select(PERSON, "visitor_title", "visitor_name").rows() == [
        (1, "President", "Andrzej Duda and Prime Minister Donald Tusk"),
    ]


# --- normalize, validate, split --------------------------------------------------------------


def test_good_row_becomes_a_typed_fact(ref: Reference) -> None:
    raw = _raw(
        {
            "who": ["Prime Minister Mark Rutte"],
            "from": ["Netherlands"],
            "start": ["2 June 2013"],
            "end": ["2013-06"],
        }
    )
    source = _visits(
        columns={
            "who": "visitor",
            "from": "visitor_country",
            "start": "start_date",
            "end": "end_date",
        }
    )
    result = _run(raw, source, ref)
    assert result.facts.select(
        "host_country",
        "visitor_country",
        "start_date",
        "start_precision",
        "end_date",
        "end_precision",
    ).row(0) == (
        "USA",
        "NLD",
        D(2013, 6, 2),
        "day",
        D(2013, 6, 30),
        "month",
    )
    assert result.facts.get_column("source").to_list() == ["t"]


def test_row_with_three_problems_is_rejected_once(ref: Reference) -> None:
    raw = _visit_rows(
        ["Prime Minister Mark Rutte", "Grand Poobah Bob"],
        ["Netherlands", "Atlantis"],
        ["2013-06-02", "2023-13-45"],
    )
    result = _run(raw, _visits(), ref)
    assert result.facts.get_column("visit_id").to_list() == ["t:1"]
    assert result.rejected.height == 1
    rejected = result.rejected.row(0, named=True)
    assert (rejected["source_file"], rejected["source_row"], rejected["source_record"]) == (
        "mem.csv",
        2,
        "2",
    )
    assert "Atlantis" in rejected["raw"]
    errors = rejected["errors"]
    assert sorted((e["column"], e["check"], e["value"]) for e in errors) == [
        ("start_date", "date_format", "2023-13-45"),
        ("visitor_country", "country_known", "Atlantis"),
        ("visitor_title", "title_known", "Grand Poobah Bob"),
    ]
    for error in errors:
        assert error["message"]


def test_country_at_date_error(ref: Reference) -> None:
    raw = _visit_rows(["Chairman Alexei Kosygin"], ["U.S.S.R."], ["1995-01-01"])
    result = _run(raw, _visits(), ref)
    [errors] = result.rejected.get_column("errors").to_list()
    assert [(e["column"], e["check"], e["value"]) for e in errors] == [
        ("visitor_country", "country_at_date", "U.S.S.R."),
    ]


def test_schema_checks_add_errors(ref: Reference) -> None:
    raw = _raw(
        {
            "who": ["King X", "King Y"],
            "from": ["Spain", "United States"],
            "start": ["2020-05-10", "2020-05-10"],
            "end": ["2020-05-01", None],
            "type": ["holiday", None],
        }
    )
    source = _visits(
        columns={
            "who": "visitor",
            "from": "visitor_country",
            "start": "start_date",
            "end": "end_date",
            "type": "visit_type",
        }
    )
    result = _run(raw, source, ref)
    assert result.facts.height == 0
    by_row = {r["source_row"]: r["errors"] for r in result.rejected.to_dicts()}
    first = {(e["column"], e["check"]) for e in by_row[1]}
    assert ("end_date", "end_after_start") in first
    assert any(column == "visit_type" and "isin" in check for column, check in first)
    assert [(e["column"], e["check"]) for e in by_row[2]] == [
        ("visitor_country", "visitor_not_host"),
    ]
    for errors in by_row.values():
        for error in errors:
            assert error["message"]


def test_two_person_row_with_one_unknown_title_is_rejected_whole(tmp_path: Path) -> None:
    # a title known only for Turkey: it splits the visitor text but has no role for Poland
    folder = tmp_path / "reference"
    folder.mkdir()
    (folder / "titles.csv").write_text(
        "title,role,country\nGrand Vizier,head_of_government,TUR\n", encoding="utf-8"
    )
    user_ref = Reference.load(Settings(home=tmp_path))
    raw = _visit_rows(["President Andrzej Duda and Grand Vizier Bob", "President Andrzej Duda"])
    result = _run(raw, _visits(), user_ref)
    assert result.facts.get_column("visit_id").to_list() == ["t:2"]
    assert result.rejected.height == 1
    rejected = result.rejected.row(0, named=True)
    assert rejected["source_row"] == 1
    assert [(e["column"], e["check"], e["value"]) for e in rejected["errors"]] == [
        ("visitor_title", "title_known", "Grand Vizier"),
    ]


def test_exact_repeats_are_counted_and_conflicts_rejected(ref: Reference) -> None:
    raw = _visit_rows(
        [
            "Prime Minister Mark Rutte",
            "Prime Minister Mark Rutte",
            "King Philippe",
            "King Philippe",
            "President Andrzej Duda",
        ],
        ["Netherlands", "Netherlands", "Belgium", "Belgium", "Poland"],
        ["2013-06-02", "2013-06-02", "2020-01-01", "2021-01-01", "2024-03-12"],
        ids=["a", "a", "b", "b", "c"],
    )
    result = _run(raw, _visits(record_id="id"), ref)
    assert result.repeated == 1
    # which of two different rows under one id is right is for a steward: both are rejected
    assert sorted(result.facts.get_column("visit_id").to_list()) == ["t:a", "t:c"]
    assert result.rejected.get_column("source_row").to_list() == [3, 4]
    for rejected in result.rejected.iter_rows(named=True):
        [error] = rejected["errors"]
        assert (error["column"], error["check"], error["value"]) == (
            "source_record",
            "duplicate_record",
            "b",
        )
        assert error["message"] == "record id b is used by rows 3, 4 with different content"


def _accounted(result: Split) -> int:
    loaded = result.facts.get_column(RAW_KEYS).explode().n_unique() if result.facts.height else 0
    return loaded + result.rejected.height + result.repeated


def test_every_raw_row_is_accounted_for_once(ref: Reference) -> None:
    raw = _visit_rows(
        [
            "Prime Minister Mark Rutte",
            "Prime Minister Mark Rutte",
            "Grand Poobah Bob",
            "President Andrzej Duda and Prime Minister Donald Tusk",
        ],
        ids=["a", "a", "b", "c"],
    )
    result = _run(raw, _visits(record_id="id"), ref)
    assert _accounted(result) == raw.frame.height


def test_a_record_id_with_a_hash_never_collides_with_a_second_person(ref: Reference) -> None:
    raw = _visit_rows(
        ["President Andrzej Duda and Prime Minister Donald Tusk", "Prime Minister Mark Rutte"],
        ids=["a", "a#2"],
    )
    result = _run(raw, _visits(record_id="id"), ref)
    assert result.rejected.height == 0
    assert sorted(result.facts.select("visit_id", "source_record").rows()) == [
        ("t:a", "a"),
        ("t:a##2", "a#2"),
        ("t:a#2", "a"),
    ]


def test_conflicting_repeat_of_a_two_person_row_is_counted_once(ref: Reference) -> None:
    raw = _visit_rows(
        [
            "President Andrzej Duda and Prime Minister Donald Tusk",
            "President Andrzej Duda and Prime Minister Mateusz Morawiecki",
        ],
        ids=["1", "1"],
    )
    result = _run(raw, _visits(record_id="id"), ref)
    assert result.rejected.get_column("source_row").to_list() == [1, 2]
    assert _accounted(result) == raw.frame.height


# --- yearly periods --------------------------------------------------------------------------


def _yearly(ref: Reference, years: list[str], countries: list[str] | None = None) -> Split:
    n = len(years)
    raw = _raw({"c": countries or ["Kazakhstan"] * n, "y": years})
    source = _source(
        Kind.MEMBERSHIPS,
        columns={"c": "country", "y": "year"},
        record_id=["c", "y"],
        periods="yearly",
        constants={"organization": "UN", "body": "UNSC", "status": "elected_member"},
    )
    return _run(raw, source, ref)


def test_collapse_years(ref: Reference) -> None:
    result = _yearly(ref, ["2018", "2015", "2017"])
    assert result.rejected.height == 0
    assert result.facts.select("start_date", "end_date", "start_precision").sort(
        "start_date"
    ).rows() == [
        (D(2015, 1, 1), D(2015, 12, 31), "year"),
        (D(2017, 1, 1), D(2017, 12, 31), "year"),
        (D(2018, 1, 1), D(2018, 12, 31), "year"),
    ]
    periods = collapse_years(result.facts).sort("start_date")
    assert periods.columns == result.facts.columns
    assert periods.select(
        "country",
        "organization",
        "body",
        "status",
        "start_date",
        "end_date",
        "start_precision",
        "end_precision",
    ).rows() == [
        ("KAZ", "UN", "UNSC", "elected_member", D(2015, 1, 1), D(2015, 12, 31), "year", "year"),
        ("KAZ", "UN", "UNSC", "elected_member", D(2017, 1, 1), D(2018, 12, 31), "year", "year"),
    ]
    merged = periods.row(1, named=True)
    assert merged["membership_id"] == "t:Kazakhstan|2017"
    assert merged["source_record"] == "Kazakhstan|2017..Kazakhstan|2018"
    assert sorted(merged[RAW_KEYS]) == ["mem.csv#1", "mem.csv#3"]


def test_collapse_years_keeps_countries_apart(ref: Reference) -> None:
    result = _yearly(ref, ["2017", "2018"], ["Kazakhstan", "Japan"])
    periods = collapse_years(result.facts)
    assert sorted(periods.select("country", "start_date", "end_date").rows()) == [
        ("JPN", D(2018, 1, 1), D(2018, 12, 31)),
        ("KAZ", D(2017, 1, 1), D(2017, 12, 31)),
    ]


def test_collapse_years_leaves_day_precision_alone(ref: Reference) -> None:
    raw = _raw(
        {
            "c": ["Kazakhstan", "Kazakhstan"],
            "s": ["2017-01-01", "2018-01-01"],
            "e": ["2017-12-31", "2018-12-31"],
        }
    )
    source = _source(
        Kind.MEMBERSHIPS,
        columns={"c": "country", "s": "start_date", "e": "end_date"},
        constants={"organization": "UN", "status": "member"},
    )
    facts = _run(raw, source, ref).facts
    assert collapse_years(facts).height == 2


def test_collapse_years_of_nothing() -> None:
    empty = pl.DataFrame()
    assert collapse_years(empty).is_empty()


def test_and_before_an_untitled_part_is_an_error_not_a_guess(ref: Reference) -> None:
    result = _run(_visit_rows(["President X Y and Wizard Z"]), _visits(), ref)
    assert result.facts.is_empty()
    (errors,) = result.rejected.get_column("errors").to_list()
    assert [(e["column"], e["check"]) for e in errors] == [("visitor", "people_split")]
    assert "'Wizard Z' starts with no known title" in errors[0]["message"]


def test_comma_splits_titled_people_but_keeps_name_suffixes(ref: Reference) -> None:
    rows = _visit_rows(
        [
            "President Anwar Sadat, Prime Minister Mustafa Khalil",
            "President Benigno S. Aquino, 3rd",
            "Premier and Prince Sihanouk",
        ],
        country=["Egypt", "Philippines", "Cambodia"],
    )
    facts = _run(rows, _visits(), ref).facts
    assert facts.select("visitor_title", "visitor_name", "visitor_role").rows() == [
        ("President", "Anwar Sadat", "head_of_state"),
        ("Prime Minister", "Mustafa Khalil", "head_of_government"),
        ("President", "Benigno S. Aquino, 3rd", "head_of_state"),
        ("Premier and Prince", "Sihanouk", "head_of_government"),
    ]


def test_corrections_fix_named_records_as_data(ref: Reference) -> None:
    rows = _visit_rows(
        ["Valdas Adamkus", "Prime MinisterHaidar al- Abadi"],
        country=["Lithuania", "Iraq"],
        ids=["1519", "2887"],
    )
    source = _visits(
        record_id="id",
        corrections={
            "1519": {"visitor": "President Valdas Adamkus"},
            "2887": {"visitor": "Prime Minister Haidar al-Abadi"},
        },
    )
    result = _run(rows, source, ref)
    assert result.rejected.is_empty()
    assert result.facts.select("visitor_name", "visitor_role").rows() == [
        ("Valdas Adamkus", "head_of_state"),
        ("Haidar al-Abadi", "head_of_government"),
    ]
    assert _run(rows, _visits(record_id="id"), ref).rejected.height == 2
