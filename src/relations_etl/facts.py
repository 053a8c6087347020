"""The contract: fact columns per kind and their closed value sets (the error record: envelope)."""

from __future__ import annotations

import polars as pl

from relations_etl.config import Kind
from relations_etl.reference import ROLES

VISIT_TYPES = ("state", "official", "working", "private", "transit", "multilateral_event")
STATUSES = ("member", "associate", "observer", "partner", "elected_member", "chair", "vice_chair")
EVENTS = ("established", "suspended", "severed", "restored")
PRECISIONS = ("day", "month", "year")
# what a reported total counts: the annual_summary column of the same name (see reconciliation)
METRICS = (
    "relations_count",
    "head_visits",
    "foreign_minister_visits",
    "organization_head_visits",
    "outbound_head_visits",
    "chairmanships",
    "elected_seats",
    "outbound_foreign_minister_visits",
    "memberships",
)
__all__ = ["EVENTS", "METRICS", "PRECISIONS", "ROLES", "STATUSES", "VISIT_TYPES"]

LINEAGE = {
    "source": pl.String,
    "source_record": pl.String,
    "batch_id": pl.String,
    "loaded_at": pl.Datetime("us", "UTC"),
}

COLUMNS: dict[Kind, dict[str, pl.DataType]] = {
    Kind.VISITS: {
        "visit_id": pl.String(),
        "host_country": pl.String(),
        "visitor_country": pl.String(),
        "visitor_organization": pl.String(),
        "visitor_name": pl.String(),
        "visitor_title": pl.String(),
        "visitor_role": pl.String(),
        "visit_type": pl.String(),
        "start_date": pl.Date(),
        "start_precision": pl.String(),
        "end_date": pl.Date(),
        "end_precision": pl.String(),
        "city": pl.String(),
        "event": pl.String(),
        "notes": pl.String(),
    },
    Kind.MEMBERSHIPS: {
        "membership_id": pl.String(),
        "country": pl.String(),
        "organization": pl.String(),
        "body": pl.String(),
        "status": pl.String(),
        "start_date": pl.Date(),
        "start_precision": pl.String(),
        "end_date": pl.Date(),
        "end_precision": pl.String(),
        "notes": pl.String(),
    },
    Kind.RELATIONS: {
        "relation_id": pl.String(),
        "country": pl.String(),
        "counterpart": pl.String(),
        "event": pl.String(),
        "event_date": pl.Date(),
        "event_precision": pl.String(),
        "notes": pl.String(),
    },
    Kind.REPORTED_TOTALS: {
        "reported_id": pl.String(),
        "country": pl.String(),
        "year": pl.Int32(),
        "metric": pl.String(),
        "value": pl.Int64(),
        "publisher": pl.String(),
        "published_on": pl.Date(),
        "published_precision": pl.String(),
        "notes": pl.String(),
    },
}

ID_COLUMN = {
    Kind.VISITS: "visit_id",
    Kind.MEMBERSHIPS: "membership_id",
    Kind.RELATIONS: "relation_id",
    Kind.REPORTED_TOTALS: "reported_id",
}
TABLE = {
    Kind.VISITS: "visits",
    Kind.MEMBERSHIPS: "memberships",
    Kind.RELATIONS: "relations",
    Kind.REPORTED_TOTALS: "reported_totals",
}
# the column a table is partitioned on: a DATE, or an INTEGER that is the year itself
YEAR_OF = {
    Kind.VISITS: "start_date",
    Kind.MEMBERSHIPS: "start_date",
    Kind.RELATIONS: "event_date",
    Kind.REPORTED_TOTALS: "year",
}


def year_sql(kind: Kind, alias: str = "") -> str:
    """The SQL expression of the partition year of a `kind` row (`alias` qualifies the column)."""
    column = f"{alias}.{YEAR_OF[kind]}" if alias else YEAR_OF[kind]
    return column if COLUMNS[kind][YEAR_OF[kind]] == pl.Int32() else f"year({column})"


def fact_columns(kind: Kind) -> list[str]:
    """Every column of a fact table, lineage included, in contract order."""
    return [*COLUMNS[kind], *LINEAGE]


def content_columns(kind: Kind) -> list[str]:
    """The columns whose values make a fact what it is (no id, no lineage)."""
    return [c for c in COLUMNS[kind] if c != ID_COLUMN[kind]]


# the DuckDB type of each column type of COLUMNS: the row hash casts to it, so a fact hashes the
# same read from a staged file, a frame in memory or its table (DuckDB's hash depends on type)
_SQL_TYPES = {pl.String: "VARCHAR", pl.Date: "DATE", pl.Int32: "INTEGER", pl.Int64: "BIGINT"}


def row_hash_sql(kind: Kind) -> str:
    """The SQL of a `kind` fact's row hash (UBIGINT): DuckDB's `hash` of its content columns.

    It tells a changed fact from an identical one when a list is loaded again. DuckDB's hash of
    the typed values, not an md5 of their text: building the text (a cast and a coalesce per
    column, then the concatenation) was most of the cost of the insert. It is deterministic (no
    seed: the same in every process), tells NULL from '' and depends on the column order; DuckDB
    does not promise it across versions, so the warehouse records ROW_HASH_PROBE and
    db.apply_sql hashes every fact again when the probe changes (see there).
    """
    parts = ", ".join(
        f"CAST({c} AS {_SQL_TYPES[type(COLUMNS[kind][c])]})" for c in content_columns(kind)
    )
    return f"hash({parts})"


ROW_HASH_PROBE = (
    "hash('relations_etl', NULL::VARCHAR, ''::VARCHAR, DATE '2023-12-31', 186::INTEGER, "
    "186::BIGINT)"
)
"""The SQL of one hash of every type and of NULL a row hash takes: a DuckDB whose hash differs
here hashes facts differently, and the stored row hashes must be computed again."""
