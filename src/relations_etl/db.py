"""The one module that opens DuckDB: the warehouse verified, opened, shared, given its SQL."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb

from relations_etl.errors import (
    ConfigError,
    WarehouseError,
    WarehouseLockedError,
)
from relations_etl.facts import ROW_HASH_PROBE, TABLE, row_hash_sql
from relations_etl.lock import holder
from relations_etl.settings import Settings


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
            if settings.load_memory:  # DuckDB spills past it (the fact tables have no index)
                conn.execute(f"SET memory_limit = '{memory_limit(settings.load_memory)}'")
            apply_sql(conn, settings.sql_dir)
        except BaseException:
            conn.close()
            raise
    return conn


_held: dict[Path, duckdb.DuckDBPyConnection] = {}
_trusted: dict[Path, bool] = {}
"""Whether the file was verified when its held connection was opened."""


@contextlib.contextmanager
def held(settings: Settings, *, verify_file: bool = False) -> Iterator[None]:
    """Keep one writer connection open for a run's short audit steps: every writer `connect`
    inside hands out a cursor of it instead of opening the file again (an open and the
    checkpoint at its close cost tens of milliseconds each, which made an unchanged source cost
    five of them). Hold it only around short steps: other processes wait while it is open, and
    `release` lets it go before the block ends."""
    key = settings.db_path.resolve()
    if key in _held:
        yield
        return
    created = not settings.db_path.exists()
    _held[key] = connect(settings, verify_file=verify_file)
    # a file this connection created holds only what it wrote: the next process, reader or
    # writer, need not read every block of it again (64 ms for a warehouse of 1M visits)
    _trusted[key] = created or _was_verified(settings.db_path)
    try:
        yield
    except BaseException:
        release(settings, failed=True)
        raise
    release(settings)


def release(settings: Settings, *, failed: bool = False) -> None:
    """Close the held connection before its holder's block ends: while a large list is
    transformed or a list is fetched over the network (other processes may open the file
    meanwhile), or after a failure (audited on a connection of its own, and the file checked
    again at the next open when `failed`). Writers after it open the file again, or hold it
    anew. Nothing to do when nothing is held."""
    key = settings.db_path.resolve()
    conn = _held.pop(key, None)
    trusted = _trusted.pop(key, False)
    if conn is None:
        return
    conn.close()
    if trusted and not failed:  # what it holds is what this connection wrote into a verified file
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
    each connection cost more than the statements the connection was opened for. The scripts
    run in one transaction, which also rebuilds without their PRIMARY KEY the fact tables of a
    warehouse made before the key was dropped (see `_set_aside_keyed_facts`), and computes
    again the row hashes of a warehouse whose facts were hashed otherwise (see `_rehash_facts`):
    all or nothing.
    """
    scripts = [p.read_text(encoding="utf-8") for p in sorted(sql_dir.glob("*.sql"))]
    digest = hashlib.sha256("\0".join(scripts).encode()).hexdigest()
    try:
        applied = conn.execute(
            f"SELECT digest, row_hash_probe = {ROW_HASH_PROBE} FROM schema_applied"
        ).fetchall()
        if applied == [(digest, True)]:
            return
        probe_matches = applied != [] and all(same for _, same in applied)
    except (duckdb.CatalogException, duckdb.BinderException):
        probe_matches = False  # new, or made before the digest or the probe was recorded
    conn.begin()
    try:
        keyed = _set_aside_keyed_facts(conn)
        if not probe_matches:  # before the views are made again, so they see the new type
            _rehash_facts(conn)
        for script in scripts:
            conn.execute(script)
        for table, old in keyed.items():
            conn.execute(
                f"INSERT INTO {table} BY NAME SELECT * REPLACE "
                f"({row_hash_sql(_KIND_OF[table])} AS row_hash) FROM {old}"
            )
            conn.execute(f"DROP TABLE {old}")
        conn.execute(
            "CREATE OR REPLACE TABLE schema_applied AS "
            f"SELECT ? AS digest, {ROW_HASH_PROBE} AS row_hash_probe",
            [digest],
        )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


_KIND_OF = {table: kind for kind, table in TABLE.items()}


def _rehash_facts(conn: duckdb.DuckDBPyConnection) -> None:
    """Compute again the row hash of every fact, for a warehouse whose facts were hashed
    otherwise: the md5 text of earlier versions (the column becomes UBIGINT), or the hash of
    another DuckDB version (ROW_HASH_PROBE differs). Without it every fact would look changed
    at its list's next load and be written again, with that batch's lineage, though nothing
    in it changed. (A new warehouse has no table yet: nothing to hash.)"""
    types = dict(
        conn.execute(
            "SELECT table_name, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = current_schema() "
            "AND column_name = 'row_hash' AND list_contains(?, table_name) "
            "AND table_oid IN (SELECT table_oid FROM duckdb_tables())",
            [sorted(TABLE.values())],
        ).fetchall()
    )
    for table, data_type in types.items():
        hashed = row_hash_sql(_KIND_OF[table])
        if data_type != "UBIGINT":
            conn.execute(f"ALTER TABLE {table} ALTER row_hash SET DATA TYPE UBIGINT USING {hashed}")
        else:
            conn.execute(f"UPDATE {table} SET row_hash = {hashed}")


_KEYED_SUFFIX = "_with_primary_key"


def _set_aside_keyed_facts(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Rename the fact tables that still have the PRIMARY KEY of earlier versions out of the
    way, so that the SQL files create them anew without it; returns {table: renamed}, for
    `apply_sql` to copy their rows back in the same transaction. (DuckDB cannot drop a
    primary key in place; the views bind by name when queried, so they follow the new table.)"""
    keyed = [
        table
        for (table,) in conn.execute(
            "SELECT DISTINCT table_name FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND schema_name = current_schema() "
            "AND constraint_type = 'PRIMARY KEY' AND list_contains(?, table_name)",
            [sorted(TABLE.values())],
        ).fetchall()
    ]
    renamed = {}
    for table in keyed:
        old = table + _KEYED_SUFFIX
        conn.execute(f"ALTER TABLE {table} RENAME TO {old}")
        renamed[table] = old
    return renamed
