"""Retirement: the facts of a snapshot source that its new list no longer holds leave their
fact table for `retired_facts`, inside the load's transaction."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import duckdb

from relations_etl.config import Source
from relations_etl.facts import ID_COLUMN, TABLE, year_sql

if TYPE_CHECKING:  # load calls retire inside its transaction
    from relations_etl.audit import Batch


def retire(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    source: Source | None,
    years: dict[str, set[int]],
    rows_read: int,
    *,
    staged: str = "_staged",
    rejected: str = "_rejected",
) -> int:
    """Retire the facts of `batch`'s source that the list it loaded no longer holds; returns
    how many, and adds their years to `years[table]` so that the Parquet of those years is
    written again.

    Call inside the load's open transaction, after the batch's facts are in `staged` (a table
    with the batch's fact ids) and its rejected rows in `rejected` (with `source_record`), and
    only for a batch that loads its list: never for a failed batch (it loads nothing) or a
    quarantine replay (it holds only quarantined rows). A source in append mode (or with no
    recorded entry) retires nothing, and neither does an empty version (`rows_read` 0): a list
    with no row at all is far more often an export or a download gone wrong than the end of
    every record. A fact whose record is in the list but rejected this time stays: the list
    still names it, and the row waits in quarantine for its fix (a period collapsed from
    several yearly rows is the exception: it is rebuilt from the rows that pass).
    """
    if source is None or source.mode != "snapshot" or rows_read == 0:
        return 0
    kind = batch.kind
    table, ident = TABLE[kind], ID_COLUMN[kind]
    # a period collapsed from yearly rows ("first..last") is rebuilt from the rows that pass:
    # kept beside the new periods because one of its years failed, it would count the others
    # twice, so only a fact of one record is kept for its rejected row
    # the ids first, whole rows only for those: carrying every column of every row of the source
    # through the anti joins took 31 s of a 10M-row reload that retired nothing
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _retiring AS
        WITH gone AS (
            SELECT t.{ident} FROM {table} AS t
            WHERE t.source = ?
              AND NOT EXISTS (SELECT 1 FROM {staged} AS s WHERE s.{ident} = t.{ident})
              AND NOT EXISTS (
                  SELECT 1 FROM {rejected} AS r WHERE r.source_record = t.source_record)
        )
        SELECT t.* FROM {table} AS t SEMI JOIN gone USING ({ident}) WHERE t.source = ?""",
        [batch.source, batch.source],
    )
    row = conn.execute("SELECT count(*) FROM _retiring").fetchone()
    retired = int(row[0]) if row else 0
    if retired:
        conn.execute(
            f"""INSERT INTO retired_facts BY NAME
            SELECT ? AS batch_id, source, ? AS kind, {ident} AS fact_id, source_record,
                   {year_sql(kind)} AS year, ? AS retired_at, to_json(t) AS fact
            FROM _retiring AS t""",
            [batch.batch_id, kind.value, dt.datetime.now(dt.UTC)],
        )
        years.setdefault(table, set()).update(
            int(y)
            for (y,) in conn.execute(f"SELECT DISTINCT {year_sql(kind)} FROM _retiring").fetchall()
            if y is not None
        )
        conn.execute(f"DELETE FROM {table} WHERE {ident} IN (SELECT {ident} FROM _retiring)")
    conn.execute("DROP TABLE _retiring")
    return retired


def record_retired(conn: duckdb.DuckDBPyConnection, batch_id: str, retired: int) -> None:
    """Write a batch's count of retired facts into its audit row (`load_batches.rows_retired`)."""
    conn.execute("UPDATE load_batches SET rows_retired = ? WHERE batch_id = ?", [retired, batch_id])
