"""Write the binary files of the hostile corpus (XLSX, and Parquet); run from the repository root:

    .venv/bin/python tests/cases/hostile/make_xlsx.py

The outputs are committed beside this script, so the tests never need xlsxwriter to build them.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

HERE = Path(__file__).resolve().parent
HEADER = ["id", "visitor", "country", "start", "end", "notes"]


def _book(name: str) -> xlsxwriter.Workbook:
    book = xlsxwriter.Workbook(str(HERE / name))
    book.set_properties({"created": dt.datetime(2024, 1, 1)})  # same bytes on every run
    return book


def serial_dates() -> None:
    """Dates as Excel day numbers (plain numbers) and as date-formatted cells."""
    book = _book("serial_dates.xlsx")
    sheet = book.add_worksheet("Visits")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ["h1", "President Emmanuel Macron", "France", 45231])  # 2023-11-01
    sheet.write_row(2, 0, ["h2", "King Philippe", "Belgium"])
    sheet.write_datetime(2, 3, dt.datetime(2023, 3, 1), day)
    sheet.write_datetime(2, 4, dt.datetime(2023, 3, 2), day)
    book.close()


def formulas() -> None:
    """Formula cells: one with a cached value, one whose cached value is empty."""
    book = _book("formulas.xlsx")
    sheet = book.add_worksheet("Visits")
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ["h1", "King Philippe", "Belgium", "2023-03-01"])
    sheet.write_formula(1, 5, '="visit "&A2', None, "visit h1")
    sheet.write_row(2, 0, ["h2", "President Emmanuel Macron", "France"])
    sheet.write_formula(2, 3, "=TODAY()", None, "")  # never recalculated: no cached date
    sheet.write_string(3, 0, "h3")
    sheet.write_row(3, 1, ["Chancellor Olaf Scholz", "Germany", "2023-06-20"])
    sheet.write_string(3, 5, "=1+2")  # text that looks like a formula stays text
    book.close()


def merged_header() -> None:
    """A merged title row above the real header, as reports exported from Excel have."""
    book = _book("merged_header.xlsx")
    sheet = book.add_worksheet("Visits")
    title = book.add_format({"bold": True, "align": "center"})
    sheet.merge_range(0, 0, 0, len(HEADER) - 1, "Official visits received in 2023", title)
    sheet.write_row(1, 0, HEADER)
    sheet.write_row(2, 0, ["h1", "King Philippe", "Belgium", "2023-03-01"])
    sheet.write_row(3, 0, ["h2", "President Emmanuel Macron", "France", "2023-11-01"])
    book.close()


def several_sheets() -> None:
    """A workbook with a cover sheet before the list."""
    book = _book("several_sheets.xlsx")
    book.add_worksheet("Cover").write(0, 0, "Protocol department, 2023")
    sheet = book.add_worksheet("Visits 2023")
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ["h1", "King Philippe", "Belgium", "2023-03-01"])
    book.add_worksheet("Notes").write(0, 0, "checked")
    book.close()


def duplicate_header() -> None:
    """Two columns under one name."""
    book = _book("duplicate_header.xlsx")
    sheet = book.add_worksheet("Visits")
    sheet.write_row(0, 0, [*HEADER, "start"])
    sheet.write_row(1, 0, ["h1", "King Philippe", "Belgium", "2023-03-01", None, None, "x"])
    book.close()


def truncated_and_fake() -> None:
    """A workbook cut short in transfer, and a CSV that only has an .xlsx name."""
    whole = (HERE / "merged_header.xlsx").read_bytes()
    (HERE / "truncated.xlsx").write_bytes(whole[: len(whole) // 2])
    (HERE / "not_really.xlsx").write_text(
        ",".join(HEADER) + "\nh1,King Philippe,Belgium,2023-03-01,,\n", encoding="utf-8"
    )


def wrong_types_parquet() -> None:
    """Parquet whose columns are not the types a reader would expect."""
    pl.DataFrame(
        {
            "id": [1, 2, 3],
            "visitor": ["King Philippe", "President Emmanuel Macron", "Chancellor Olaf Scholz"],
            "country": ["Belgium", "France", "Germany"],
            "start": [20230301, 2023, None],  # a day as a number, a year, nothing
            "end": [dt.date(2023, 3, 2), None, None],
            "notes": [["a", "list"], None, ["x"]],
        }
    ).write_parquet(HERE / "wrong_types.parquet")
    (HERE / "truncated.parquet").write_bytes((HERE / "wrong_types.parquet").read_bytes()[:200])


_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def raw_book(path: Path, sheet_xml: str) -> None:
    """The smallest workbook calamine reads, one sheet whose XML is given as written."""
    parts = {
        "[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
        'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
        'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
        'worksheet+xml"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" '
        f'Type="{_DOC}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{_MAIN}" xmlns:r="{_DOC}"><sheets>'
        '<sheet name="Visits" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" '
        f'Type="{_DOC}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{_MAIN}"><sheetData>{sheet_xml}'
        "</sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in parts.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # same bytes each run
            info.compress_type = zipfile.ZIP_DEFLATED
            book.writestr(info, text)


def _cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def far_cells() -> None:
    """1.5 KB workbooks whose used cells span more than any list: calamine allocates the span."""
    header = '<row r="1">' + _cell("A1", "id") + _cell("B1", "visitor") + "</row>"
    # one cell at the last column and row: 16,384 x 1,048,576 cells (calamine asked 512 GiB)
    raw_book(
        HERE / "xfd1048576.xlsx", header + '<row r="1048576">' + _cell("XFD1048576", "x") + "</row>"
    )
    # within the column limit, 100 x 1,048,576 cells
    raw_book(
        HERE / "far_rows.xlsx", header + '<row r="1048576">' + _cell("CV1048576", "x") + "</row>"
    )
    # no r="..." on rows and cells: positions follow from their order (OOXML allows it)
    rows = (
        "".join("<row/>" for _ in range(40))
        + "<row>"
        + '<c t="inlineStr"><is><t>x</t></is></c>' * 12000
        + "</row>"
    )
    raw_book(
        HERE / "implicit_positions.xlsx",
        '<row><c t="inlineStr"><is><t>id</t></is></c></row>' + rows,
    )


def map_parquet() -> None:
    """A Parquet file with a MAP column the mapping does not name."""
    table = pa.table(
        {
            "id": ["h1"],
            "visitor": ["King Philippe"],
            "country": ["Belgium"],
            "start": ["2023-03-01"],
            "end": pa.array([None], type=pa.string()),
            "notes": pa.array([None], type=pa.string()),
            "tags": pa.array(
                [[("protocol", "state"), ("press", "open")]], type=pa.map_(pa.string(), pa.string())
            ),
        }
    )
    pq.write_table(table, HERE / "map_column.parquet")


if __name__ == "__main__":
    serial_dates()
    formulas()
    merged_header()
    several_sheets()
    duplicate_header()
    truncated_and_fake()
    wrong_types_parquet()
    far_cells()
    map_parquet()
