"""The row envelope every stage shares: the bookkeeping columns around a row and its error record.

A raw row carries `_row`, `_file`, `_raw` and `_row_errors` from the readers; mapping adds
`_record` and `_person` and turns `_row_errors` into `_errors`; staging adds `_seq` and
`_later_errors`; the split writes `_raw_keys`. Every row error, in polars, in SQL or as a
Python dict, is the one record (column, check, value, message). Stages import these names
from here and the per-kind facts from facts.py, never from each other; this module imports
no stage (only facts.py, for the typed content of a staged row).
"""

from __future__ import annotations

import polars as pl

from relations_etl.config import Kind
from relations_etl.facts import COLUMNS, content_columns
from relations_etl.reasons import Reason

ROW = "_row"
FILE = "_file"
RAW = "_raw"
ROW_ERRORS = "_row_errors"
RECORD = "_record"
PERSON = "_person"
ERRORS_COLUMN = "_errors"
RAW_KEYS = "_raw_keys"
SEQ = "_seq"
"""A person row's position in the source as read: what "first" means across chunks."""
LATER_ERRORS = "_later_errors"
"""Errors found after the cross-row checks would have run (pandera's), kept apart while
staging so that every row's reasons keep the order a whole-table run gives them."""
CLASHES = "_clashes"
"""The staged relation of raw rows rejected as duplicate records: _file, _row, _record, _clash."""
# checks of rows that could not be read as written (readers/delimited.py, records.py, xml.py)
READ_CHECKS = (Reason.FIELD_COUNT, Reason.JSON_LINE, Reason.JSON_RECORD, Reason.XML_RECORD)

ERROR_FIELDS = ("column", "check", "value", "message")
ERROR = pl.Struct({name: pl.String for name in ERROR_FIELDS})
ERRORS = pl.List(ERROR)
RowError = dict[str, str | None]
"""One row error as a Python value (a reader's or a lookup's answer)."""
RowErrors = list[list[RowError]]
"""The read errors of each row of a table, in row order."""


def row_error(column: str, check: str, value: str | None, message: str) -> RowError:
    """One row error as a Python dict, the fields of ERROR."""
    return {"column": column, "check": check, "value": value, "message": message}


def error_struct(column: pl.Expr, check: pl.Expr, value: pl.Expr, message: pl.Expr) -> pl.Expr:
    """One row error (column, check, value, message) as an ERROR struct."""
    return pl.struct(
        column.alias("column"),
        check.alias("check"),
        value.alias("value"),
        message.alias("message"),
    )


def error_sql(column: str, check: str, value: str, message: str) -> str:
    """One row error as a DuckDB struct literal of four SQL expressions."""
    return f"{{'column': {column}, 'check': {check}, 'value': {value}, 'message': {message}}}"


def append_error(
    frame: pl.DataFrame,
    when: pl.Expr,
    column: pl.Expr,
    check: pl.Expr,
    value: pl.Expr,
    message: pl.Expr,
) -> pl.DataFrame:
    """Add one error to the `_errors` list of the rows where `when` holds (row-wise exprs).

    Only those rows are rebuilt: rewriting the list column of every row with when/then cost
    half a second per call on 250,000 rows, the join of a few new lists a millisecond.
    """
    hit = frame.select(when.fill_null(False)).to_series()
    if not hit.any():
        return frame
    rows = hit.arg_true()
    added = frame[rows].select(
        pl.concat_list(
            ERRORS_COLUMN, pl.concat_list(error_struct(column, check, value, message))
        ).alias("_added")
    )
    new = pl.DataFrame({"_position": rows}).with_columns(added.to_series())
    joined = frame.with_row_index("_position").join(
        new, on="_position", how="left", maintain_order="left"
    )
    return joined.with_columns(pl.coalesce("_added", ERRORS_COLUMN).alias(ERRORS_COLUMN)).drop(
        "_position", "_added"
    )


def staged_frame(frame: pl.DataFrame, kind: Kind, offset: int = 0) -> pl.DataFrame:
    """A validated polars frame in the shape `split_sql` reads: typed content, `_seq` counted
    from `offset`, `_later_errors` (empty when the frame has none apart)."""
    later = (
        pl.col(LATER_ERRORS)
        if LATER_ERRORS in frame.columns
        else pl.lit([], dtype=ERRORS).alias(LATER_ERRORS)
    )
    return frame.select(
        pl.int_range(offset, offset + pl.len(), dtype=pl.Int64).alias(SEQ),
        pl.col(FILE),
        pl.col(ROW),
        pl.col(RECORD),
        pl.col(PERSON),
        pl.col(RAW),
        *[pl.col(c).cast(COLUMNS[kind][c]) for c in content_columns(kind)],
        pl.col(ERRORS_COLUMN),
        later,
    )
