"""Query: read-only SQL on the warehouse for analysts, on a connection that cannot write, in a
process that cannot write (relations_etl.sandbox)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from relations_etl.config import uri_scheme
from relations_etl.db import connect
from relations_etl.errors import ConfigError, QueryError, RelationsEtlError
from relations_etl.fetch import OBJECT_STORES, object_fs
from relations_etl.sandbox import run_sandboxed, stopped_after
from relations_etl.settings import Settings

_ONE_QUERY = "Give one read-only query: SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, "
_ALLOW_READ = (
    "Allow a file or folder to be read with `--read PATH` or RELATIONS_ETL_SQL_READ_PATHS; "
    "writing files, extensions and settings stay refused."
)
_FLOWS = (
    "the warehouse is changed only by the flows (`relations-etl run`, `ingest`, "
    "`quarantine replay`)."
)

# DuckDB types that reach polars as themselves; any other (INTERVAL, UNION, BLOB, BIT, BIGNUM,
# VARIANT, TIME WITH TIME ZONE, ...) is either refused by polars (a panic for a nested INTERVAL)
# or loses what it says, so the query's own text for it is printed instead
_PLAIN_TYPES = {
    "boolean",
    "tinyint",
    "smallint",
    "integer",
    "bigint",
    "hugeint",
    "utinyint",
    "usmallint",
    "uinteger",
    "ubigint",
    "uhugeint",
    "float",
    "double",
    "decimal",
    "varchar",
    "date",
    "time",
    "timestamp",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_ns",
    "timestamp with time zone",
    "uuid",
    "enum",
    "null",
}
_NESTED_TYPES = {"list", "array", "struct", "map"}


def check_statement(query: str) -> None:
    """Refuse anything but one read-only query, looking inside EXPLAIN at what it would run."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"the query does not parse: {exc}") from exc
    if not statements:
        raise QueryError("the query is empty", hint=_ONE_QUERY + "or EXPLAIN of one of them.")
    if len(statements) > 1:
        raise QueryError(
            f"`sql` runs one statement at a time; this text holds {len(statements)}",
            hint="Send the statements one at a time.",
        )
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: what it explains must itself be a query
        inner = _explained(statement.query)
        if inner is None or _kind(inner) != duckdb.StatementType.SELECT:
            what = _a(_keyword(inner)) if inner else "a statement that is not a query"
            raise QueryError(
                f"`sql` is read-only: EXPLAIN of {what} is refused",
                hint=f"EXPLAIN a SELECT query; {_FLOWS}",
            )
    elif statement.type != duckdb.StatementType.SELECT:
        raise QueryError(
            f"`sql` is read-only: {_a(_keyword(statement.query))} statement is refused",
            hint=f"{_ONE_QUERY}or EXPLAIN; {_FLOWS}",
        )


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in tuple("AEIOU") else f"a {word}"


def _kind(text: str) -> duckdb.StatementType | None:
    """The type of the single statement `text` holds, or None when it is not one statement."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error:
        return None
    return statements[0].type if len(statements) == 1 else None


def _words(text: str) -> list[tuple[int, str]]:
    """DuckDB's tokens of `text` without comments: where each starts, and its text."""
    tokens = [start for start, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    ends = [*tokens[1:], len(text)]
    return [(start, text[start:end].strip()) for start, end in zip(tokens, ends, strict=True)]


def _keyword(text: str) -> str:
    """The statement's first word as the user wrote it (INSTALL, CHECKPOINT, RESET)."""
    words = _words(text)
    return words[0][1].upper() if words else "empty"


def _explained(text: str) -> str | None:
    """The statement after `EXPLAIN [ANALYZE] [(options)]`, or None when nothing follows."""
    words = [(start, word.lower()) for start, word in _words(text)]
    at = 1  # words[0] is EXPLAIN
    if at < len(words) and words[at][1] in ("analyze", "analyse"):
        at += 1
    if at < len(words) and words[at][1] == "(":
        depth = 0
        while at < len(words):
            depth += words[at][1].count("(") - words[at][1].count(")")
            at += 1
            if depth <= 0:
                break
    return text[words[at][0] :] if at < len(words) else None


def readable(settings: Settings, read: Iterable[Path] = ()) -> tuple[list[str], list[str]]:
    """Folders and files an analyst's query may read: the home, the setting and `read`."""
    folders: list[str] = []
    files: list[str] = []
    extra = [*settings.sql_read_paths, *read]
    for path in [settings.home, *extra]:
        if path in extra and not path.exists():
            raise QueryError(
                f"cannot allow reading {path}: no such file or folder",
                hint="Give `--read` (or RELATIONS_ETL_SQL_READ_PATHS) a path that exists.",
            )
        target = folders if path.is_dir() else files
        # DuckDB compares the text of a path: name the folder both as given and with its links
        # resolved; the trailing slash keeps /data/a from allowing /data/ab
        for form in dict.fromkeys((str(path.absolute()), str(path.resolve()))):
            target.append(f"{form.rstrip('/')}/" if path.is_dir() else form)
    return folders, files


@dataclass(frozen=True)
class _Store:
    port: int
    files: tuple[str, ...]


# what resolving a host name and checking its certificate read (and ~/.aws, botocore's)
_NETWORK_FILES = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
)


