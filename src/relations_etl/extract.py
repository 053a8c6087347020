"""Extract: read a raw list through fsspec into text tables with file hashes and row numbers."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import polars as pl

from relations_etl.config import Source
from relations_etl.errors import SourceReadError, TransientSourceError

ROW = "_row"
FILE = "_file"
RAW = "_raw"


@dataclass(frozen=True)
class RawTable:
    """One file (or chunk) of a raw list: every value as text, plus `_row`, `_file` and `_raw`."""

    frame: pl.DataFrame
    file: str
    content_hash: str
    columns: tuple[str, ...]


def read_bytes(uri: str, source: str) -> bytes:
    """Read a whole file through fsspec; network failures are transient, the rest terminal."""
    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
            return data
    except FileNotFoundError as exc:
        raise SourceReadError(f"file not found: {uri}", source=source, file=uri) from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        if "://" in uri and not uri.startswith("file://"):
            raise TransientSourceError(
                f"could not fetch {uri}: {exc}", source=source, file=uri
            ) from exc
        raise SourceReadError(f"could not read {uri}: {exc}", source=source, file=uri) from exc
    except Exception as exc:  # aiohttp and fsspec raise their own types for HTTP errors
        status = getattr(exc, "status", None) or getattr(exc, "code", None)
        if isinstance(status, int) and status < 500:
            raise SourceReadError(f"{uri} answered {status}", source=source, file=uri) from exc
        raise TransientSourceError(
            f"could not fetch {uri}: {exc}", source=source, file=uri
        ) from exc


def as_text_table(frame: pl.DataFrame, file: str, content_hash: str) -> RawTable:
    """Cast every column to text, keep the row as read (JSON) and number the rows from 1."""
    columns = tuple(frame.columns)
    raw = pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")
    text = frame.with_columns(pl.all().cast(pl.String)).with_columns(
        raw.alias(RAW),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW),
        pl.lit(file).alias(FILE),
    )
    return RawTable(text, file, content_hash, columns)


def _read_table(
    data: bytes, fmt: str, options: dict[str, Any], uri: str, source: str
) -> pl.DataFrame:
    try:
        if fmt in ("csv", "tsv"):
            return pl.read_csv(
                io.BytesIO(data),
                separator=options.get("separator", "\t" if fmt == "tsv" else ","),
                infer_schema=False,
                encoding=options.get("encoding", "utf8-lossy"),
                skip_rows=int(options.get("skip_rows", 0)),
                truncate_ragged_lines=False,
            )
        if fmt == "xlsx":
            return pl.read_excel(
                io.BytesIO(data),
                sheet_name=options.get("sheet"),
                infer_schema_length=0,
            )
        if fmt == "json":
            records = json.loads(data)
            if isinstance(records, dict):
                records = records.get(options.get("records", "records"), [])
            return _records_frame(records)
        if fmt == "ndjson":
            lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
            return _records_frame([json.loads(line) for line in lines])
        if fmt == "parquet":
            return pl.read_parquet(io.BytesIO(data))
    except SourceReadError:
        raise
    except Exception as exc:
        raise SourceReadError(
            f"cannot read {uri} as {fmt}: {exc}", source=source, file=uri
        ) from exc
    raise SourceReadError(f"no reader for format {fmt!r}", source=source, file=uri)


def _records_frame(records: Any) -> pl.DataFrame:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("expected a list of objects")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, (dict, list, bool)):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    return pl.DataFrame(
        {name: [text(r.get(name)) for r in records] for name in names},
        schema={name: pl.String for name in names},
    )


def extract(source: Source) -> Iterator[RawTable]:
    """Yield the raw tables of a source, one per file, in a stable order."""
    fmt = source.resolved_format
    if fmt == "hsg-visits-xml":
        from relations_etl.readers.hsg_visits import read_hsg_visits

        yield from read_hsg_visits(source.uri, source.name)
        return
    data = read_bytes(source.uri, source.name)
    frame = _read_table(data, fmt, source.mapping.options, source.uri, source.name)
    yield as_text_table(frame, source.uri, hashlib.sha256(data).hexdigest())
