"""Write the binary files of the hostile corpus (XLSX, and Parquet); run from the repository root:

    .venv/bin/python tests/cases/hostile/make_xlsx.py

The outputs are committed beside this script, so the tests never need xlsxwriter to build them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
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


if __name__ == "__main__":
    serial_dates()
    formulas()
    merged_header()
    several_sheets()
    duplicate_header()
    truncated_and_fake()
    wrong_types_parquet()