def object_store(settings: Settings) -> _Store | None:
    """Where the sandboxed query may connect when the published Parquet is in object storage:
    the endpoint's port (443 for AWS itself) and the files a connection reads."""
    if uri_scheme(settings.parquet_root) not in OBJECT_STORES:
        return None
    endpoint = urlsplit(settings.s3_endpoint_url or "https://s3.amazonaws.com")
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    return _Store(port, (*_NETWORK_FILES, str(Path.home() / ".aws")))


def published_parquet(conn: duckdb.DuckDBPyConnection, settings: Settings) -> list[str]:
    """Let the analyst's queries read the published Parquet where RELATIONS_ETL_PARQUET_URI
    puts it: in object storage through s3fs registered on the connection (DuckDB's httpfs
    extension is never needed), confined to that prefix; a local folder outside the home as a
    folder. Returns what to add to the allowed folders."""
    root = settings.parquet_root.rstrip("/")
    if uri_scheme(root) in OBJECT_STORES:
        fs, _ = object_fs(root, settings)
        conn.register_filesystem(fs)
        return [f"{root}/"]
    folder = Path(root)
    if settings.parquet_uri is None or not folder.is_dir():
        return []
    return list(
        dict.fromkeys(f"{str(p).rstrip('/')}/" for p in (folder.absolute(), folder.resolve()))
    )


def analyst_connection(
    settings: Settings, read: Iterable[Path] = (), *, temp_directory: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """The warehouse opened read-only for an analyst: no file written, no extension installed
    or loaded, no setting changed, reads only under the allowed paths, memory and time bounded.

    DuckDB spills to `temp_directory` (default: beside the warehouse file, `relations.duckdb.tmp`).
    """
    folders, files = readable(settings, read)
    try:
        # checked on its own first: the warehouse's opener reads any refusal as a bad file (74)
        duckdb.connect(config={"memory_limit": settings.sql_memory_limit}).close()
        conn = connect(
            settings,
            read_only=True,
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "allow_unsigned_extensions": False,
                "allow_extension_repositories": "forbidden",
                # stored secrets would give the query the user's cloud credentials
                "allow_persistent_secrets": False,
                "memory_limit": settings.sql_memory_limit,
                "max_execution_time": max(1, round(settings.sql_timeout * 1000)),
                **({"temp_directory": str(temp_directory)} if temp_directory else {}),
            },
        )
    except (duckdb.ParserException, duckdb.InvalidInputException) as exc:
        raise ConfigError(
            f"RELATIONS_ETL_SQL_MEMORY_LIMIT {settings.sql_memory_limit!r} is not a size DuckDB "
            f"reads: {exc}",
            hint="Set it like 2GB or 512MB.",
        ) from exc
    try:
        folders += published_parquet(conn, settings)
        # DuckDB takes the allowed paths only once started, and only before external access is
        # off; then the lock makes every setting, these included, final for the connection
        # DuckDB's progress bar prints on standard output, into the query's CSV or JSON
        conn.execute("SET enable_progress_bar = false")
        conn.execute("SET allowed_directories = ?", [folders])
        conn.execute("SET allowed_paths = ?", [files])
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
    except BaseException:
        conn.close()
        raise
    return conn


