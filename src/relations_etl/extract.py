"""Extract: read a raw list through fsspec into text tables with file hashes and row numbers.

A file that cannot be read at all fails its source with a SourceReadError naming the file and,
where known, the row and column; a row that cannot be read (a ragged CSV line, a bad NDJSON
line) is kept with its read errors in `_row_errors` and ends in the quarantine.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from relations_etl.config import Source, check_uri
from relations_etl.envelope import RowErrors
from relations_etl.errors import SourceReadError
from relations_etl.fetch import Screen, list_files, read_bytes
from relations_etl.rawtable import RawTable, as_text_table, check_fields
from relations_etl.readers.delimited import (
    Irregular,
    field_screen,
    iter_delimited,
    read_delimited,
)
from relations_etl.readers.records import string_screen
from relations_etl.settings import Settings

_WIDE = ("utf-16", "utf-32")


def text_screen(
    fmt: str, options: dict[str, Any], uri: str, source: str, settings: Settings | None = None
) -> Screen | None:
    """For text formats in an 8-bit or UTF-8 encoding: refuse a NUL byte as it arrives (no list
    holds one; a binary file or a gigabyte of zeros stops at its first chunk), and a field
    longer than max_field_bytes while it arrives (it costs the limit, not the field)."""
    if fmt not in ("csv", "tsv", "json", "ndjson"):
        return None
    settings = settings or Settings()
    limit = settings.max_field_bytes
    encoding = str(options.get("encoding") or "utf-8").lower().replace("_", "-")
    if encoding.startswith(_WIDE) or encoding in ("utf16", "utf32"):
        return None
    lines = [0]
    if fmt in ("csv", "tsv"):
        separator = options.get("separator", "\t" if fmt == "tsv" else ",")
        skip = int(options.get("skip_rows", 0))
        fields = field_screen(separator, limit, uri=uri, source=source, skip_lines=skip)
    else:
        fields = string_screen(limit, uri=uri, source=source)

    def screen(chunk: bytes, offset: int) -> None:
        at = chunk.find(0)
        if at < 0:
            lines[0] += chunk.count(b"\n")
            if fields is not None:
                fields(chunk, offset)
            return
        line = lines[0] + chunk.count(b"\n", 0, at) + 1
        raise SourceReadError(
            f"byte 0x00 (NUL) at byte {offset + at + 1} (line {line}): a list is text, and this "
            "is a binary file or text in UTF-16/UTF-32",
            source=source,
            file=uri,
            hint="Check that the URI names the list; for UTF-16 text set options.encoding "
            "(utf-16). Nothing was loaded for this source.",
        )

    return screen


def _read_table(
    data: bytes, fmt: str, options: dict[str, Any], uri: str, source: str, settings: Settings
) -> tuple[pl.DataFrame, RowErrors | None]:
    if fmt in ("csv", "tsv"):
        return read_delimited(
            data,
            separator=options.get("separator", "\t" if fmt == "tsv" else ","),
            encoding=options.get("encoding"),
            skip_rows=int(options.get("skip_rows", 0)),
            uri=uri,
            source=source,
            settings=settings,
        )
    if fmt == "xlsx":
        from relations_etl.readers.workbook import read_xlsx

        frame = read_xlsx(
            data,
            sheet=options.get("sheet"),
            skip_rows=int(options.get("skip_rows", 0)),
            uri=uri,
            source=source,
            settings=settings,
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
                settings=settings,
            )
        return read_ndjson(
            data, encoding=options.get("encoding"), uri=uri, source=source, settings=settings
        )
    if fmt == "parquet":
        from relations_etl.readers.columnar import read_parquet

        return read_parquet(data, uri=uri, source=source, settings=settings), None
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


@dataclass(frozen=True)
class Fetched:
    """A source's files read and hashed but not parsed: what tells whether the source changed
    (its content hash) costs reading the bytes only, and parsing waits until it is needed."""

    source: Source
    files: tuple[tuple[str, bytes], ...]
    """(file URI, bytes) of each file, in the order they are combined."""

    @property
    def file(self) -> str:
        """The file the source's rows are named after: its one file, or its URI for several."""
        return self.files[0][0] if len(self.files) == 1 else self.source.uri

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of the one file, or of the files' SHA-256s in order (as `combine`)."""
        hashes = [hashlib.sha256(data).hexdigest() for _, data in self.files]
        if len(hashes) == 1:
            return hashes[0]
        return hashlib.sha256("".join(hashes).encode()).hexdigest()


