"""Validate: pandera schemas per kind, run lazily so every failure of every row is kept."""

from __future__ import annotations

import datetime as dt
import functools

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from relations_etl.config import Kind
from relations_etl.extract import FILE, ROW
from relations_etl.facts import (
    COLUMNS,
    ERRORS,
    EVENTS,
    METRICS,
    PRECISIONS,
    ROLES,
    STATUSES,
    VISIT_TYPES,
    content_columns,
)
from relations_etl.mapping import ERRORS_COLUMN, PERSON, RECORD, append_error

_CODE = r"^[A-Z]{3}$"
_EARLIEST = dt.date(1000, 1, 1)
_POSITION = "_position"
# a field filled from another: an error on the source field covers the derived one
_DERIVED = {"visitor_title": "visitor_role"}


def _row_check(name: str, column: str, expr: pl.Expr, message: str) -> pa.Check:
    """A check over whole rows; `column` is the field a steward should look at."""

    def check(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(expr.fill_null(True).alias(name))

    return pa.Check(check, name=name, error=message, title=column)


def _code(nullable: bool = False) -> pa.Column:
    return pa.Column(pl.String, pa.Check.str_matches(_CODE), nullable=nullable)


def _date_range() -> list[pa.Check]:
    return [pa.Check.ge(_EARLIEST), pa.Check.le(dt.date(2999, 12, 31))]


@functools.cache
def schema_for(kind: Kind) -> pa.DataFrameSchema:
    """The pandera schema every row of `kind` must pass before it is loaded."""
    precision = pa.Column(pl.String, pa.Check.isin(PRECISIONS), nullable=True)
    text = pa.Column(pl.String, nullable=True)
    end_after_start = _row_check(
        "end_after_start",
        "end_date",
        pl.col("end_date").is_null() | (pl.col("end_date") >= pl.col("start_date")),
        "end_date is before start_date",
    )
    if kind is Kind.VISITS:
        columns: dict[str, pa.Column] = {
            "host_country": _code(),
            "visitor_country": _code(nullable=True),
            "visitor_organization": pa.Column(pl.String, nullable=True),
            "visitor_name": text,
            "visitor_title": text,
            "visitor_role": pa.Column(pl.String, pa.Check.isin(ROLES)),
            "visit_type": pa.Column(pl.String, pa.Check.isin(VISIT_TYPES), nullable=True),
            "start_date": pa.Column(pl.Date, _date_range()),
            "start_precision": precision,
            "end_date": pa.Column(pl.Date, _date_range(), nullable=True),
            "end_precision": precision,
            "city": text,
            "event": text,
            "notes": text,
        }
        checks = [
            end_after_start,
            _row_check(
                "visitor_known",
                "visitor_country",
                pl.col("visitor_country").is_not_null()
                | pl.col("visitor_organization").is_not_null(),
                "a visit needs visitor_country or visitor_organization",
            ),
            _row_check(
                "visitor_not_host",
                "visitor_country",
                pl.col("visitor_country").is_null()
                | (pl.col("visitor_country") != pl.col("host_country")),
                "visitor_country is the host country",
            ),
        ]
    elif kind is Kind.MEMBERSHIPS:
        columns = {
            "country": _code(),
            "organization": pa.Column(pl.String),
            "body": pa.Column(pl.String, nullable=True),
            "status": pa.Column(pl.String, pa.Check.isin(STATUSES)),
            "start_date": pa.Column(pl.Date, _date_range()),
            "start_precision": precision,
            "end_date": pa.Column(pl.Date, _date_range(), nullable=True),
            "end_precision": precision,
            "notes": text,
        }
        checks = [end_after_start]
    elif kind is Kind.REPORTED_TOTALS:
        columns = {
            "country": _code(),
            "year": pa.Column(pl.Int32, pa.Check.in_range(_EARLIEST.year, 2999)),
            "metric": pa.Column(pl.String, pa.Check.isin(METRICS)),
            "value": pa.Column(pl.Int64, pa.Check.ge(0)),
            "publisher": pa.Column(pl.String),
            "published_on": pa.Column(pl.Date, _date_range(), nullable=True),
            "published_precision": precision,
            "notes": text,
        }
        checks = [
            _row_check(
                "published_after_year_began",
                "published_on",
                pl.col("published_on").is_null()
                | (pl.col("published_on").dt.year() >= pl.col("year")),
                "published_on is before the year the total counts",
            ),
        ]
    else:
        columns = {
            "country": _code(),
            "counterpart": _code(),
            "event": pa.Column(pl.String, pa.Check.isin(EVENTS)),
            "event_date": pa.Column(pl.Date, _date_range()),
            "event_precision": precision,
            "notes": text,
        }
        checks = [
            _row_check(
                "counterpart_not_self",
                "counterpart",
                pl.col("counterpart") != pl.col("country"),
                "counterpart is the country itself",
            ),
        ]
    assert list(columns) == content_columns(kind), "schema and contract disagree"
    return pa.DataFrameSchema(columns, checks=checks, name=kind.value, strict=True)


def duplicate_records(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """Rows of one list that share a record id but differ in content: all of them are rejected.

    Which of them is right is for a steward to say; identical repeats are left to the split,
    which counts them as deduplicated.
    """
    # only records that more than one raw row uses can clash: find those first, cheaply, so the
    # window expressions below run on a handful of rows, not on every row of a large list
    raw_rows = frame.group_by(RECORD).agg(pl.struct(FILE, ROW).n_unique().alias("_raw_rows"))
    shared = raw_rows.filter(pl.col("_raw_rows") > 1).select(RECORD)
    if shared.is_empty():
        return frame
    suspects = frame.join(shared, on=RECORD, how="semi")
    # a raw row's signature covers all of its people, so "A and B" vs "A and C" differ
    people = pl.struct(PERSON, *content_columns(kind)).hash()
    signature = people.sort().over([FILE, ROW], mapping_strategy="join").hash()
    several = frame.get_column(FILE).n_unique() > 1
    where = (
        pl.format("{}#{}", pl.col(FILE).str.extract(r"([^/]*)$"), pl.col(ROW))
        if several
        else pl.col(ROW).cast(pl.String)
    )
    rows = where.unique().sort().str.join(", ").over(RECORD)
    clashes = (
        suspects.filter(signature.n_unique().over(RECORD) > 1)
        .select(
            FILE,
            ROW,
            pl.format(
                "record id {} is used by rows {} with different content", pl.col(RECORD), rows
            ).alias("_clash"),
        )
        .unique([FILE, ROW])
    )
    flagged = frame.join(clashes, on=[FILE, ROW], how="left", maintain_order="left")
    return append_error(
        flagged,
        pl.col("_clash").is_not_null(),
        pl.lit("source_record"),
        pl.lit("duplicate_record"),
        pl.col(RECORD),
        pl.col("_clash"),
    ).drop("_clash")


def validate(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """Run the schema lazily; every failure joins the row's `_errors`."""
    frame = duplicate_records(frame, kind)
    schema = schema_for(kind)
    data = frame.select([pl.col(c).cast(COLUMNS[kind][c]) for c in content_columns(kind)])
    try:
        schema.validate(data, lazy=True)
        return frame
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    by_check = {**{c.name: c for c in schema.checks}, **{c.error: c for c in schema.checks}}
    row_level = pl.col("schema_context") == "DataFrameSchema"
    failures = cases.filter(pl.col("index").is_not_null()).with_columns(
        pl.when(row_level)
        .then(
            pl.col("check").replace_strict({k: c.title for k, c in by_check.items()}, default=None)
        )
        .otherwise(pl.col("column"))
        .alias("column"),
        pl.when(row_level)
        .then(
            pl.col("check").replace_strict({k: c.error for k, c in by_check.items()}, default=None)
        )
        .when(pl.col("check") == "not_nullable")
        .then(pl.format("{} is empty; it is required", pl.col("column")))
        .when(pl.col("check").str.starts_with("isin("))
        .then(
            pl.format(
                "{} '{}' is not one of {}",
                pl.col("column"),
                pl.col("failure_case"),
                pl.col("check").str.strip_prefix("isin(").str.strip_suffix(")"),
            )
        )
        .otherwise(
            pl.format("{} '{}' fails {}", pl.col("column"), pl.col("failure_case"), pl.col("check"))
        )
        .alias("message"),
        pl.when(row_level)
        .then(
            pl.col("check").replace_strict({k: c.name for k, c in by_check.items()}, default=None)
        )
        .otherwise(pl.col("check").str.replace(r"\(.*", ""))
        .alias("check"),
        pl.when(row_level).then(None).otherwise(pl.col("failure_case")).alias("value"),
    )
    if failures.height != cases.height:
        unplaced = cases.filter(pl.col("index").is_null())
        raise AssertionError(f"schema failures without a row: {unplaced}")
    frame = frame.with_row_index(_POSITION).with_columns(pl.col(_POSITION).cast(pl.Int64))
    # a field normalize already rejected (e.g. an unknown country left empty) is not re-reported
    known = (
        frame.select(
            _POSITION,
            pl.col(ERRORS_COLUMN).list.eval(pl.element().struct.field("column")).alias("column"),
        )
        .explode("column")
        .drop_nulls()
    )
    known = pl.concat(
        [
            known,
            known.filter(pl.col("column").is_in(list(_DERIVED))).with_columns(
                pl.col("column").replace_strict(_DERIVED)
            ),
        ]
    )
    found = (
        failures.select(
            pl.col("index").cast(pl.Int64).alias(_POSITION), "column", "check", "value", "message"
        )
        .join(known, on=[_POSITION, "column"], how="anti")
        .group_by(_POSITION)
        .agg(pl.struct("column", "check", "value", "message").alias("_new"))
    )
    frame = frame.join(found, on=_POSITION, how="left", maintain_order="left").with_columns(
        pl.col("_new").fill_null(pl.lit([], dtype=ERRORS))
    )
    return frame.with_columns(pl.concat_list(ERRORS_COLUMN, "_new").alias(ERRORS_COLUMN)).drop(
        _POSITION, "_new"
    )