def run_query(settings: Settings, query: str, read: Iterable[Path] = ()) -> pl.DataFrame:
    """Run one read-only query on the analyst connection, in a process that cannot write
    (relations_etl.sandbox); refuse the rest.

    `read` names files and folders outside the warehouse home the query may read.
    """
    check_statement(query)
    read = tuple(read)
    folders, files = readable(settings, read)
    store = object_store(settings)
    table = run_sandboxed(
        execute,
        (settings, query, read),
        read=[Path(p) for p in (*folders, *files, *(store.files if store else ()))],
        timeout=settings.sql_timeout,
        connect=[store.port] if store else [],
        # botocore's credentials and endpoint, as the caller has them now
        environ={k: v for k, v in os.environ.items() if k.startswith("AWS_")} if store else None,
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a table, never a lone column
    return frame


def execute(settings: Settings, query: str, read: Iterable[Path], scratch: Path) -> pa.Table:
    """Run `query` as it is (the statement check is the caller's) on the analyst connection,
    spilling to `scratch`; its result as Arrow, every error a QueryError or WarehouseError."""
    conn = analyst_connection(settings, read, temp_directory=scratch)
    try:
        result = conn.sql(query)
        if result is None:
            raise QueryError("the statement returned no rows; `sql` is for queries")
        return _table(result)
    except RelationsEtlError:
        raise
    except duckdb.InterruptException as exc:
        if "maximum execution time" not in str(exc):
            raise QueryError(
                "the query was interrupted", hint="The warehouse is unchanged."
            ) from exc
        raise stopped_after(settings.sql_timeout) from exc
    except duckdb.OutOfMemoryException as exc:
        raise QueryError(
            f"the query needs more than {settings.sql_memory_limit} of memory and was stopped",
            hint="Narrow the query, or raise RELATIONS_ETL_SQL_MEMORY_LIMIT; the warehouse is "
            "unchanged.",
        ) from exc
    except duckdb.PermissionException as exc:
        raise QueryError(
            f"`sql` is read-only and reads only the warehouse home and the paths allowed: {exc}",
            hint=_ALLOW_READ,
        ) from exc
    except duckdb.IOException as exc:
        if "Permission denied" not in str(exc):
            raise QueryError(f"query failed: {exc}") from exc
        # the kernel's refusal (the sandbox): what slipped past the check and DuckDB's settings
        raise QueryError(
            f"`sql` is read-only: the system refused the query's access to a file: {exc}",
            hint=_ALLOW_READ,
        ) from exc
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc
    finally:
        conn.close()


def _plain(kind: DuckDBPyType) -> bool:
    """Whether a column of this DuckDB type converts to polars as what it is."""
    if kind.id in _NESTED_TYPES:
        # a list's or array's element ("child"; an array's "size" is a number), a map's key
        # and value, a struct's fields by name
        children = {name: child for name, child in kind.children if isinstance(child, DuckDBPyType)}
        if kind.id == "map" and str(children["key"]) != "VARCHAR":
            return False  # a JSON object's keys are text
        return all(_plain(child) for child in children.values())
    return kind.id in _PLAIN_TYPES


def _table(result: duckdb.DuckDBPyRelation) -> pa.Table:
    """The result as Arrow for polars; a column polars cannot hold comes as text (nested: JSON
    text)."""
    names, kinds = result.columns, result.types
    if not all(_plain(kind) for kind in kinds):
        if len(set(names)) != len(names):
            raise QueryError(
                f"the result has columns of the same name ({', '.join(names)}) and some of them "
                "must be printed as text",
                hint="Name each result column once (`AS name`).",
            )
        quoted = ['"' + name.replace('"', '""') + '"' for name in names]
        result = result.project(
            ", ".join(
                q
                if _plain(kind)
                else f"CAST(to_json({q}) AS VARCHAR) AS {q}"
                if kind.id in _NESTED_TYPES
                else f"CAST({q} AS VARCHAR) AS {q}"
                for q, kind in zip(quoted, kinds, strict=True)
            )
        )
    return result.to_arrow_table()
