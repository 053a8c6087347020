"""Publish: the warehouse tables as hive-partitioned Parquet, each file replaced atomically.

Each file written is recorded in `published_files` (rows, bytes, change time, SHA-256);
every publish first compares the files on disk with that record and queues again the years
whose file is missing, replaced or damaged, so a file broken from outside is repaired by the
next run instead of staying broken. The column `modified_ns` holds the file's status-change time
(ctime), not its modification time: any write, rename or `utime` moves the ctime and nothing can
set it back, so a file whose size and ctime match its record is the file written and is not
read again; only a file that changed is digested. (Digesting every file on every run made each
run's cost grow with the whole warehouse.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from relations_etl.config import Kind
from relations_etl.contract import (
    REJECTED_ROWS,
    kv_metadata_option,
    published_columns,
    sql_literal,
)
from relations_etl.db import connect, disk_errors
from relations_etl.errors import WarehouseError
from relations_etl.facts import ID_COLUMN, TABLE, year_sql
from relations_etl.settings import Settings
from relations_etl.storage import Storage, Stored, storage_for

# what each published table holds, the year it partitions on (SQL), and its stable order: a
# fact table's by its id, unique in the table and its first column, so the order ORDER BY ALL
# gave (the same bytes) at a fifth less sorting (one sort key, not every column)
_PUBLISHED = {
    **{TABLE[k]: (year_sql(k), ID_COLUMN[k]) for k in Kind},
    REJECTED_ROWS: ("year(rejected_at)", "rejected_at, source, source_file, source_row"),
}
REPAIR = "repair"
"""The batch_id of a year queued again because its file no longer matches its record."""
_log = logging.getLogger(__name__)


def _file(table: str, year: int) -> str:
    """A published file, relative to the Parquet root (a folder or an object-storage prefix)."""
    return f"{table}/year={int(year)}/data.parquet"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_SORTED = "_publishing.sorted"
"""The rows being published, sorted: a table of an in-memory database attached for the publish,
which, unlike a TEMP table (one connection's own), every cursor writing a year can read."""

GROUP_ROWS = 2_000_000
"""The rows sorted at a time: consecutive years are sorted together up to this many rows (a
larger year alone). One sort of every row spilled past the writers' memory limit at 10M rows
and took longer than several sorts that each fit, each reading the table again."""


def year_groups(counts: dict[int, int], limit: int) -> list[list[int]]:
    """Consecutive years, in order, grouped so that each group holds at most `limit` rows
    (a year of more rows is a group of its own)."""
    groups: list[list[int]] = []
    rows = 0
    for year in sorted(counts):
        if groups and rows + counts[year] <= limit:
            groups[-1].append(year)
            rows += counts[year]
        else:
            groups.append([year])
            rows = counts[year]
    return groups


@dataclass
class Placed:
    """The years a publish put in place, to record in `published_files` (see `record`)."""

    files: list[tuple[str, int, int, Stored, str]] = field(default_factory=list)
    """(table, year, rows, the file as stored, its SHA-256) of each year written."""
    emptied: list[tuple[str, int]] = field(default_factory=list)
    """(table, year) of each year whose file was removed."""

    def record(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Write the records in two statements (one per year cost a commit each: 0.6 s for 76
        years); a failure before leaves the years queued, and the next run writes them again."""
        if self.files:
            conn.execute(
                "INSERT OR REPLACE INTO published_files SELECT unnest(?::VARCHAR[]), "
                "unnest(?::INTEGER[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), "
                "unnest(?::VARCHAR[]), unnest(?::BIGINT[]), now()",
                [
                    [table for table, _, _, _, _ in self.files],
                    [year for _, year, _, _, _ in self.files],
                    [rows for _, _, rows, _, _ in self.files],
                    [info.size for _, _, _, info, _ in self.files],
                    [digest for _, _, _, _, digest in self.files],
                    [info.modified_ns for _, _, _, info, _ in self.files],
                ],
            )
        if self.emptied:
            conn.execute(
                "DELETE FROM published_files WHERE (table_name, year) IN "
                "(SELECT (unnest(?::VARCHAR[]), unnest(?::INTEGER[])))",
                [[t for t, _ in self.emptied], [y for _, y in self.emptied]],
            )


def publish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, table: str, years: set[int]
) -> list[str]:
    """Rewrite parquet/<table>/year=YYYY/data.parquet per year and record each file; an
    emptied year is removed (see `publish_years`)."""
    placed = Placed()
    written = publish_years(conn, settings, table, years, placed)
    placed.record(conn)
    return written


def publish_years(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    table: str,
    years: set[int],
    placed: Placed,
) -> list[str]:
    """Rewrite parquet/<table>/year=YYYY/data.parquet per year; an emptied year is removed;
    what was put in place is added to `placed`, for the caller to record.

    The years are published in groups of consecutive years (see `GROUP_ROWS` and
    `year_groups`): the rows of a group are copied once, in their stable order, into a table
    sorted by year; each year's COPY then reads only its own row groups (DuckDB skips the
    others by their min/max), instead of one full scan and sort of the table per year. A
    year's file holds the same rows in the same order whatever group it is sorted in (its
    bytes too while the year holds fewer rows than a Parquet row group, 122,880: past that the
    writer's cuts between row groups follow where the year lies in the sorted table, which
    depends on the years sorted with it, as it did with one sort of every year). (A
    single `COPY ... PARTITION_BY` is faster still but does not keep the order inside a file
    when it runs on several threads: a file's bytes would change run to run.)
    The years of a group are written side by side, one COPY per DuckDB thread (see
    `_write_years`), and put in place in year order, group after group.
    """
    written: list[str] = []
    if not years:
        return written
    year_of, order = _PUBLISHED[table]
    columns = ", ".join(f'"{c}"' for c in published_columns(table))
    wanted = sorted(int(y) for y in years)
    # an asked year without rows is written too: its file and record are removed
    counts = dict.fromkeys(wanted, 0)
    for year, n in conn.execute(
        f"SELECT {year_of} AS y, count(*) FROM {table} "
        "WHERE y IN (SELECT unnest(?::INTEGER[])) GROUP BY y",
        [wanted],
    ).fetchall():
        counts[int(year)] = int(n)
    store = storage_for(settings)
    conn.execute("ATTACH IF NOT EXISTS ':memory:' AS _publishing")
    try:
        for group in year_groups(counts, GROUP_ROWS):
            conn.execute(
                f"CREATE OR REPLACE TABLE {_SORTED} AS SELECT {year_of} AS _publish_year, "
                f"{columns} FROM {table} WHERE {year_of} IN (SELECT unnest(?::INTEGER[])) "
                f"ORDER BY _publish_year, {order}",
                [group],
            )
            written.extend(_write_years(conn, store, table, group, columns, placed))
            conn.execute(f"DROP TABLE {_SORTED}")  # its memory, before the next group's sort
    finally:
        conn.execute("DETACH DATABASE IF EXISTS _publishing")
    return written


def _write_years(
    conn: duckdb.DuckDBPyConnection,
    store: Storage,
    table: str,
    years: list[int],
    columns: str,
    placed: Placed,
) -> list[str]:
    """Write each year's file, several at a time, and put them in place in year order.

    A year's COPY is small (one or a few row groups) and runs on one DuckDB thread, so one
    after the other they left the other cores idle; here as many COPYs as DuckDB has threads
    run at once, each on its own cursor (DuckDB releases the GIL while it works). Each file is
    still written by one COPY of rows in a fixed order: its bytes are those of a serial publish.
    Only the COPY and the digest run in the workers; the puts stay in this thread, in year
    order, and are added to `placed`.
    """
    (threads,) = conn.execute("SELECT current_setting('threads')").fetchall()[0]
    workers = max(1, min(int(threads), len(years)))
    staged = {year: store.staged(_file(table, year)) for year in years}
    cursors = [conn.cursor() for _ in range(workers)]
    free: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
    for cursor in cursors:
        free.put(cursor)

    def write(year: int) -> tuple[int, str | None]:
        cursor = free.get()
        try:
            return _write_year(cursor, table, year, columns, staged[year])
        finally:
            free.put(cursor)

    written: list[str] = []
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="publish") as pool:
            copies = [pool.submit(write, year) for year in years]
            try:
                for year, copy in zip(years, copies, strict=True):
                    rows, digest = copy.result()
                    info = _place_year(store, table, year, staged[year], rows, digest)
                    if info is None or digest is None:
                        placed.emptied.append((table, year))
                    else:
                        placed.files.append((table, year, rows, info, digest))
                        written.append(store.uri(_file(table, year)))
            except BaseException:
                for copy in copies:
                    copy.cancel()
                wait(copies)
                for path in staged.values():
                    # the files written but not put; a failure here must not hide the first
                    with contextlib.suppress(OSError):
                        store.discard(path)
                raise
    finally:
        for cursor in cursors:
            cursor.close()
    return written


def _write_year(
    cursor: duckdb.DuckDBPyConnection, table: str, year: int, columns: str, temporary: Path
) -> tuple[int, str | None]:
    """Write one year of the sorted rows to `temporary`; its rows and, if any, its SHA-256."""
    try:
        copied = cursor.execute(
            f"COPY (SELECT {columns} FROM {_SORTED} WHERE _publish_year = ?) "
            f"TO {sql_literal(str(temporary))} "
            f"(FORMAT parquet, COMPRESSION zstd, {kv_metadata_option(table)})",
            [year],
        ).fetchone()
    except BaseException:
        temporary.unlink(missing_ok=True)  # half a file on a full disk
        raise
    rows = int(copied[0]) if copied and copied[0] else 0
    return rows, _sha256(temporary) if rows else None


def _place_year(
    store: Storage,
    table: str,
    year: int,
    temporary: Path,
    rows: int,
    digest: str | None,
) -> Stored | None:
    """Make a written year appear whole where readers look (a rename on disk, one PUT in
    object storage); an emptied year's file is removed (None)."""
    target = _file(table, year)
    if rows and digest is not None:
        try:
            return store.put(temporary, target)
        except BaseException:
            store.discard(temporary)
            raise
    store.discard(temporary)
    store.remove(target)
    return None


def _matches(
    store: Storage, path: str, record: tuple[int, int, str, int] | None, rows: int
) -> tuple[bool, tuple[int, int, str, int] | None]:
    """Whether a published file is what the warehouse wrote; and the record to keep for it."""
    info = store.stat(path)
    if info is None:
        return False, None
    if record is not None:
        if (info.size, info.modified_ns) == (record[1], record[3]):
            return True, None  # untouched since it was written and recorded: nothing to read
        if info.size == record[1] and store.digest(path) == record[2]:
            return True, (record[0], info.size, record[2], info.modified_ns)  # touched only
        return False, None
    # published before files were recorded: readable, and as many rows as the table's year
    try:
        with store.open(path) as handle:
            whole = pq.read_metadata(handle).num_rows == rows
    except Exception:
        whole = False
    return whole, ((rows, info.size, store.digest(path), info.modified_ns) if whole else None)


def check_published(conn: duckdb.DuckDBPyConnection, settings: Settings) -> list[str]:
    """Queue again every (table, year) whose Parquet file is missing, damaged or replaced, and
    every file left for a year the table no longer has; returns what was queued.

    A file whose size and change time are those recorded is not read; any other is compared by
    SHA-256 with its record (so the cost is a stat per file plus reading what changed).
    """
    queued = []
    store = storage_for(settings)
    waiting = set(conn.execute("SELECT table_name, year FROM publish_queue").fetchall())
    # one statement for the years of every table and one for every record, not two per table
    by_year = " UNION ALL ".join(
        f"SELECT {sql_literal(table)} AS t, {year_of} AS y, count(*) AS n FROM {table} "
        "GROUP BY y HAVING y IS NOT NULL"
        for table, (year_of, _) in _PUBLISHED.items()
    )
    all_counts: dict[str, dict[int, int]] = {table: {} for table in _PUBLISHED}
    for table, year, n in conn.execute(by_year).fetchall():
        all_counts[table][int(year)] = int(n)
    all_records: dict[str, dict[int, tuple[int, int, str, int]]] = {t: {} for t in _PUBLISHED}
    for table, year, rows, size, sha, changed in conn.execute(
        "SELECT table_name, year, rows, bytes, sha256, modified_ns FROM published_files"
    ).fetchall():
        if table in all_records:
            all_records[table][int(year)] = (int(rows), int(size), str(sha), int(changed))
    for table in _PUBLISHED:
        counts, records = all_counts[table], all_records[table]
        folders = (p.split("/")[-2] for p in store.files(f"{table}/year=*/data.parquet"))
        on_disk = {
            int(name.removeprefix("year="))
            for name in folders
            if name.removeprefix("year=").isdigit()
        }
        for year in sorted(set(counts) | on_disk | set(records)):
            if (table, year) in waiting:
                continue  # written anyway by this publish
            path = _file(table, year)
            if year not in counts:
                fine = store.stat(path) is None
            else:
                fine, record = _matches(store, path, records.get(year), counts[year])
                if record is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO published_files VALUES (?, ?, ?, ?, ?, ?, now())",
                        [table, year, *record],
                    )
            if not fine:
                conn.execute(
                    "INSERT OR IGNORE INTO publish_queue VALUES (?, ?, ?)", [table, year, REPAIR]
                )
                queued.append(store.uri(path))
    if queued:
        _log.warning("published files that no longer match the warehouse, rewritten: %s", queued)
    return queued


