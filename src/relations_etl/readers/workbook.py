"""XLSX: one named sheet, a header below merged title rows, cached formula values, all as text."""

from __future__ import annotations

from typing import Any

import fastexcel
import polars as pl

from relations_etl.errors import SourceReadError


def read_xlsx(data: bytes, *, sheet: Any, skip_rows: int, uri: str, source: str) -> pl.DataFrame:
    """Read one sheet; the header is the first row after `skip_rows` rows (merged titles).

    A formula cell gives the value Excel cached when it last saved the file; a formula without a
    cached value reads as empty. A workbook of several sheets needs `options.sheet`.
    """
    try:
        reader = fastexcel.read_excel(data)
    except Exception as exc:  # calamine says "Cannot detect file format" and the like
        raise SourceReadError(
            f"not a readable XLSX workbook (truncated, or another format under an .xlsx name): "
            f"{str(exc).splitlines()[0]}",
            source=source,
            file=uri,
            hint="Export the list again from the spreadsheet program; nothing was loaded.",
        ) from exc
    names = list(reader.sheet_names)
    if sheet is None and len(names) > 1:
        raise SourceReadError(
            f"the workbook has {len(names)} sheets {names}; say which one to read",
            source=source,
            file=uri,
            hint="Set options.sheet in the mapping to a sheet name (or its 0-based position).",
        )
    chosen = names[0] if sheet is None else sheet
    if (isinstance(chosen, str) and chosen not in names) or (
        isinstance(chosen, int) and not 0 <= chosen < len(names)
    ):
        raise SourceReadError(
            f"the workbook has no sheet {chosen!r}; its sheets are {names}",
            source=source,
            file=uri,
        )
    try:
        table = reader.load_sheet(chosen, header_row=None, dtypes="string").to_arrow()
    except Exception as exc:
        raise SourceReadError(
            f"cannot read sheet {chosen!r}: {str(exc).splitlines()[0]}", source=source, file=uri
        ) from exc
    cells = pl.DataFrame(pl.from_arrow(table))
    if cells.height <= skip_rows:
        raise SourceReadError(
            f"sheet {chosen!r} is empty"
            + (f" below its first {skip_rows} row(s)" if skip_rows else ""),
            source=source,
            file=uri,
        )
    header_cells = cells.row(skip_rows)
    header = [
        str(v).strip() if v is not None and str(v).strip() else f"column_{n}"
        for n, v in enumerate(header_cells, start=1)
    ]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise SourceReadError(
            f"header (sheet {chosen!r}, row {skip_rows + 1}) repeats column name(s) {repeated}",
            source=source,
            file=uri,
            column=repeated[0],
            hint="Rename the repeated columns; a title above the header is skipped with "
            "options.skip_rows.",
        )
    body = cells.slice(skip_rows + 1)
    body.columns = header
    return body.filter(~pl.all_horizontal(pl.all().is_null()))
