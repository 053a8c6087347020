"""Extract: read a raw list through fsspec into text tables with file hashes and row numbers.

`fetch` hashes a source's files without holding them (see fetch.py); `parse` and `parse_pieces`
read them again from disk, verified against those hashes, when the source is transformed.

A file that cannot be read at all fails its source with a SourceReadError naming the file and,
where known, the row and column; a row that cannot be read (a ragged CSV line, a bad NDJSON
line) is kept with its read errors in `_row_errors` and ends in the quarantine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

import polars as pl

from relations_etl.compressed import advice, by_content
from relations_etl.config import Source, check_uri
from relations_etl.envelope import RowErrors
from relations_etl.errors import SourceReadError
from relations_etl.fetch import (
    FetchedFile,
    Screen,
    Spool,
    changed_after_hashing,
    fetch_file,
    fetch_files,
    list_files,
    open_hashed,
)
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
        packed = by_content(chunk) if offset == 0 else None
        if packed is not None:  # its first bytes, not text: the NUL message would mislead
            raise SourceReadError(
                f"the file is {packed[0]}-compressed (its first bytes), not {fmt} text",
                source=source,
                file=uri,
                hint=advice(*packed),
            )
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
    """A source's files hashed but not parsed: what tells whether the source changed (its
    content hash) costs one streaming read of the bytes, and parsing waits until it is needed.

    It holds no bytes: each file is named where it can be read again on this machine (a local
    file in place, a remote one as a copy in `spool`), and parsing it checks that it still has
    the bytes hashed (`fetch.open_hashed`). Close it (`close()`, or `with fetch(...) as f:`)
    when the source is done to remove the copies; `pipeline.run_source` does.
    """

    source: Source
    files: tuple[FetchedFile, ...]
    """Each file's URI, where it is, its size and SHA-256, in the order they are combined."""
    spool: Spool | None = None
    """The temporary folder of the remote files' copies (None: every file is local)."""

    @property
    def file(self) -> str:
        """The file the source's rows are named after: its one file, or its URI for several."""
        return self.files[0].uri if len(self.files) == 1 else self.source.uri

    @property
    def content_hash(self) -> str:
        """SHA-256 of the one file, or of the files' SHA-256s in order (as `combine`)."""
        if len(self.files) == 1:
            return self.files[0].sha256
        return hashlib.sha256("".join(f.sha256 for f in self.files).encode()).hexdigest()

    def open(self, file: FetchedFile) -> contextlib.AbstractContextManager[BinaryIO]:
        """Read one of the files again, verified against its hash (see `fetch.open_hashed`)."""
        return open_hashed(file, self.source.name)

    def read(self, file: FetchedFile) -> bytes:
        """One of the files whole (for a format that is parsed whole), verified."""
        with self.open(file) as handle:
            return handle.read()

    def close(self) -> None:
        """Remove the copies of remote files (local files are left alone); the hashes stay."""
        if self.spool is not None:
            self.spool.remove()

    def __enter__(self) -> Fetched:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def fetch(source: Source, settings: Settings | None = None) -> Fetched:
    """Hash every file of a source (the I/O of extract, retried by a flow), unparsed; remote
    files are copied to a spool folder on the way (see `Fetched`)."""
    settings = settings or Settings()
    check_uri(source.name, source.uri, settings.allowed_schemes, source.landing)
    fmt = source.resolved_format
    if fmt == "hsg-visits-xml":
        from relations_etl.readers.hsg_visits import decade_files

        uris = decade_files(source.uri, source.name, source.landing)
    elif fmt == "xml":
        from relations_etl.readers.xml import source_files

        uris = source_files(source.uri, source.name, source.landing)
    else:
        uris = list_files(source.uri, fmt, source.name, settings, source.storage_options)
    options = source.mapping.options
    files, spool = fetch_files(
        uris,
        source.name,
        settings,
        landing=source.landing,
        screen=lambda file: text_screen(fmt, options, file, source.name, settings),
        storage_options=source.storage_options,
    )
    return Fetched(source, files, spool)