def fetch(source: Source, settings: Settings | None = None) -> Fetched:
    """Read every file of a source as bytes (the I/O of extract, retried by a flow), unparsed."""
    settings = settings or Settings()
    check_uri(source.name, source.uri, settings.allowed_schemes, source.landing)
    fmt = source.resolved_format
    if fmt == "hsg-visits-xml":
        from relations_etl.readers.hsg_visits import fetch_hsg_visits

        files = tuple(fetch_hsg_visits(source.uri, source.name, settings, source.landing))
        return Fetched(source, files)
    if fmt == "xml":
        from relations_etl.readers.xml import fetch_xml

        return Fetched(source, fetch_xml(source.uri, source.name, settings, source.landing))
    options = source.mapping.options
    read: list[tuple[str, bytes]] = []
    remaining = settings.max_source_bytes  # for all the files of a prefix together
    for file in list_files(source.uri, fmt, source.name, settings, source.storage_options):
        data = read_bytes(
            file,
            source.name,
            settings,
            landing=source.landing,
            limit=remaining,
            screen=text_screen(fmt, options, file, source.name, settings),
            storage_options=source.storage_options,
        )
        remaining -= len(data)
        read.append((file, data))
    return Fetched(source, tuple(read))


def parse(fetched: Fetched, settings: Settings | None = None) -> RawTable:
    """The raw table of fetched bytes (a source of several files as one table)."""
    settings = settings or Settings()
    source = fetched.source
    fmt = source.resolved_format
    if fmt == "hsg-visits-xml":
        from relations_etl.readers.hsg_visits import parse_hsg_file

        tables = [parse_hsg_file(data, f, source.name, settings) for f, data in fetched.files]
        return combine(tables, source.uri)
    if fmt == "xml":
        from relations_etl.readers.xml import parse_xml_files

        tables = parse_xml_files(fetched.files, source.name, source.mapping, settings)
        return combine(tables, source.uri)
    tables = []
    for uri, data in fetched.files:
        options = source.mapping.options
        frame, row_errors = _read_table(data, fmt, options, uri, source.name, settings)
        table = as_text_table(frame, uri, hashlib.sha256(data).hexdigest(), row_errors)
        tables.append(check_fields(table, settings, source.name))
    return combine(tables, source.uri)


class ReadWhole(Exception):
    """The file read in pieces turned out to need reading whole (see `iter_delimited`): what
    was made of the pieces handed out so far is to be dropped and the file read again."""


def parse_pieces(fetched: Fetched, settings: Settings, rows: int) -> Iterator[RawTable] | None:
    """The raw table of a one-file CSV or TSV source in pieces of about `rows` rows (numbered
    as one table), so that a large list is never held parsed in memory; None for a format
    that is read whole. Iterating raises ReadWhole when the file must be read whole."""
    source = fetched.source
    fmt = source.resolved_format
    if fmt not in ("csv", "tsv") or len(fetched.files) != 1:
        return None
    options = source.mapping.options
    ((uri, data),) = fetched.files

    def pieces() -> Iterator[RawTable]:
        first_row = 1
        try:
            for frame in iter_delimited(
                data,
                separator=options.get("separator", "\t" if fmt == "tsv" else ","),
                encoding=options.get("encoding"),
                skip_rows=int(options.get("skip_rows", 0)),
                uri=uri,
                source=source.name,
                settings=settings,
                rows=rows,
            ):
                table = as_text_table(frame, uri, fetched.content_hash, first_row=first_row)
                first_row += frame.height
                yield check_fields(table, settings, source.name)
        except Irregular as exc:
            raise ReadWhole(str(exc)) from exc

    return pieces()


def extract(source: Source, settings: Settings | None = None) -> Iterator[RawTable]:
    """Yield the raw table of a source (a list of several files is read as one table)."""
    yield parse(fetch(source, settings), settings)
