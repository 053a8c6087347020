"""Load: write one batch into DuckDB in one transaction, deduplicated, with its audit row."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl

from relations_etl.audit import Batch, LoadResult, audit_batch
from relations_etl.bindings import bind
from relations_etl.config import Kind
from relations_etl.db import connect, disk_errors
from relations_etl.envelope import RAW_KEYS
from relations_etl.errors import (
    BatchRejectedError,
    WarehouseError,
)
from relations_etl.facts import ID_COLUMN, TABLE, fact_columns, row_hash_sql, year_sql
from relations_etl.reference import Reference
from relations_etl.retire import record_retired, retire
from relations_etl.settings import Settings


def refresh_reference(conn: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """Replace the countries and organizations tables with the reference data in use, unless
    they hold those rows already (most batches: ~10 ms of deletes and inserts saved each)."""
    tables, digest = ref.warehouse_tables()
    if _count(conn, "SELECT count(*) FROM reference_applied WHERE digest = ?", [digest]):
        return
    for table, frame in tables.items():
        conn.register("_reference", frame.to_arrow())
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _reference")
        conn.unregister("_reference")
    conn.execute("DELETE FROM reference_applied")
    conn.execute("INSERT INTO reference_applied VALUES (?)", [digest])


def _years(conn: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> set[int]:
    return {int(row[0]) for row in conn.execute(query, params).fetchall() if row[0] is not None}


def _reason(column: str, value: str | None, message: str, rows: int) -> str:
    shown = "(empty)" if value is None else repr(value if len(value) <= 40 else value[:40] + "...")
    return f"{column} {shown}, {rows} row{'s' if rows > 1 else ''}: {message}"


def top_reasons(conn: duckdb.DuckDBPyConnection, rejected: str, n: int = 3) -> list[str]:
    """The `n` most frequent reasons of the rejected rows of relation `rejected`: column,
    value, message, row count (ties: the reason met first)."""
    counted = conn.execute(
        f"""WITH reasons AS (
            SELECT e.column AS c, e.value AS v, e.message AS m, row_number() OVER () AS pos
            FROM (SELECT unnest(errors) AS e FROM {rejected})
        )
        SELECT c, v, m, count(*) AS n FROM reasons WHERE c IS NOT NULL
        GROUP BY ALL ORDER BY n DESC, min(pos) LIMIT {int(n)}"""
    ).fetchall()
    return [_reason(c, v, m, count) for c, v, m, count in counted]


def rejection_failure(
    batch: Batch,
    rows_read: int,
    count: int,
    max_share: float,
    reasons: Callable[[], list[str]],
) -> BatchRejectedError | None:
    """The error of a batch with every row, or more than `max_share` of them, rejected."""
    if rows_read == 0 or (count < rows_read and count / rows_read <= max_share):
        return None
    if count >= rows_read:
        what = f"all {count} rows were rejected" if count > 1 else "its one row was rejected"
    else:
        what = (
            f"{count} of {rows_read} rows were rejected ({count / rows_read:.0%}, more than "
            f"max_rejected_share {max_share:g})"
        )
    listed = " ".join(f"({n}) {r}" for n, r in enumerate(reasons(), start=1))
    return BatchRejectedError(
        f"{what}; reasons, most frequent first: {' '.join(listed.split())}",
        source=batch.source,
        batch_id=batch.batch_id,
        rows_read=rows_read,
        rows_rejected=count,
    )


def _relation(conn: duckdb.DuckDBPyConnection, name: str, rows: pl.DataFrame | Path) -> None:
    """Rows as relation `name` of the connection: a frame in memory, or a staged Parquet file
    read as it is scanned."""
    if isinstance(rows, pl.DataFrame):
        conn.register(name, rows.to_arrow())
        return
    path = str(rows).replace("'", "''")
    conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet('{path}')")


@contextlib.contextmanager
def _unordered(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Write the facts without keeping their read order: a fact table promises no order (the
    Parquet is sorted when published), and keeping it made DuckDB hold a large insert's row
    groups to write them in order (10M visits: half the time and a third more memory)."""
    conn.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        conn.execute("RESET preserve_insertion_order")


