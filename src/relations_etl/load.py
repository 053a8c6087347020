"""Load: write one batch into DuckDB in one transaction, deduplicated, with its audit row."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb
import polars as pl

from relations_etl.bindings import bind
from relations_etl.config import Kind, Source
from relations_etl.envelope import RAW_KEYS
from relations_etl.errors import (
    BatchRejectedError,
    ConfigError,
    SourceBoundError,
    WarehouseError,
    WarehouseLockedError,
)
from relations_etl.facts import ID_COLUMN, TABLE, content_columns, fact_columns, year_sql
from relations_etl.lock import holder
from relations_etl.reference import Reference
from relations_etl.retire import record_retired, retire
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


def _one_line(exc: BaseException) -> str:
    """DuckDB's message as one paragraph (some span several lines)."""
    return " ".join(str(exc).split())


_P = ParamSpec("_P")
_R = TypeVar("_R")


def disk_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """A warehouse the disk or the file system refuses (full, read-only, an I/O error) is a
    WarehouseError (74), not a bug: DuckDB's I/O and fatal errors and OSError become one."""

    @functools.wraps(function)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except WarehouseError:
            raise
        except (duckdb.IOException, duckdb.FatalException, OSError) as exc:
            raise WarehouseError(
                f"the warehouse could not be read or written: {_one_line(exc)}",
                hint="Look at the disk (free space, permissions, a read-only mount) and the "
                "warehouse file; nothing of this batch was committed.",
            ) from exc

    return guarded


_verified: dict[Path, tuple[int, ...]] = {}
VERIFIED_SUFFIX = ".verified"
"""Next to the warehouse file: the stamp of the file as this library last verified or closed
it, so the next process does not read every block again of a file nobody else touched."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def verify(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Check the warehouse file before anyone relies on it: every block of every table is read
    once, which makes DuckDB verify each block's checksum, so garbage written into the middle of
    the file or a file cut short (its blocks past the end cannot be read) is found here rather
    than by a later query or, worse, a load that writes into it. (The file's length alone says
    nothing: DuckDB leaves allocated blocks past its end until it writes them.)"""
    try:
        tables = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT temporary"
        ).fetchall()
        for schema, table in tables:
            conn.execute(
                f"SELECT bit_xor(hash(COLUMNS(*))) FROM {_quote(schema)}.{_quote(table)}"
            ).fetchall()
    except duckdb.Error as exc:
        raise WarehouseError(
            f"{path} is damaged: {_one_line(exc)}",
            hint="Restore the file from a backup (or remove it and reload every source); "
            "nothing was written into it.",
        ) from exc


def _stamp(path: Path) -> tuple[int, ...]:
    # the change time (ctime) moves with every write and utime, and nothing can set it back
    info = path.stat()
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + VERIFIED_SUFFIX)


def _was_verified(path: Path) -> bool:
    """Whether the file is as it was when last verified (or closed after a verified open)."""
    stamp = _stamp(path)
    if _verified.get(path.resolve()) == stamp:
        return True
    try:
        return tuple(json.loads(_sidecar(path).read_text(encoding="utf-8"))) == stamp
    except (OSError, ValueError, TypeError):
        return False


