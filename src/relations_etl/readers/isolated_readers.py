"""What runs inside the reader child process (readers/isolated.py): native readers, their
checks, and the conversion to text, so that the parent only ever receives a table of text."""

from __future__ import annotations

import io

import fastexcel
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from relations_etl.errors import SourceReadError
from relations_etl.limits import amount, too_large
from relations_etl.text import shown


def _first_line(exc: Exception) -> str:
    """A native reader's message, first line only and shortened: it may quote the file."""
    return shown((str(exc).splitlines() or [""])[0], 200, quoted=False)


def sheet_cells(data: bytes, sheet: str, uri: str, source: str) -> pa.Table:
    """Every cell of one sheet as text, no header taken (the parent finds the header row)."""
    try:
        reader = fastexcel.read_excel(data)
    except Exception as exc:  # calamine says "Cannot detect file format" and the like
        raise SourceReadError(
            "not a readable XLSX workbook (truncated, or another format under an .xlsx name): "
            + _first_line(exc),
            source=source,
            file=uri,
            hint="Export the list again from the spreadsheet program; nothing was loaded.",
        ) from exc
    try:
        batch = reader.load_sheet(sheet, header_row=None, dtypes="string").to_arrow()
    except Exception as exc:
        raise SourceReadError(
            f"cannot read sheet {shown(sheet)}: " + _first_line(exc),
            source=source,
            file=uri,
        ) from exc
    return pa.Table.from_batches([batch])


def _unreadable_parquet(exc: Exception, source: str, uri: str) -> SourceReadError:
    """The error of a Parquet file pyarrow or polars cannot read."""
    return SourceReadError(
        "not a readable Parquet file: " + _first_line(exc), source=source, file=uri
    )


def parquet_text(
    data: bytes, uri: str, source: str, max_columns: int, max_decompressed: int
) -> pa.Table:
    """A Parquet file as text columns, refused first if its footer declares too many columns
    or more uncompressed bytes than the limits allow."""
    from relations_etl.rawtable import as_text

    try:
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception as exc:
        raise _unreadable_parquet(exc, source, uri) from exc
    if metadata.num_columns > max_columns:
        raise too_large(
            f"the file has {metadata.num_columns:,} columns",
            max_columns,
            "max_columns",
            unit="columns",
            source=source,
            file=uri,
        )
    declared = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if declared > max_decompressed:
        raise too_large(
            f"the file decompresses to {amount(declared)}",
            max_decompressed,
            "max_decompressed_bytes",
            source=source,
            file=uri,
        )
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise _unreadable_parquet(exc, source, uri) from exc
    try:
        return as_text(frame).to_arrow()
    except SourceReadError as exc:
        exc.source, exc.file = source, uri
        raise