def _count(conn: duckdb.DuckDBPyConnection, query: str, params: list[object] | None = None) -> int:
    rows = conn.execute(query, params or []).fetchall()
    return int(rows[0][0]) if rows else 0


def _check_unique_ids(conn: duckdb.DuckDBPyConnection, batch: Batch, ident: str) -> None:
    """Refuse a batch that holds one fact id twice: the fact tables have no key to refuse it
    (see 010_tables.sql), and the split keeps one row per id, so this would be a bug."""
    repeated = _count(conn, f"SELECT count(*) - count(DISTINCT {ident}) FROM _facts_in")
    if repeated:
        raise WarehouseError(
            f"the batch holds {repeated} fact id{'s' if repeated > 1 else ''} more than once",
            source=batch.source,
            batch_id=batch.batch_id,
            hint="Nothing of this batch was committed; this is a bug of the split, report it.",
        )


def _load_changes(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    ident: str,
    kind: Kind,
    source: str,
    staged_columns: str,
    none_if_failed: str,
    params: list[object],
) -> int:
    """Write a batch into a table that already holds rows of its source: a new id is inserted,
    a changed one replaces its row (deleted first, so an id is never there twice), an identical
    one is kept. Leaves `_staged`, `_status` (id, status) and `_changed_years` (the years the
    replaced rows were published under); returns the facts written."""
    with _unordered(conn):
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _staged AS SELECT {staged_columns} "
            f"FROM _facts_in {none_if_failed}",
            params,
        )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _status AS
        SELECT s.{ident} AS id,
               CASE WHEN t.{ident} IS NULL THEN 'new'
                    WHEN t.row_hash = s.row_hash THEN 'same' ELSE 'changed' END AS status
        FROM _staged AS s
        LEFT JOIN (SELECT {ident}, row_hash FROM {table} WHERE source = ?) AS t
          ON t.{ident} = s.{ident}""",
        [source],
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _changed_years AS
        SELECT DISTINCT {year_sql(kind, "t")} AS year
        FROM {table} AS t SEMI JOIN _status AS s ON s.id = t.{ident} AND s.status = 'changed'"""
    )
    conn.execute(
        f"DELETE FROM {table} WHERE {ident} IN (SELECT id FROM _status WHERE status = 'changed')"
    )
    with _unordered(conn):
        conn.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM _staged WHERE {ident} IN "
            "(SELECT id FROM _status WHERE status <> 'same')"
        )
    return _count(conn, "SELECT count(*) FROM _status WHERE status <> 'same'")