def _remember_verified(path: Path, *, writer: bool) -> None:
    """Remember the file as verified: in this process, and for a writer (a reader writes
    nothing, ever) in the file next to it for the next process."""
    stamp = _stamp(path)
    _verified[path.resolve()] = stamp
    if not writer:
        return
    temporary = _sidecar(path).with_suffix(f".{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(stamp), encoding="utf-8")
        os.replace(temporary, _sidecar(path))
    except OSError:  # a read-only folder: the next process verifies again, nothing worse
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


# a file DuckDB does not recognize (an SQLite header, say) would make it fetch an extension
_NO_DOWNLOADS: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def _open(
    path: Path,
    read_only: bool,
    settings: Settings,
    config: dict[str, str | bool | int | float | list[str]] | None = None,
) -> duckdb.DuckDBPyConnection:
    # DuckDB lets one process write or several read: wait for the other side's short
    # transaction instead of failing, so a reader sees the state before or after a load
    deadline = time.monotonic() + settings.lock_timeout
    while True:
        try:
            return duckdb.connect(
                str(path), read_only=read_only, config={**_NO_DOWNLOADS, **(config or {})}
            )
        except duckdb.IOException as exc:
            if "conflicting lock" not in str(exc).lower():
                raise WarehouseError(f"cannot open {path}: {_one_line(exc)}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"cannot open {path}: another process has it open ({_one_line(exc)}); the "
                    f"last run to take the warehouse was {holder(settings)}"
                ) from exc
            time.sleep(0.1)
        except duckdb.Error as exc:  # "not a valid DuckDB database", a checksum at open
            raise WarehouseError(f"cannot open {path}: {_one_line(exc)}") from exc


@disk_errors
def connect(
    settings: Settings,
    *,
    read_only: bool = False,
    verify_file: bool | None = None,
    config: dict[str, str | bool | int | float | list[str]] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; a writer creates it and its tables and views first.

    The file is verified (`verify`) before it is used: always for a reader (once per process
    while the file stays the same), and for a writer when `verify_file` (the start of every run
    does), on a read-only connection first so that nothing is written into a damaged file.
    `config` holds DuckDB start-up options (the analyst connection's restrictions).
    """
    path = settings.db_path
    shared = _held.get(path.resolve()) if not read_only and config is None else None
    if shared is not None:
        return shared.cursor()
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}", hint="Run `relations-etl run` or set RELATIONS_ETL_HOME."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    check = read_only if verify_file is None else verify_file
    if check and path.exists() and not _was_verified(path):
        checking = _open(path, True, settings) if not read_only else None
        conn = checking or _open(path, read_only, settings, config)
        try:
            verify(conn, path)
        except BaseException:
            conn.close()
            raise
        _remember_verified(path, writer=not read_only)
        if checking is None:
            return conn
        checking.close()
    conn = _open(path, read_only, settings, config)
    if not read_only:
        try:
            if settings.load_memory:  # DuckDB spills past it, except the primary-key index
                conn.execute(f"SET memory_limit = '{memory_limit(settings.load_memory)}'")
            apply_sql(conn, settings.sql_dir)
        except BaseException:
            conn.close()
            raise
    return conn


_held: dict[Path, duckdb.DuckDBPyConnection] = {}


@contextlib.contextmanager
def held(settings: Settings, *, verify_file: bool = False) -> Iterator[None]:
    """Keep one writer connection open for a run's short audit steps: every writer `connect`
    inside hands out a cursor of it instead of opening the file again (an open and the
    checkpoint at its close cost tens of milliseconds each, which made an unchanged source cost
    five of them). Hold it only around short steps: other processes wait while it is open."""
    key = settings.db_path.resolve()
    if key in _held:
        yield
        return
    _held[key] = connect(settings, verify_file=verify_file)
    trusted = _was_verified(settings.db_path)
    try:
        yield
    finally:
        _held.pop(key).close()
        if trusted:  # what it holds now is what this connection wrote into a verified file
            _remember_verified(settings.db_path, writer=True)


def memory_limit(limit: str) -> str:
    """A memory limit as DuckDB reads it ("1GB", "512 MiB"); anything else is refused."""
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[KMGT]?i?B\s*", limit, flags=re.I):
        raise ConfigError(
            f"memory limit {limit!r} is not a size such as 512MB or 2GB",
            hint="Set RELATIONS_ETL_LOAD_MEMORY (or RELATIONS_ETL_STAGING_MEMORY) to a size.",
        )
    return limit.strip()


def apply_sql(conn: duckdb.DuckDBPyConnection, sql_dir: Path) -> None:
    """Create tables and (re)create views from the layered SQL files, in name order.

    A warehouse that already has these exact scripts applied (their digest is recorded in
    `schema_applied`) is left alone: every writer connects, and re-running all of the DDL on
    each connection cost more than the statements the connection was opened for.
    """
    scripts = [p.read_text(encoding="utf-8") for p in sorted(sql_dir.glob("*.sql"))]
    digest = hashlib.sha256("\0".join(scripts).encode()).hexdigest()
    try:
        if conn.execute("SELECT digest FROM schema_applied").fetchall() == [(digest,)]:
            return
    except duckdb.CatalogException:
        pass  # a new warehouse, or one made before the digest was recorded
    for script in scripts:
        conn.execute(script)
    conn.execute("CREATE OR REPLACE TABLE schema_applied AS SELECT ? AS digest", [digest])


def refresh_reference(conn: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """Replace the countries and organizations tables with the reference data in use."""
    for table, frame in (
        ("countries", ref.countries_frame()),
        ("organizations", ref.organizations_frame()),
    ):
        conn.register("_reference", frame.to_arrow())
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _reference")
        conn.unregister("_reference")


def _hash_sql(columns: list[str]) -> str:
    parts = ", ".join(f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in columns)
    return f"md5(concat_ws(chr(31), {parts}))"


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


def _count(conn: duckdb.DuckDBPyConnection, query: str) -> int:
    rows = conn.execute(query).fetchall()
    return int(rows[0][0]) if rows else 0


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
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _staged AS
            SELECT {written_columns}, ?::VARCHAR AS batch_id, ?::TIMESTAMPTZ AS loaded_at,
                   {_hash_sql(content_columns(kind))} AS row_hash
            FROM _facts_in {none_if_failed}""",
            [batch.batch_id, now],
        )
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _status AS
            SELECT s.{ident} AS id,
                   CASE WHEN t.{ident} IS NULL THEN 'new'
                        WHEN t.row_hash = s.row_hash THEN 'same' ELSE 'changed' END AS status
            FROM _staged AS s LEFT JOIN {table} AS t ON t.{ident} = s.{ident}"""
        )
        years = _years(
            conn,
            f"SELECT DISTINCT {year_sql(kind)} FROM _staged UNION SELECT DISTINCT "
            f"{year_sql(kind, 't')} "
            f"FROM {table} t JOIN _status s ON s.id = t.{ident} AND s.status = 'changed'",
            [],
        )
        conn.execute(
            f"DELETE FROM {table} WHERE {ident} IN "
            "(SELECT id FROM _status WHERE status = 'changed')"
        )
        conn.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM _staged WHERE {ident} IN "
            "(SELECT id FROM _status WHERE status <> 'same')"
        )
        # a raw row is loaded when one of its facts was written, deduplicated when none was
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _loaded_keys AS
            SELECT k.{RAW_KEYS}, bool_or(s.status <> 'same') AS written
            FROM (SELECT {ident} AS id, unnest({RAW_KEYS}) AS {RAW_KEYS}
                  FROM _facts_in {none_if_failed}) AS k
            LEFT JOIN _status AS s USING (id) GROUP BY k.{RAW_KEYS}"""
        )
        rows_loaded = _count(conn, "SELECT count(*) FROM _loaded_keys WHERE written")
        raw_rows = _count(conn, "SELECT count(*) FROM _loaded_keys")
        rows_deduplicated = raw_rows - rows_loaded + repeated
        facts_written = _count(conn, "SELECT count(*) FROM _status WHERE status <> 'same'")
        conn.register(
            "_replayed_keys",
            pl.DataFrame({RAW_KEYS: replayed or []}, schema={RAW_KEYS: pl.String}).to_arrow(),
        )
        open_rows = "resolved_batch_id IS NULL AND source = ? AND source_file || '#' || source_row"
        rejected_years = _years(
            conn,
            f"SELECT DISTINCT year(rejected_at) FROM rejected_rows WHERE {open_rows} IN "
            f"(SELECT {RAW_KEYS} FROM _loaded_keys UNION SELECT {RAW_KEYS} FROM _replayed_keys)",
            [batch.source],
        )
        for keys_table, resolution in (("_loaded_keys", "loaded"), ("_replayed_keys", "replayed")):
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
        if failure is None and replayed is None:  # a snapshot list retires the facts it dropped
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
        queued = [[t, y, batch.batch_id] for t, ys in result.years.items() for y in sorted(ys)]
        if queued:
            conn.executemany("INSERT OR IGNORE INTO publish_queue VALUES (?, ?, ?)", queued)
        if dropped:
            conn.executemany(
                "INSERT OR REPLACE INTO dropped_rows VALUES (?, ?, ?, ?)",
                [[batch.batch_id, batch.source, r, n] for r, n in sorted(dropped.items())],
            )
        _audit(
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


def _audit(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    result: LoadResult | None,
    status: str,
    now: dt.datetime,
    content_hash: str | None = None,
    fingerprint: str | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        """INSERT OR REPLACE INTO load_batches (batch_id, source, kind, source_uri, content_hash,
            started_at, finished_at, status, rows_read, rows_loaded, rows_rejected,
            rows_deduplicated, facts_written, flow_run_id, error, source_config, fingerprint,
            rows_dropped)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            batch.batch_id,
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
        ],
    )


@disk_errors
def _write_audit(settings: Settings, batch: Batch, status: str, **fields: str | None) -> None:
    conn = connect(settings)
    try:
        _audit(conn, batch, None, status, dt.datetime.now(dt.UTC), **fields)
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
        _audit(conn, batch, None, "running", dt.datetime.now(dt.UTC))
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
