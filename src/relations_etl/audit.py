"""The audit: who a batch is (Batch), what it did (LoadResult), and its row in load_batches.

Batches begun, skipped and failed, and the input fingerprint of the last load of a source;
load.py writes a succeeded or failed batch's row in its own transaction with `audit_batch`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import duckdb
import polars as pl

from relations_etl.config import Kind, Source
from relations_etl.db import connect, disk_errors
from relations_etl.errors import (
    BatchRejectedError,
    SourceBoundError,
)
from relations_etl.facts import TABLE
from relations_etl.settings import Settings


@dataclass(frozen=True)
class Batch:
    """Who a batch is: ids and timing that end up in load_batches."""

    batch_id: str
    source: str
    kind: Kind
    source_uri: str
    started_at: dt.datetime
    flow_run_id: str | None = None
    source_config: str | None = None
    """The Source entry as JSON; the load reads max_rejected_share and moved_from from it."""

    def entry(self) -> Source | None:
        """The Source this batch runs, if recorded."""
        return Source.model_validate_json(self.source_config) if self.source_config else None


@dataclass
class LoadResult:
    """What a batch did; rows are raw rows, facts are rows written to a fact table."""

    batch_id: str
    source: str
    kind: Kind
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_deduplicated: int
    facts_written: int
    years: dict[str, set[int]] = field(default_factory=dict)
    unchanged_since: str | None = None
    """For a skipped batch: the batch that last loaded the same content."""
    publish_pending: str | None = None
    """Why the batch's Parquet years are not written yet (committed and queued: the next run
    writes them); None once published."""
    rows_dropped: int = 0
    """Rows the mapping's drop rules removed (counted in `rows_read`, by reason in
    dropped_rows)."""
    rows_retired: int = 0
    """Facts of a snapshot source that this batch's list no longer held (see `retire`)."""


_AUDIT_COLUMNS = (
    "source, kind, source_uri, content_hash, started_at, finished_at, status, rows_read, "
    "rows_loaded, rows_rejected, rows_deduplicated, facts_written, flow_run_id, error, "
    "source_config, fingerprint, rows_dropped"
)


def audit_batch(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    result: LoadResult | None,
    status: str,
    now: dt.datetime,
    content_hash: str | None = None,
    fingerprint: str | None = None,
    error: str | None = None,
) -> None:
    """Write (or overwrite) the load_batches row of a batch: running, or finished as `status`."""
    values = [
        batch.source,
        batch.kind.value,
        batch.source_uri,
        content_hash,
        batch.started_at,
        now if status != "running" else None,
        status,
        result.rows_read if result else 0,
        result.rows_loaded if result else 0,
        result.rows_rejected if result else 0,
        result.rows_deduplicated if result else 0,
        result.facts_written if result else 0,
        batch.flow_run_id,
        error,
        batch.source_config,
        fingerprint,
        result.rows_dropped if result else 0,
    ]
    # an UPDATE of the batch's row, or an INSERT of a new one: INSERT OR REPLACE on the keyed
    # table cost three to four times either (4 ms a batch's audit, twice a batch)
    ((updated,),) = conn.execute(
        f"UPDATE load_batches SET ({_AUDIT_COLUMNS}) = "
        f"({', '.join('?' * len(values))}) WHERE batch_id = ?",
        [*values, batch.batch_id],
    ).fetchall()
    if not updated:
        conn.execute(
            f"INSERT INTO load_batches (batch_id, {_AUDIT_COLUMNS}) "
            f"VALUES ({', '.join('?' * (len(values) + 1))})",
            [batch.batch_id, *values],
        )


@disk_errors
def _write_audit(settings: Settings, batch: Batch, status: str, **fields: str | None) -> None:
    conn = connect(settings)
    try:
        audit_batch(conn, batch, None, status, dt.datetime.now(dt.UTC), **fields)
    finally:
        conn.close()


@disk_errors
def begin_batch(settings: Settings, batch: Batch) -> None:
    """Audit a batch as running; batches a killed run left running are marked abandoned.

    Call with the run lock held: then no other run is alive to own a running batch.
    """
    conn = connect(settings, verify_file=True)
    try:
        conn.execute(
            "UPDATE load_batches SET status = 'abandoned', finished_at = now(), error = "
            "'the run stopped before finishing (killed or crashed); nothing of it was committed' "
            "WHERE status = 'running'"
        )
        audit_batch(conn, batch, None, "running", dt.datetime.now(dt.UTC))
    finally:
        conn.close()


@disk_errors
def last_fingerprint(settings: Settings, source: str) -> tuple[str, str | None] | None:
    """The last successful or skipped batch of a source and the input fingerprint it had."""
    conn = connect(settings)
    try:
        row = conn.execute(
            "SELECT batch_id, fingerprint FROM load_batches WHERE source = ? "
            "AND status IN ('succeeded', 'skipped') ORDER BY finished_at DESC LIMIT 1",
            [source],
        ).fetchone()
    finally:
        conn.close()
    return (str(row[0]), row[1]) if row else None


@disk_errors
def unconfigured_sources(settings: Settings, configured: list[str]) -> pl.DataFrame:
    """Sources that loaded rows before but are not configured now; their rows stay."""
    conn = connect(settings)
    try:
        conn.register(
            "_configured", pl.DataFrame({"source": configured}, schema={"source": pl.String})
        )
        counts = " UNION ALL ".join(
            f"SELECT source, count(*) AS n FROM {table} GROUP BY source" for table in TABLE.values()
        )
        frame: pl.DataFrame = conn.sql(
            f"""WITH kept AS ({counts}),
            gone AS (
                SELECT source, max(finished_at) AS last_loaded FROM load_batches
                WHERE status = 'succeeded' AND source NOT IN (SELECT source FROM _configured)
                GROUP BY source
            )
            SELECT g.source, g.last_loaded, coalesce(sum(k.n), 0)::BIGINT AS rows_kept
            FROM gone AS g LEFT JOIN kept AS k USING (source)
            GROUP BY ALL ORDER BY g.source"""
        ).pl()
        return frame
    finally:
        conn.close()


def record_skip(
    settings: Settings, batch: Batch, previous: str, content_hash: str, fingerprint: str
) -> LoadResult:
    """Audit a batch whose inputs are those of `previous`: no data work, nothing read."""
    _write_audit(settings, batch, "skipped", content_hash=content_hash, fingerprint=fingerprint)
    return LoadResult(batch.batch_id, batch.source, batch.kind, 0, 0, 0, 0, 0, {}, previous)


def record_failure(settings: Settings, batch: Batch, error: BaseException) -> None:
    """Audit a batch that failed before or during its load; nothing of it was committed."""
    if isinstance(error, BatchRejectedError) and error.batch_id == batch.batch_id:
        return  # audited with its counts by the load that quarantined its rows
    if isinstance(error, SourceBoundError):
        # a refused list ran nothing: its entry must not become the one a replay uses
        batch = replace(batch, source_config=None)
    _write_audit(settings, batch, "failed", error=str(error))
