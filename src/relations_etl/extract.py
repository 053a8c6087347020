"""Extract: read a raw list through fsspec into text tables with file hashes and row numbers.

A file that cannot be read at all fails its source with a SourceReadError naming the file and,
where known, the row and column; a row that cannot be read (a ragged CSV line, a bad NDJSON
line) is kept with its read errors in `_row_errors` and ends in the quarantine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import polars as pl

from relations_etl.config import Source, check_uri, local_path, uri_scheme
from relations_etl.errors import SourceMissingError, SourceReadError, TransientSourceError
from relations_etl.facts import ERRORS
from relations_etl.readers.delimited import RowErrors, read_delimited
from relations_etl.settings import Settings

ROW = "_row"
FILE = "_file"
RAW = "_raw"
ROW_ERRORS = "_row_errors"
# checks of rows that could not be read as written (readers/delimited.py, readers/records.py)
READ_CHECKS = ("field_count", "json_line", "json_record")
_NESTED = (pl.List, pl.Array, pl.Struct)


@dataclass(frozen=True)
class RawTable:
    """A raw list: every value as text, plus `_row` and `_file` (each row's own file and row),
    `_raw` and `_row_errors` (what went wrong reading that row, usually nothing)."""

    frame: pl.DataFrame
    file: str
    content_hash: str
    columns: tuple[str, ...]


def _read_local(uri: str, source: str) -> bytes:
    """Read a local file whole; a file that changes while it is read is a transient error."""
    path = local_path(uri)
    assert path is not None
    try:
        before = os.stat(path)
        with open(path, "rb") as handle:
            data = handle.read()
        after = os.stat(path)
    except FileNotFoundError as exc:
        raise SourceMissingError(f"file not found: {uri}", source=source, file=uri) from exc
    except IsADirectoryError as exc:
        raise SourceReadError(
            f"{uri} is a folder; this format reads one file", source=source, file=uri
        ) from exc
    except OSError as exc:
        raise SourceReadError(f"could not read {uri}: {exc}", source=source, file=uri) from exc
    stamp = (before.st_size, before.st_mtime_ns)
    if stamp != (after.st_size, after.st_mtime_ns) or len(data) != before.st_size:
        raise TransientSourceError(
            f"{uri} changed while it was read ({before.st_size} bytes before, {len(data)} read, "
            f"{after.st_size} after)",
            source=source,
            file=uri,
            hint="Another process is writing it; the read is retried. Have the producer write "
            "under a temporary name and rename it into place.",
        )
    return data


def _read_http(uri: str, source: str, timeout: float) -> bytes:
    import aiohttp

    try:
        fs, path = fsspec.core.url_to_fs(
            uri, client_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
        )
        data: bytes = fs.cat_file(path)
        return data
    except FileNotFoundError as exc:
        raise SourceMissingError(f"{uri} answered 404 Not Found", source=source, file=uri) from exc
    except aiohttp.TooManyRedirects as exc:
        raise SourceMissingError(
            f"{uri} redirects in a loop (more than {(exc.history and len(exc.history)) or 10} "
            "redirects)",
            source=source,
            file=uri,
            hint="The server is misconfigured or the URL is stale; fix the URL. Not retried.",
        ) from exc
    except aiohttp.ClientResponseError as exc:
        if exc.status >= 500 or exc.status in (408, 429):
            raise TransientSourceError(
                f"{uri} answered {exc.status} {exc.message}", source=source, file=uri
            ) from exc
        raise SourceMissingError(
            f"{uri} answered {exc.status} {exc.message}", source=source, file=uri
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise TransientSourceError(
            f"{uri} sent fewer bytes than announced: it changed or the connection broke while it "
            f"was read ({exc})",
            source=source,
            file=uri,
        ) from exc
    except TimeoutError as exc:
        raise TransientSourceError(
            f"{uri} did not answer within {timeout:g} s",
            source=source,
            file=uri,
            hint="The read is retried; RELATIONS_ETL_HTTP_TIMEOUT sets the limit.",
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise TransientSourceError(
            f"could not fetch {uri}: {exc}", source=source, file=uri
        ) from exc


def read_bytes(uri: str, source: str, settings: Settings | None = None) -> bytes:
    """Read a whole file: local, HTTP(S) or another fsspec protocol.

    Not found (404) and other client errors are terminal; 5xx, timeouts, broken connections
    and a file that changed while it was read are transient (retried by the flow).
    """
    settings = settings or Settings()
    scheme = uri_scheme(uri)
    if scheme == "file":
        return _read_local(uri, source)
    if scheme in ("http", "https"):
        return _read_http(uri, source, settings.http_timeout)
    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
            return data
    except FileNotFoundError as exc:
        raise SourceMissingError(f"file not found: {uri}", source=source, file=uri) from exc
    except (ImportError, ValueError) as exc:
        raise SourceReadError(f"cannot open {uri}: {exc}", source=source, file=uri) from exc
    except Exception as exc:
        raise TransientSourceError(
            f"could not fetch {uri}: {exc}", source=source, file=uri
        ) from exc


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: nested values as JSON, bytes as UTF-8 (wrong bytes replaced)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, _NESTED):
            values = [
                None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                for v in frame.get_column(name).to_list()
            ]
            exprs.append(pl.Series(name, values, dtype=pl.String))
        elif dtype == pl.Binary:
            values = [
                None if v is None else bytes(v).decode("utf-8", "replace")
                for v in frame.get_column(name).to_list()
            ]
            exprs.append(pl.Series(name, values, dtype=pl.String))
        else:
            exprs.append(frame.get_column(name).cast(pl.String).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def as_text_table(
    frame: pl.DataFrame, file: str, content_hash: str, row_errors: RowErrors | None = None
) -> RawTable:
    """Cast every column to text, keep the row as read (JSON) and number the rows from 1."""
    columns = tuple(frame.columns)
    text = _as_text(frame)
    raw = pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")
    errors = (
        pl.Series(ROW_ERRORS, row_errors, dtype=ERRORS)
        if row_errors is not None
        else pl.lit([], dtype=ERRORS).alias(ROW_ERRORS)
    )
    text = text.with_columns(
        raw.alias(RAW),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW),
        pl.lit(file).alias(FILE),
        errors,
    )
    return RawTable(text, file, content_hash, columns)


def _read_table(
    data: bytes, fmt: str, options: dict[str, Any], uri: str, source: str
) -> tuple[pl.DataFrame, RowErrors | None]:
    if fmt in ("csv", "tsv"):
        return read_delimited(
            data,
            separator=options.get("separator", "\t" if fmt == "tsv" else ","),
            encoding=options.get("encoding"),
            skip_rows=int(options.get("skip_rows", 0)),
            uri=uri,
            source=source,
        )
    if fmt == "xlsx":
        from relations_etl.readers.workbook import read_xlsx

        frame = read_xlsx(
            data,
            sheet=options.get("sheet"),
            skip_rows=int(options.get("skip_rows", 0)),
            uri=uri,
            source=source,
        )
        return frame, None
    if fmt in ("json", "ndjson"):
        from relations_etl.readers.records import read_json, read_ndjson

        if fmt == "json":
            return read_json(
                data,
                key=options.get("records"),
                encoding=options.get("encoding"),
                uri=uri,
                source=source,
            )
        return read_ndjson(data, encoding=options.get("encoding"), uri=uri, source=source)
    if fmt == "parquet":
        try:
            return pl.read_parquet(io.BytesIO(data)), None
        except Exception as exc:
            raise SourceReadError(
                f"not a readable Parquet file: {str(exc).splitlines()[0]}",
                source=source,
                file=uri,
            ) from exc
    raise SourceReadError(f"no reader for format {fmt!r}", source=source, file=uri)


def combine(tables: list[RawTable], uri: str) -> RawTable:
    """The files of one source as one table, so that record ids are checked across files.

    `_file` and `_row` still name each row's own file and row; the content hash is a digest of
    the files' hashes.
    """
    if len(tables) == 1:
        return tables[0]
    columns = tuple(dict.fromkeys(c for t in tables for c in t.columns))
    frame = pl.concat([t.frame for t in tables], how="diagonal_relaxed")
    digest = hashlib.sha256("".join(t.content_hash for t in tables).encode()).hexdigest()
    return RawTable(frame, uri, digest, columns)


def extract(source: Source, settings: Settings | None = None) -> Iterator[RawTable]:
    """Yield the raw table of a source (a list of several files is read as one table)."""
    settings = settings or Settings()
    check_uri(source.name, source.uri, settings.allowed_schemes, source.landing)
    fmt = source.resolved_format
    if fmt == "hsg-visits-xml":
        from relations_etl.readers.hsg_visits import read_hsg_visits

        tables = read_hsg_visits(source.uri, source.name, settings, source.landing)
        yield combine(list(tables), source.uri)
        return
    data = read_bytes(source.uri, source.name, settings)
    frame, row_errors = _read_table(data, fmt, source.mapping.options, source.uri, source.name)
    yield as_text_table(frame, source.uri, hashlib.sha256(data).hexdigest(), row_errors)