def refetch(fetched: Fetched, settings: Settings) -> Fetched:
    """A Fetched whose remote copies were made elsewhere (another worker) or removed, with
    those copies fetched again here (a copy still in place is read as it is), each required to
    have the bytes hashed the first time (else the transient error of a file changed after it
    was hashed); local files are read in place as before. Close it when done."""
    source = fetched.source
    fmt = source.resolved_format
    spool = Spool()
    files = []
    try:
        for file in fetched.files:
            if file.stamp is not None or os.path.exists(file.path):
                files.append(file)  # read in place, still verified against the hash
                continue
            again = fetch_file(
                file.uri,
                source.name,
                settings,
                spool=spool,
                landing=source.landing,
                screen=text_screen(fmt, source.mapping.options, file.uri, source.name, settings),
                storage_options=source.storage_options,
            )
            if again.sha256 != file.sha256:
                raise changed_after_hashing(file, source.name, "fetched again, other bytes")
            files.append(again)
    except BaseException:
        spool.remove()
        raise
    return Fetched(source, tuple(files), spool)


def parse(fetched: Fetched, settings: Settings | None = None) -> RawTable:
    """The raw table of fetched files (a source of several files as one table)."""
    settings = settings or Settings()
    source = fetched.source
    fmt = source.resolved_format
    tables = []
    if fmt in ("hsg-visits-xml", "xml"):
        from relations_etl.readers import hsg_visits
        from relations_etl.readers.xml import mapping_spec, parse_xml_file

        record, paths, discover = (
            (hsg_visits.RECORD, list(hsg_visits.FIELDS), False)
            if fmt == "hsg-visits-xml"
            else mapping_spec(source.mapping, source.name)
        )
        for file in fetched.files:
            with fetched.open(file) as handle:  # read element by element, never whole
                table = parse_xml_file(
                    handle,
                    file.uri,
                    source.name,
                    settings,
                    record=record,
                    paths=paths,
                    discover=discover,
                    content_hash=file.sha256,
                )
            tables.append(table)
        return combine(tables, source.uri)
    for file in fetched.files:
        options = source.mapping.options
        data = fetched.read(file)
        frame, row_errors = _read_table(data, fmt, options, file.uri, source.name, settings)
        del data
        table = as_text_table(frame, file.uri, file.sha256, row_errors)
        tables.append(check_fields(table, settings, source.name))
    return combine(tables, source.uri)


class ReadWhole(Exception):
    """The file read in pieces turned out to need reading whole (see `iter_delimited`): what
    was made of the pieces handed out so far is to be dropped and the file read again."""


def parse_pieces(fetched: Fetched, settings: Settings, rows: int) -> Iterator[RawTable] | None:
    """The raw table of a one-file CSV, TSV or NDJSON source in pieces of about `rows` rows
    (numbered as one table), so that a large list is never held parsed in memory; None for a
    format that is read whole. Iterating raises ReadWhole when the file must be read whole.
    An NDJSON file is read twice: its keys first, so that every piece has the whole file's
    columns, in the same order."""
    source = fetched.source
    fmt = source.resolved_format
    if fmt not in ("csv", "tsv", "ndjson") or len(fetched.files) != 1:
        return None
    options = source.mapping.options
    (file,) = fetched.files
    uri = file.uri

    def pieces() -> Iterator[RawTable]:
        try:
            if fmt == "ndjson":
                yield from _ndjson_pieces()
                return
            with fetched.open(file) as handle:
                yield from _pieces(handle)
        except Irregular as exc:
            raise ReadWhole(str(exc)) from exc

    def _ndjson_pieces() -> Iterator[RawTable]:
        from relations_etl.readers.records import iter_ndjson, ndjson_keys

        where: dict[str, Any] = {
            "encoding": options.get("encoding"),
            "uri": uri,
            "source": source.name,
            "settings": settings,
            "rows": rows,
        }
        with fetched.open(file) as handle:  # the keys first: every piece gets the same columns
            keys = ndjson_keys(handle, **where)
        first_row = 1
        with fetched.open(file) as handle:
            for frame, errors in iter_ndjson(handle, keys, **where):
                table = as_text_table(frame, uri, file.sha256, errors, first_row=first_row)
                first_row += frame.height
                yield check_fields(table, settings, source.name)

    def _pieces(handle: BinaryIO) -> Iterator[RawTable]:
        first_row = 1
        for frame in iter_delimited(
            handle,
            separator=options.get("separator", "\t" if fmt == "tsv" else ","),
            encoding=options.get("encoding"),
            skip_rows=int(options.get("skip_rows", 0)),
            uri=uri,
            source=source.name,
            settings=settings,
            rows=rows,
        ):
            table = as_text_table(frame, uri, file.sha256, first_row=first_row)
            first_row += frame.height
            yield check_fields(table, settings, source.name)

    return pieces()


def extract(source: Source, settings: Settings | None = None) -> Iterator[RawTable]:
    """Yield the raw table of a source (a list of several files is read as one table)."""
    with fetch(source, settings) as fetched:
        yield parse(fetched, settings)
