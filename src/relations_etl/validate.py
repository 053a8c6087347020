"""Validate: pandera schemas per kind, run lazily so every failure of every row is kept."""

from __future__ import annotations

import datetime as dt
import functools

import duckdb
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from relations_etl.config import Kind
from relations_etl.envelope import (
    CLASHES,
    ERRORS,
    ERRORS_COLUMN,
    FILE,
    LATER_ERRORS,
    PERSON,
    RECORD,
    ROW,
    append_error,
    staged_frame,
)
from relations_etl.facts import (
    COLUMNS,
    EVENTS,
    METRICS,
    PRECISIONS,
    ROLES,
    STATUSES,
    VISIT_TYPES,
    content_columns,
)
from relations_etl.reasons import Reason

# pandera registers its polars backends on a schema's first validation, importing them (and,
# where it is installed, hypothesis) then; done here, that import is paid with the others, not
# by the first list of a run
pa.DataFrameSchema.register_default_backends(pl.DataFrame)

_CODE = r"^[A-Z]{3}$"
_EARLIEST = dt.date(1000, 1, 1)
_POSITION = "_position"
# a field filled from another: an error on the source field covers the derived one
_DERIVED = {"visitor_title": "visitor_role"}


def _row_check(name: Reason, column: str, expr: pl.Expr, message: str) -> pa.Check:
    """A check over whole rows; `column` is the field a steward should look at."""

    def check(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(expr.fill_null(True).alias(name))

    # a plain str: polars reads a list of keys that starts with an enum member as an Enum
    return pa.Check(check, name=name.value, error=message, title=column)


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
        Reason.END_AFTER_START,
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
                Reason.VISITOR_KNOWN,
                "visitor_country",
                pl.col("visitor_country").is_not_null()
                | pl.col("visitor_organization").is_not_null(),
                "a visit needs visitor_country or visitor_organization",
            ),
            _row_check(
                Reason.VISITOR_NOT_HOST,
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
                Reason.PUBLISHED_AFTER_YEAR_BEGAN,
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
                Reason.COUNTERPART_NOT_SELF,
                "counterpart",
                pl.col("counterpart") != pl.col("country"),
                "counterpart is the country itself",
            ),
        ]
    assert list(columns) == content_columns(kind), "schema and contract disagree"
    return pa.DataFrameSchema(columns, checks=checks, name=kind.value, strict=True)


def duplicate_records_sql(conn: duckdb.DuckDBPyConnection, people: str, kind: Kind) -> None:
    """Stage as `envelope.CLASHES` the raw rows of one list that share a record id but differ in
    content: all of them are rejected.

    Which of them is right is for a steward to say; identical repeats are left to the split,
    which counts them as deduplicated. Runs over the staged person rows of a whole source
    (relation `people`), so rows in different chunks are compared too.
    """
    people_hash = f"hash({PERSON}, {', '.join(content_columns(kind))})"
    # a raw row's signature covers all of its people, so "A and B" vs "A and C" differ
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE {CLASHES} AS
        WITH several_rows AS (  -- a count first: most records have one person, one row
            SELECT {RECORD} FROM {people} GROUP BY {RECORD} HAVING count(*) > 1
        ),
        shared AS (
            SELECT {RECORD} FROM {people} SEMI JOIN several_rows USING ({RECORD})
            GROUP BY {RECORD} HAVING count(DISTINCT ({FILE}, {ROW})) > 1
        ),
        raw_rows AS (
            SELECT {RECORD}, {FILE}, {ROW}, hash(list({people_hash} ORDER BY {people_hash})) AS sig
            FROM {people} SEMI JOIN shared USING ({RECORD}) GROUP BY ALL
        ),
        clashing AS (
            SELECT {RECORD} FROM raw_rows GROUP BY {RECORD} HAVING count(DISTINCT sig) > 1
        ),
        several AS (SELECT count(DISTINCT {FILE}) > 1 AS several FROM {people}),
        rows AS (
            SELECT r.{RECORD}, r.{FILE}, r.{ROW},
                CASE WHEN several THEN regexp_extract(r.{FILE}, '([^/]*)$', 1) || '#' || r.{ROW}
                     ELSE CAST(r.{ROW} AS VARCHAR) END AS place
            FROM raw_rows AS r SEMI JOIN clashing USING ({RECORD}), several
        ),
        listed AS (
            SELECT {RECORD}, array_to_string(list_sort(list_distinct(list(place))), ', ') AS rows
            FROM rows GROUP BY {RECORD}
        )
        SELECT r.{FILE} AS _file, r.{ROW} AS _row, r.{RECORD} AS _record,
            'record id ' || r.{RECORD} || ' is used by rows ' || l.rows || ' with different content'
                AS _clash
        FROM rows AS r JOIN listed AS l USING ({RECORD})"""
    )


def duplicate_records(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """`duplicate_records_sql` on one polars frame: the error joins each clashing row's errors."""
    conn = duckdb.connect()
    try:
        conn.register("_people", staged_frame(frame, kind).to_arrow())
        duplicate_records_sql(conn, "_people", kind)
        clashes = conn.sql(f"SELECT _file, _row, _clash FROM {CLASHES}").pl()
    finally:
        conn.close()
    if clashes.is_empty():
        return frame
    flagged = frame.join(
        clashes.rename({"_file": FILE, "_row": ROW}),
        on=[FILE, ROW],
        how="left",
        maintain_order="left",
    )
    return append_error(
        flagged,
        pl.col("_clash").is_not_null(),
        pl.lit("source_record"),
        pl.lit(Reason.DUPLICATE_RECORD),
        pl.col(RECORD),
        pl.col("_clash"),
    ).drop("_clash")


def validate(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """Duplicate records, then the schema run lazily; every failure joins the row's `_errors`."""
    checked = validate_rows(duplicate_records(frame, kind), kind)
    return checked.with_columns(
        pl.concat_list(ERRORS_COLUMN, LATER_ERRORS).alias(ERRORS_COLUMN)
    ).drop(LATER_ERRORS)


def validate_rows(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """Run the schema lazily on rows of one chunk; its failures go to `_later_errors` (the
    duplicate-record check over the whole source comes between `_errors` and them)."""
    schema = schema_for(kind)
    data = frame.select([pl.col(c).cast(COLUMNS[kind][c]) for c in content_columns(kind)])
    try:
        schema.validate(data, lazy=True)
        return frame.with_columns(pl.lit([], dtype=ERRORS).alias(LATER_ERRORS))
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
        .when(pl.col("check") == Reason.NOT_NULLABLE)
        .then(pl.format("{} is empty; it is required", pl.col("column")))
        .when(pl.col("check").str.starts_with(f"{Reason.ISIN}("))
        .then(
            pl.format(
                "{} '{}' is not one of {}",
                pl.col("column"),
                pl.col("failure_case"),
                pl.col("check").str.strip_prefix(f"{Reason.ISIN}(").str.strip_suffix(")"),
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
    frame = frame.join(found, on=_POSITION, how="left", maintain_order="left")
    return frame.with_columns(
        pl.col("_new").fill_null(pl.lit([], dtype=ERRORS)).alias(LATER_ERRORS)
    ).drop(_POSITION, "_new")
