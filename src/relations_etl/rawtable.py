"""The raw table: what a reader hands to the stages (every value as text, in the row envelope).

Its own module, apart from extract.py (the dispatcher that picks a reader) and envelope.py
(the names every stage shares): readers build raw tables and so must import this, and a reader
importing the dispatcher that imports the readers was a cycle; envelope.py stays free of
settings and limits, which building a raw table needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from relations_etl.envelope import ERRORS, FILE, RAW, ROW, ROW_ERRORS, RowErrors
from relations_etl.errors import SourceReadError
from relations_etl.limits import amount, too_large
from relations_etl.settings import Settings
from relations_etl.text import shown


@dataclass(frozen=True)
class RawTable:
    """A raw list: every value as text, plus `_row` and `_file` (each row's own file and row),
    `_raw` and `_row_errors` (what went wrong reading that row, usually nothing)."""

    frame: pl.DataFrame
    file: str
    content_hash: str
    columns: tuple[str, ...]


def _json_texts(values: list[Any], name: str) -> pl.Series:
    try:
        texts = [
            None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values
        ]
    except RecursionError:
        raise SourceReadError(
            f"column {shown(name)} nests its values too deeply to be written as JSON text",
            column=shown(name, quoted=False),
        ) from None
    return pl.Series(name, texts, dtype=pl.String)


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: nested values (lists, structs, maps) as JSON, bytes as UTF-8
    (wrong bytes replaced), and any type polars cannot cast to text through its Python value."""
    exprs = []
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if dtype.is_nested() or dtype == pl.Object:
            exprs.append(_json_texts(column.to_list(), name))
        elif dtype == pl.Binary:
            values = [None if v is None else bytes(v).decode("utf-8", "replace") for v in column]
            exprs.append(pl.Series(name, values, dtype=pl.String))
        else:
            try:
                exprs.append(column.cast(pl.String).alias(name))
            except pl.exceptions.PolarsError:
                exprs.append(_json_texts(column.to_list(), name))
    return frame.with_columns(exprs) if exprs else frame


def check_fields(table: RawTable, settings: Settings, source: str) -> RawTable:
    """Refuse a table holding a value longer than max_field_bytes, naming its row and column."""
    limit = settings.max_field_bytes
    columns = [c for c in table.columns if table.frame.schema.get(c) == pl.String]
    if not columns or table.frame.height == 0:
        return table
    longest = table.frame.select(pl.col(c).str.len_bytes().max() for c in columns).row(0)
    for name, size in zip(columns, longest, strict=True):
        if size is not None and size > limit:
            row = table.frame.filter(pl.col(name).str.len_bytes() > limit).select(ROW, FILE).row(0)
            raise too_large(
                f"a value of {amount(int(size))} in row {row[0]}",
                limit,
                "max_field_bytes",
                source=source,
                file=str(row[1]),
                row=int(row[0]),
                column=shown(name, quoted=False),
            )
    return table


def as_text_table(
    frame: pl.DataFrame,
    file: str,
    content_hash: str,
    row_errors: RowErrors | None = None,
    first_row: int = 1,
) -> RawTable:
    """Cast every column to text, keep the row as read (JSON) and number the rows from
    `first_row` (1 unless the frame is a later piece of its file)."""
    columns = tuple(frame.columns)
    text = as_text(frame)
    raw = pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")
    errors = (
        pl.Series(ROW_ERRORS, row_errors, dtype=ERRORS)
        if row_errors is not None
        else pl.lit([], dtype=ERRORS).alias(ROW_ERRORS)
    )
    text = text.with_columns(
        raw.alias(RAW),
        pl.int_range(first_row, first_row + pl.len(), dtype=pl.Int64).alias(ROW),
        pl.lit(file).alias(FILE),
        errors,
    )
    return RawTable(text, file, content_hash, columns)