@disk_errors
def publish_pending(settings: Settings) -> list[str]:
    """Publish every (table, year) committed since the last publish, and repair published files
    that no longer match the warehouse; call with the run lock."""
    conn = connect(settings)
    try:
        check_published(conn, settings)
        pending = conn.execute("SELECT table_name, year FROM publish_queue").fetchall()
        if not pending:
            return []
        storage_for(settings).remove_leftovers()
        by_table: dict[str, set[int]] = {}
        for table, year in pending:
            if table in _PUBLISHED:
                by_table.setdefault(table, set()).add(int(year))
        placed = Placed()
        written = [
            path
            for table, ys in by_table.items()
            for path in publish_years(conn, settings, table, ys, placed)
        ]
        # the records and the queue emptied in one commit (a commit costs milliseconds)
        conn.begin()
        try:
            placed.record(conn)
            conn.execute(
                "DELETE FROM publish_queue WHERE (table_name, year) IN "
                "(SELECT (unnest(?::VARCHAR[]), unnest(?::INTEGER[])))",
                [[t for t, _ in pending], [int(y) for _, y in pending]],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return written
    finally:
        conn.close()


def publish_or_defer(settings: Settings) -> str | None:
    """publish_pending, except that a warehouse or disk that refuses the files (full, read-only)
    leaves their years queued for the next run: the batch stays `succeeded` (it is committed)
    and this says why its publish is pending. None when everything is published."""
    try:
        publish_pending(settings)
    except WarehouseError as exc:
        _log.warning("publish pending, the next run writes the files: %s", exc)
        return exc.message
    return None
