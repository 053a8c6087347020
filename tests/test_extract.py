"""Extract: every reader gives text-only tables with row numbers, file and content hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter

from relations_etl.config import Kind, Source
from relations_etl.envelope import FILE, RAW, ROW, ROW_ERRORS
from relations_etl.errors import SourceReadError
from relations_etl.extract import extract
from relations_etl.rawtable import RawTable, as_text_table
from relations_etl.readers.hsg_visits import read_hsg_visits
from tests.conftest import NoListingHandler, QuietHandler, Serve

NBSP = "\u00a0"


def _source(uri: str | Path, fmt: str | None = None, **options: Any) -> Source:
    return Source(
        name="test-source", kind=Kind.VISITS, uri=str(uri), format=fmt, mapping={"options": options}
    )


def _one(source: Source) -> RawTable:
    tables = list(extract(source))
    assert len(tables) == 1
    return tables[0]


def _assert_text_only(table: RawTable) -> None:
    for column in table.columns:
        assert table.frame.schema[column] == pl.String, column
    assert table.frame.schema[ROW] == pl.Int64
    assert table.frame.get_column(ROW).to_list() == list(range(1, table.frame.height + 1))
    assert set(table.frame.get_column(FILE).to_list()) == {table.file}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- CSV and TSV ---------------------------------------------------------------------------


def test_csv_every_value_is_text(tmp_path: Path) -> None:
    path = tmp_path / "visits.csv"
    path.write_bytes(
        f"id,visitor,year,score\n007,{NBSP}Mark{NBSP}Rutte ,2023,1.50\n8,,1999,\n".encode()
    )
    table = _one(_source(path))
    assert table.file == str(path)
    assert table.columns == ("id", "visitor", "year", "score")
    assert table.content_hash == _sha(path)
    _assert_text_only(table)
    rows = table.frame.select(*table.columns).rows()
    # nothing is cleaned or converted at this stage: NBSP, padding and leading zeros stay
    assert rows == [("007", f"{NBSP}Mark{NBSP}Rutte ", "2023", "1.50"), ("8", None, "1999", None)]
    assert json.loads(table.frame.get_column(RAW)[0]) == {
        "id": "007",
        "visitor": f"{NBSP}Mark{NBSP}Rutte ",
        "year": "2023",
        "score": "1.50",
    }


def test_csv_format_is_guessed_and_options_apply(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("exported by a tool\nA;B\n1;x\n2;y\n", encoding="utf-8")
    table = _one(_source(path, separator=";", skip_rows=1))
    assert table.columns == ("A", "B")
    assert table.frame.select("A", "B").rows() == [("1", "x"), ("2", "y")]


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "relations.tsv"
    path.write_text("country\tdate\nKazakhstan\t1992-01\nFrance\t03/04/2023\n", encoding="utf-8")
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.frame.select("country", "date").rows() == [
        ("Kazakhstan", "1992-01"),
        ("France", "03/04/2023"),
    ]
    assert table.content_hash == _sha(path)


def _row_errors(table: RawTable) -> list[list[str]]:
    return [[e["check"] for e in errors] for errors in table.frame.get_column(ROW_ERRORS).to_list()]


def test_csv_ragged_lines_are_row_errors_not_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n7\n8,9\n", encoding="utf-8")
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.frame.select("a", "b").rows() == [("1", "2"), ("3", "4"), ("7", None), ("8", "9")]
    assert _row_errors(table) == [[], ["field_count"], ["field_count"], []]
    message = table.frame.get_column(ROW_ERRORS)[1][0]["message"]
    assert message == "row 2 (line 3) has 4 field(s), the header has 2"


# --- XLSX ------------------------------------------------------------------------------------


def test_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Visits")
    sheet.write_row(0, 0, ["visitor", "year", "score", "when"])
    sheet.write_row(1, 0, [f"Mark{NBSP}Rutte", 2023, 1.5, "2023-05-12"])
    sheet.write_row(2, 0, ["Donald Tusk", 1999, 2])
    workbook.close()
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.content_hash == _sha(path)
    assert table.frame.select(*table.columns).rows() == [
        (f"Mark{NBSP}Rutte", "2023", "1.5", "2023-05-12"),
        ("Donald Tusk", "1999", "2", None),
    ]


def test_xlsx_named_sheet(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    workbook.add_worksheet("First").write_row(0, 0, ["a"])
    second = workbook.add_worksheet("Second")
    second.write_row(0, 0, ["b"])
    second.write_row(1, 0, ["in second"])
    workbook.close()
    table = _one(_source(path, sheet="Second"))
    assert table.columns == ("b",)
    assert table.frame.get_column("b").to_list() == ["in second"]


def test_xlsx_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("not a zip file", encoding="utf-8")
    with pytest.raises(SourceReadError, match="xlsx"):
        list(extract(_source(path)))


# --- JSON and NDJSON -------------------------------------------------------------------------


def test_json_list_of_objects(tmp_path: Path) -> None:
    records = [
        {"id": 1, "who": "Mark Rutte", "tags": ["a", "b"], "where": {"city": "Zürich"}},
        {"id": 2, "who": None, "score": 1.5},
    ]
    path = tmp_path / "visits.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.columns == ("id", "who", "tags", "where", "score")
    assert table.content_hash == _sha(path)
    first, second = table.frame.select(*table.columns).to_dicts()
    assert first == {
        "id": "1",
        "who": "Mark Rutte",
        "tags": '["a", "b"]',
        "where": '{"city": "Zürich"}',
        "score": None,
    }
    assert json.loads(first["tags"]) == ["a", "b"]
    assert second == {"id": "2", "who": None, "tags": None, "where": None, "score": "1.5"}


def test_json_records_under_a_key(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"meta": {}, "items": [{"a": "x"}, {"a": "y"}]}), encoding="utf-8")
    table = _one(_source(path, records="items"))
    assert table.frame.get_column("a").to_list() == ["x", "y"]


def test_json_booleans_are_json_text(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps([{"flag": True, "nested": [False]}]), encoding="utf-8")
    row = _one(_source(path)).frame.select("flag", "nested").row(0)
    assert row == ("true", "[false]")


@pytest.mark.parametrize(
    "text",
    ['{"not": "a list"', '{"not": "a list"}', '"just a string"'],
    ids=["truncated", "object-without-records", "scalar"],
)
def test_malformed_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceReadError, match="JSON") as info:
        list(extract(_source(path)))
    assert info.value.file == str(path)
    assert info.value.source == "test-source"


def test_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text('{"a": 1, "b": {"c": 2}}\n\n{"a": "x"}\n', encoding="utf-8")
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.frame.select("a", "b").rows() == [("1", '{"c": 2}'), ("x", None)]
    assert table.content_hash == _sha(path)


def test_json_record_that_is_no_object_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text('[{"a": 1}, 2]', encoding="utf-8")
    table = _one(_source(path))
    assert table.frame.get_column("a").to_list() == ["1", None]
    assert _row_errors(table) == [[], ["json_record"]]


def test_malformed_ndjson_line_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n', encoding="utf-8")
    table = _one(_source(path))
    assert table.frame.get_column("a").to_list() == ["1", None, "3"]
    assert _row_errors(table) == [[], ["json_line"], []]
    error = table.frame.get_column(ROW_ERRORS)[1][0]
    assert error["value"] == '{"a": '
    assert error["message"].startswith("line 2 is not valid JSON")


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_numbers_come_back_as_text(tmp_path: Path) -> None:
    path = tmp_path / "list.parquet"
    pl.DataFrame(
        {
            "name": ["Kazakhstan", None],
            "year": [2023, 1992],
            "share": [0.25, 1.5],
            "when": [dt.date(2023, 5, 12), None],
        }
    ).write_parquet(path)
    table = _one(_source(path))
    _assert_text_only(table)
    assert table.content_hash == _sha(path)
    assert table.frame.select(*table.columns).rows() == [
        ("Kazakhstan", "2023", "0.25", "2023-05-12"),
        (None, "1992", "1.5", None),
    ]


def test_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceReadError, match="parquet"):
        list(extract(_source(path)))


# --- missing files, as_text_table -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json", "parquet", "hsg-visits-xml"])
def test_missing_file_names_it(tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "absent" / ("nothing.xml" if fmt == "hsg-visits-xml" else f"x.{fmt}")
    with pytest.raises(SourceReadError) as info:
        list(extract(_source(missing, fmt)))
    assert str(missing) in str(info.value)
    assert info.value.file == str(missing)
    assert not info.value.transient


def test_as_text_table_numbers_rows_and_keeps_raw() -> None:
    # _raw is the row as text, the form later stages (and a quarantine replay) see
    table = as_text_table(pl.DataFrame({"n": [10, 20, 30], "s": ["a", None, "c"]}), "mem", "h")
    assert table.columns == ("n", "s")
    assert table.content_hash == "h"
    assert table.frame.get_column("n").to_list() == ["10", "20", "30"]
    assert table.frame.get_column(ROW).to_list() == [1, 2, 3]
    assert [json.loads(r) for r in table.frame.get_column(RAW)] == [
        {"n": "10", "s": "a"},
        {"n": "20", "s": None},
        {"n": "30", "s": "c"},
    ]


def test_as_text_table_of_an_empty_frame() -> None:
    table = as_text_table(pl.DataFrame(), "empty", "h")
    assert table.columns == ()
    assert table.frame.height == 0


# --- the US Office of the Historian visits XML ----------------------------------------------

VISIT = """  <visit>
    <id>{id}</id>
    <start-date>{start}</start-date>
    <end-date>{end}</end-date>
    <visitor>{visitor}</visitor>
    <from id="{from_id}">{label}</from>
    <description>{description}</description>
  </visit>