@disk_errors
def load_batch(
    settings: Settings,
    batch: Batch,
    facts: pl.DataFrame | Path,
    rejected: pl.DataFrame | Path,
    *,
    rows_read: int,
    repeated: int,
    content_hash: str | None,
    ref: Reference,
    replayed: list[str] | None = None,
    fingerprint: str | None = None,
    dropped: dict[str, int] | None = None,
) -> LoadResult:
    """Insert new and changed facts, keep identical ones, quarantine rejects, audit: one commit.

    `dropped` counts the rows the mapping's drop rules removed, by reason: part of `rows_read`,
    audited in load_batches.rows_dropped and dropped_rows.

    `facts` and `rejected` are frames or the Parquet files `pipeline.prepare` staged (read by
    DuckDB as it scans them, so a large batch is never held in memory). `replayed` lists the
    raw keys ("file#row") of quarantined rows this batch re-ran: their old quarantine entries
    are closed, and those still failing are quarantined anew with today's reasons.

    A batch with every row rejected, or more than its source's `max_rejected_share`, fails:
    its rejects are quarantined and it is audited as failed with its counts in this same
    commit, none of its facts are written, and BatchRejectedError is raised after the commit.
    A replay is never failed so: its rows are all in quarantine already, most failing again is
    expected, and failing it would keep the rows that now pass out of the warehouse.
    The batch's URI is bound to its source name here too (see `bindings`), except by a replay,
    which re-reads rows of the bound list.
    """
    kind = batch.kind
    table, ident = TABLE[kind], ID_COLUMN[kind]
    written_columns = ", ".join(c for c in fact_columns(kind) if c not in ("batch_id", "loaded_at"))
    now = dt.datetime.now(dt.UTC)
    entry = batch.entry()
    dropped = dropped or {}
    rows_dropped = sum(dropped.values())
    conn = connect(settings)
    try:
        _relation(conn, "_facts_in", facts)
        _relation(conn, "_rejected_in", rejected)
        rows_rejected = _count(conn, "SELECT count(*) FROM _rejected_in")
        failure = (
            None
            if replayed is not None
            else rejection_failure(
                # dropped rows are no facts: the share is of the rows that could load
                batch,
                rows_read - rows_dropped,
                rows_rejected,
                entry.max_rejected_share if entry else 1.0,
                lambda: top_reasons(conn, "_rejected_in"),
            )
        )
        none_if_failed = "WHERE false" if failure is not None else ""
        conn.begin()
        if replayed is None:
            bind(
                conn,
                batch.source,
                batch.source_uri,
                batch.batch_id,
                entry.moved_from if entry else None,
            )
        refresh_reference(conn, ref)
        _check_unique_ids(conn, batch, ident)
        # a batch's ids begin with its source's name (split.identifier_sql) and a name holds no
        # ':', so only the source's own rows can share an id with the batch
        fresh = not _count(
            conn,
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE source = ? LIMIT 1)",
            [batch.source],
        )
        # the quarantine entries this batch closes: none to look for (across every raw key of
        # the batch) when the source has no open entry, as on its first load
        any_open = _count(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM rejected_rows "
            "WHERE resolved_batch_id IS NULL AND source = ? LIMIT 1)",
            [batch.source],
        )
        staged_columns = (
            f"{written_columns}, ?::VARCHAR AS batch_id, ?::TIMESTAMPTZ AS loaded_at, "
            f"{row_hash_sql(kind)} AS row_hash"
        )
        if fresh:  # every fact is new: inserted as it is read, nothing materialized
            with _unordered(conn):
                (facts_written,) = conn.execute(
                    f"INSERT INTO {table} BY NAME SELECT {staged_columns} "
                    f"FROM _facts_in {none_if_failed}",
                    [batch.batch_id, now],
                ).fetchall()[0]
            years = _years(
                conn, f"SELECT DISTINCT {year_sql(kind)} FROM _facts_in {none_if_failed}", []
            )
            # read once, for the counts, unless open quarantine entries are looked up in it too
            conn.execute(
                f"""CREATE OR REPLACE TEMP {"TABLE" if any_open else "VIEW"} _loaded_keys AS
                SELECT DISTINCT unnest({RAW_KEYS}) AS {RAW_KEYS}, true AS written
                FROM _facts_in {none_if_failed}"""
            )
        else:
            facts_written = _load_changes(
                conn,
                table,
                ident,
                kind,
                batch.source,
                staged_columns,
                none_if_failed,
                [batch.batch_id, now],
            )
            years = _years(
                conn,
                f"SELECT DISTINCT {year_sql(kind)} FROM _staged SEMI JOIN _status AS s "
                f"ON s.id = _staged.{ident} AND s.status <> 'same' UNION "
                "SELECT year FROM _changed_years",
                [],
            )
            # a raw row is loaded when one of its facts was written, deduplicated when none was
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE _loaded_keys AS
                SELECT k.{RAW_KEYS}, bool_or(s.status <> 'same') AS written
                FROM (SELECT {ident} AS id, unnest({RAW_KEYS}) AS {RAW_KEYS}
                      FROM _facts_in {none_if_failed}) AS k
                LEFT JOIN _status AS s USING (id) GROUP BY k.{RAW_KEYS}"""
            )
        ((rows_loaded, raw_rows),) = conn.execute(
            "SELECT count(*) FILTER (WHERE written), count(*) FROM _loaded_keys"
        ).fetchall()
        rows_deduplicated = raw_rows - rows_loaded + repeated
        conn.register(
            "_replayed_keys",
            pl.DataFrame({RAW_KEYS: replayed or []}, schema={RAW_KEYS: pl.String}).to_arrow(),
        )
        open_rows = "resolved_batch_id IS NULL AND source = ? AND source_file || '#' || source_row"
        rejected_years = set()
        if any_open:
            rejected_years = _years(
                conn,
                f"SELECT DISTINCT year(rejected_at) FROM rejected_rows WHERE {open_rows} IN "
                f"(SELECT {RAW_KEYS} FROM _loaded_keys "
                f"UNION SELECT {RAW_KEYS} FROM _replayed_keys)",
                [batch.source],
            )
            for keys_table, resolution in (
                ("_loaded_keys", "loaded"),
                ("_replayed_keys", "replayed"),
            ):
                conn.execute(
                    f"""UPDATE rejected_rows SET resolved_batch_id = ?, resolution = ?
                    WHERE {open_rows} IN (SELECT {RAW_KEYS} FROM {keys_table})""",
                    [batch.batch_id, resolution, batch.source],
                )
        conn.execute(
            """CREATE OR REPLACE TEMP TABLE _rejected AS
            SELECT *, ?::VARCHAR AS batch_id, ?::VARCHAR AS source, ?::VARCHAR AS kind,
                   ?::TIMESTAMPTZ AS rejected_at
            FROM _rejected_in""",
            [batch.batch_id, batch.source, kind.value, now],
        )
        # a row edited in the list but still failing replaces its older quarantine entry
        conn.execute(
            """UPDATE rejected_rows AS q SET resolved_batch_id = ?, resolution = 'superseded'
            FROM _rejected AS r
            WHERE q.resolved_batch_id IS NULL AND q.source = r.source
              AND q.source_file = r.source_file AND q.source_row = r.source_row
              AND CAST(q.raw AS VARCHAR) <> r.raw""",
            [batch.batch_id],
        )
        # a rerun of the same list must not pile up copies of rows already in quarantine
        conn.execute(
            """INSERT INTO rejected_rows BY NAME
            SELECT r.* FROM _rejected AS r
            WHERE NOT EXISTS (
                SELECT 1 FROM rejected_rows AS q
                WHERE q.resolved_batch_id IS NULL AND q.source = r.source
                  AND q.source_file = r.source_file AND q.source_row = r.source_row
                  AND CAST(q.raw AS VARCHAR) = r.raw)"""
        )
        if rows_rejected:
            rejected_years.add(now.year)
        result = LoadResult(
            batch.batch_id,
            batch.source,
            kind,
            rows_read,
            rows_loaded,
            rows_rejected,
            rows_deduplicated,
            facts_written,
            {table: years, "rejected_rows": rejected_years},
            rows_dropped=rows_dropped,
        )
        # a snapshot list retires the facts it dropped (none when the source had none before)
        if failure is None and replayed is None and not fresh:
            result.rows_retired = retire(conn, batch, entry, result.years, rows_read)
        # a failed batch loads none of its rows: those that passed are neither loaded nor
        # rejected, and stay in the list for the run that loads it
        if failure is None and rows_read != (
            rows_loaded + result.rows_rejected + rows_deduplicated + rows_dropped
        ):
            raise WarehouseError(
                f"conservation broken: read {rows_read} != loaded {rows_loaded} + rejected "
                f"{result.rows_rejected} + deduplicated {rows_deduplicated} + dropped "
                f"{rows_dropped}",
                source=batch.source,
                batch_id=batch.batch_id,
            )
        # the outbox of publish: committed with the data, emptied only once the Parquet is written,
        # so a crash between this commit and the publish is repaired by the next run
        queued = [(t, y) for t, ys in result.years.items() for y in sorted(ys)]
        if queued:  # one statement: executemany costs a statement per year
            conn.execute(
                "INSERT OR IGNORE INTO publish_queue "
                "SELECT unnest(?::VARCHAR[]), unnest(?::INTEGER[]), ?",
                [[t for t, _ in queued], [y for _, y in queued], batch.batch_id],
            )
        if dropped:
            conn.executemany(
                "INSERT OR REPLACE INTO dropped_rows VALUES (?, ?, ?, ?)",
                [[batch.batch_id, batch.source, r, n] for r, n in sorted(dropped.items())],
            )
        audit_batch(
            conn,
            batch,
            result,
            "succeeded" if failure is None else "failed",
            now,
            content_hash,
            fingerprint,
            None if failure is None else str(failure),
        )
        record_retired(conn, batch.batch_id, result.rows_retired)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    if failure is not None:
        raise failure
    return result