"""


def _visits_xml(*visits: dict[str, str]) -> str:
    body = "".join(VISIT.format(**v) for v in visits)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<visits>\n{body}</visits>\n'


@pytest.fixture
def hsg_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hsg"
    folder.mkdir()
    (folder / "2010.xml").write_text(
        _visits_xml(
            {
                "id": "rutte-2013",
                "start": "2013-06-02",
                "end": "2013-06-03",
                "visitor": "Prime Minister Mark Rutte",
                "from_id": "netherlands",
                "label": "Netherlands",
                "description": "Official <i>working</i> visit. Met with the President.",
            },
            {
                "id": "duda-tusk-2014",
                "start": "2014-04-22",
                "end": "2014-04-22",
                "visitor": "President Bronisław Komorowski and Prime Minister Donald Tusk",
                "from_id": "poland",
                "label": "Poland",
                "description": "State visit &amp; dinner.",
            },
        ),
        encoding="utf-8",
    )
    (folder / "2020.xml").write_text(
        _visits_xml(
            {
                "id": "yoon-2023",
                "start": "2023-04-24",
                "end": "2023-04-29",
                "visitor": "President Yoon Suk Yeol",
                "from_id": "korea-south",
                "label": "Korea",
                "description": "State visit.",
            },
        ),
        encoding="utf-8",
    )
    (folder / "README.md").write_text("not a decade file\n", encoding="utf-8")
    return folder


def _hsg(uri: str) -> list[RawTable]:
    return list(read_hsg_visits(uri, "test-source"))


def test_hsg_files_are_extracted_as_one_table(hsg_dir: Path) -> None:
    per_file = _hsg(str(hsg_dir))
    [table] = extract(_source(str(hsg_dir), "hsg-visits-xml"))
    assert table.file == str(hsg_dir)
    assert table.frame.equals(pl.concat([t.frame for t in per_file]))
    digest = "".join(t.content_hash for t in per_file).encode()
    assert table.content_hash == hashlib.sha256(digest).hexdigest()


def test_hsg_local_folder(hsg_dir: Path) -> None:
    tables = _hsg(str(hsg_dir))
    assert [Path(t.file).name for t in tables] == ["2010.xml", "2020.xml"]
    first = tables[0]
    _assert_text_only(first)
    assert first.content_hash == _sha(hsg_dir / "2010.xml")
    assert first.columns == (
        "id",
        "start-date",
        "end-date",
        "visitor",
        "from",
        "from/@id",
        "description",
    )
    rows = first.frame.select(*first.columns).to_dicts()
    assert rows[0] == {
        "id": "rutte-2013",
        "start-date": "2013-06-02",
        "end-date": "2013-06-03",
        "visitor": "Prime Minister Mark Rutte",
        "from": "Netherlands",
        "from/@id": "netherlands",
        "description": "Official working visit. Met with the President.",
    }
    assert rows[1]["description"] == "State visit & dinner."
    assert tables[1].frame.get_column("from/@id").to_list() == ["korea-south"]


def test_hsg_single_file_and_missing_elements(tmp_path: Path) -> None:
    path = tmp_path / "1990.xml"
    path.write_text(
        "<visits><visit><id>x</id><visitor>King Y</visitor></visit></visits>", encoding="utf-8"
    )
    [table] = _hsg(str(path))
    assert table.frame.select(*table.columns).row(0) == (
        "x",
        None,
        None,
        "King Y",
        None,
        None,
        None,
    )


def test_hsg_malformed_xml(tmp_path: Path) -> None:
    (tmp_path / "2000.xml").write_text("<visits><visit><id>1</visit>", encoding="utf-8")
    with pytest.raises(SourceReadError, match="well-formed") as info:
        _hsg(str(tmp_path))
    assert info.value.file is not None and info.value.file.endswith("2000.xml")


def test_hsg_folder_without_decade_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(SourceReadError, match=r"no <decade>\.xml"):
        _hsg(str(tmp_path))


def _same_rows(remote: list[RawTable], local: list[RawTable]) -> None:
    assert len(remote) == len(local) == 2
    for r, loc in zip(remote, local, strict=True):
        assert Path(r.file).name == Path(loc.file).name
        assert r.content_hash == loc.content_hash
        assert r.columns == loc.columns
        assert r.frame.drop(FILE).equals(loc.frame.drop(FILE))
        assert r.frame.get_column(FILE).to_list() == [r.file] * r.frame.height


def test_hsg_over_http_with_listing(hsg_dir: Path, serve: Serve) -> None:
    url, requested = serve(hsg_dir, QuietHandler)
    remote = _hsg(url)
    assert [t.file for t in remote] == [f"{url}2010.xml", f"{url}2020.xml"]
    _same_rows(remote, _hsg(str(hsg_dir)))
    assert "/1870.xml" not in requested  # the listing was used, no probing


def test_hsg_over_http_without_listing_probes_decades(hsg_dir: Path, serve: Serve) -> None:
    url, requested = serve(hsg_dir, NoListingHandler)
    remote = _hsg(url)
    assert [t.file for t in remote] == [f"{url}2010.xml", f"{url}2020.xml"]
    _same_rows(remote, _hsg(str(hsg_dir)))
    assert "/1870.xml" in requested  # decade names were probed


def test_hsg_over_http_nothing_found(tmp_path: Path, serve: Serve) -> None:
    url, _ = serve(tmp_path, NoListingHandler)
    with pytest.raises(SourceReadError, match=r"no <decade>\.xml"):
        _hsg(url)


def test_http_missing_file_is_terminal(tmp_path: Path, serve: Serve) -> None:
    url, _ = serve(tmp_path, QuietHandler)
    with pytest.raises(SourceReadError) as info:
        list(extract(_source(f"{url}absent.csv")))
    assert not info.value.transient
    assert "absent.csv" in str(info.value)
