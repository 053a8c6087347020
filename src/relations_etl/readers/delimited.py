"""CSV and TSV: strict decoding, checked headers, and ragged lines kept as rejected rows.

polars reads a well-formed file fast; a file whose lines do not all have the header's number of
fields (or that quotes across lines) is read by Python's csv module instead, which says which
line is wrong. A wrong field count is a row error, not a file error.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import polars as pl

from relations_etl.envelope import RowErrors
from relations_etl.errors import ConfigError, SourceReadError
from relations_etl.limits import byte_series, too_large
from relations_etl.reasons import Reason
from relations_etl.settings import Settings
from relations_etl.text import shown

_QUOTED = r'"(?:[^"]|"")*"'


def decode(
    data: bytes,
    encoding: str | None,
    *,
    uri: str,
    source: str,
    skip_lines: int = 0,
    separator: str | None = None,
) -> str:
    """Bytes to text: UTF-8 (a BOM is dropped) unless `encoding` says otherwise; never lossy
    unless asked (`utf8-lossy`); an undecodable byte is named by line and column."""
    name = (encoding or "utf-8").lower().replace("_", "-")
    errors = "strict"
    if name in ("utf8-lossy", "utf-8-lossy"):
        name, errors = "utf-8", "replace"
    try:
        codec = codecs.lookup(name).name
    except LookupError as exc:
        raise ConfigError(
            f"unknown encoding {encoding!r} in options.encoding", source=source, file=uri
        ) from exc
    if codec == "utf-8":
        codec = "utf-8-sig"
    try:
        return data.decode(codec, errors)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        prefix = data[line_start : exc.start].decode(codec, "replace")
        field = _field_at(data, prefix, separator, skip_lines) if separator is not None else None
        raise SourceReadError(
            f"byte 0x{data[exc.start]:02X} at line {line}, character {len(prefix) + 1} is not "
            f"{codec.removesuffix('-sig').upper()}",
            source=source,
            file=uri,
            row=max(line - 1 - skip_lines, 0) or None,
            column=field,
            hint="Set options.encoding in the mapping to the file's encoding (cp1251 for "
            "Windows Cyrillic, latin-1 for Western European lists); nothing was loaded.",
        ) from exc


def _field_at(data: bytes, prefix: str, separator: str, skip_lines: int) -> str | None:
    """The header name of the field a line prefix ends in (None when it cannot be told)."""
    header_line = data.split(b"\n", skip_lines + 1)[skip_lines : skip_lines + 1]
    if not header_line:
        return None
    header = next(
        csv.reader(
            [header_line[0].decode("utf-8", "replace").strip("\r\ufeff")], delimiter=separator
        ),
        [],
    )
    position = len(next(csv.reader([prefix], delimiter=separator), [""])) - 1
    return shown(header[position], quoted=False) if 0 <= position < len(header) else None


@dataclass
class _Open:
    """What a field screen carries from one chunk to the next: the field still open."""

    quoted: int = 0  # quotes seen so far, modulo 2: 1 inside a quoted field
    size: int = 0  # bytes of the open field so far
    quotes: int = 0  # quote characters among them
    line: int = 1  # the line it starts on
    column: int = 0  # its position in its line (0: the first field)
    lines: int = 0  # line ends before this chunk


def field_screen(
    separator: str, limit: int, *, uri: str, source: str, skip_lines: int = 0
) -> Callable[[bytes, int], None] | None:
    """While a CSV or TSV file arrives, refuse it at the first field longer than `limit` bytes:
    a gigabyte field costs the limit (and one chunk), not the gigabyte, nor its text and table.

    For encodings where a separator, quote and line end are one byte each (UTF-8, 8-bit); a
    field's size counts a doubled quote once and its enclosing quotes as one byte. None when
    the separator is not one byte.
    """
    sep = separator.encode("utf-8")
    if len(sep) != 1:
        return None
    state = _Open()
    # the file's first bytes, up to the header's line end, for its names: a network read can
    # end inside the header line, so one chunk may not hold all of it. A header of many short
    # names can be longer than one field may be: kept up to a MiB past the limit
    head = bytearray()
    keep = limit + (1 << 20)

    def breach(line: int, column: int) -> SourceReadError:
        row = line - 1 - skip_lines
        # a field of the header (or above it) is itself the name: not repeated
        known = row > 0 and column >= 0
        name = _header_name(bytes(head), separator, skip_lines, column) if known else None
        return too_large(
            f"a field at line {line}" + (f" ({shown(name)})" if name else ""),
            limit,
            "max_field_bytes",
            source=source,
            file=uri,
            row=row if row > 0 else None,
            column=shown(name, quoted=False) if name else None,
        )

    endings = (sep, b"\n", b"\r")

    head_read = False  # once it holds the header line (or the limit): counted once a chunk

    def screen(chunk: bytes, offset: int) -> None:
        nonlocal head_read
        if not head_read:
            head.extend(chunk[: keep - len(head)])
            head_read = len(head) >= keep or head.count(b"\n") > skip_lines
        if len(chunk) > limit:  # a field inside this chunk may be longer (a low limit)
            _scan(chunk, state, limit, breach, sep[0])
            return
        # no field that starts in this chunk can be over the limit before the chunk ends: only
        # where the open field ends matters, and where the one left open starts (found with
        # C-speed searches, walking from quote to quote near the ends of the chunk)
        first = _first_end(chunk, state.quoted, endings)
        quotes = chunk.count(b'"')  # each count is a pass over the chunk: once each
        quoted = (state.quoted + quotes) % 2
        last = _last_end(chunk, quoted, endings)
        line_end = _last_end(chunk, quoted, endings[1:])
        if first is None or last is None or line_end is None:
            _scan(chunk, state, limit, breach, sep[0])
            return
        if first < 0:
            _carry(state, chunk, 0, limit, breach, quotes)
            return
        if state.size + first - (state.quotes + chunk.count(b'"', 0, first)) // 2 > limit:
            raise breach(state.line, state.column)
        # the open field's column: counted from its line's start, else on from the last chunk's
        if line_end >= 0:
            column = _fields_ended(chunk[line_end + 1 : last + 1], separator)
        elif state.column < 0:
            column = -1
        elif not quotes:
            column = state.column + chunk.count(sep)
        else:
            ended = _fields_ended(chunk[first + 1 : last + 1], separator)
            column = state.column + 1 + ended if ended >= 0 else -1
        lines = _close(state, chunk, last, column)
        _carry(state, chunk, last + 1, limit, breach, quotes, lines)

    return screen


# quotes a walk from one end of a chunk steps over before it leaves the chunk to polars (a chunk
# thick with quotes: each step is a Python iteration)
_STEPS = 64


def _first_end(chunk: bytes, quoted: int, endings: tuple[bytes, ...]) -> int | None:
    """Where the first field end outside quotes is in `chunk` (-1: none; None: too many quotes
    to tell quickly), `quoted`: whether the chunk starts inside quotes."""
    at, end = 0, -2
    for _ in range(_STEPS):
        quote = chunk.find(b'"', at)
        if not quoted:
            if end != -1 and end < at:  # each search starts after the last: linear in all
                end = min((e for e in (chunk.find(x, at) for x in endings) if e >= 0), default=-1)
            if end >= 0 and (quote < 0 or end < quote):
                return end
        if quote < 0:
            return -1
        quoted, at = 1 - quoted, quote + 1
    return None


def _last_end(chunk: bytes, quoted: int, endings: tuple[bytes, ...]) -> int | None:
    """Where the last field end outside quotes is in `chunk` (-1: none; None: too many quotes
    to tell quickly), `quoted`: whether the chunk ends inside quotes."""
    at, end = len(chunk), len(chunk)
    for _ in range(_STEPS):
        quote = chunk.rfind(b'"', 0, at)
        if not quoted:
            if end >= at:
                end = max(chunk.rfind(x, 0, at) for x in endings)
            if end > quote:
                return end
        if quote < 0:
            return -1
        quoted, at = 1 - quoted, quote
    return None


def _fields_ended(text: bytes, separator: str) -> int:
    """How many fields a piece of a line (starting outside quotes) ends; -1: cannot tell."""
    if not text:
        return 0
    try:
        return len(next(csv.reader([text.decode("utf-8", "replace")], delimiter=separator))) - 1
    except (csv.Error, StopIteration):
        return -1


def _close(state: _Open, chunk: bytes, last: int, column: int) -> int:
    """The field open before this chunk has ended; the one open now starts after `last`.
    Returns the line ends in chunk[: last + 1]."""
    lines = chunk.count(b"\n", 0, last + 1)
    state.line = state.lines + lines + 1
    state.column = column
    state.size = state.quotes = 0
    return lines


def _carry(
    state: _Open,
    chunk: bytes,
    start: int,
    limit: int,
    breach: Callable[[int, int], Exception],
    quotes: int | None = None,
    lines_before: int = 0,
) -> None:
    """chunk[start:] is the open field's; refuse once the field is over the limit. `quotes`,
    when known, counts the chunk's quotes, and `lines_before` its line ends before `start`."""
    state.size += len(chunk) - start
    state.quotes += chunk.count(b'"', start)
    if state.size - state.quotes // 2 > limit:
        raise breach(state.line, state.column)
    state.quoted = (state.quoted + (chunk.count(b'"') if quotes is None else quotes)) % 2
    state.lines += lines_before + chunk.count(b"\n", start)


def _scan(
    chunk: bytes, state: _Open, limit: int, breach: Callable[[int, int], Exception], sep: int
) -> None:
    """A chunk with quotes (or longer than the limit): where each field ends, found by polars
    over the chunk's bytes; a quote toggles quoting (a doubled one toggles it twice)."""
    data = byte_series(chunk)
    quotes = (data == ord('"')).cum_sum().cast(pl.Int64)
    outside = (quotes + state.quoted) % 2 == 0
    ending = (data == sep) | (data == ord("\n")) | (data == ord("\r"))
    ends = (ending & outside).arg_true().cast(pl.Int64)
    if ends.len() == 0:
        _carry(state, chunk, 0, limit, breach)
        return
    at_ends = quotes.gather(ends)
    if state.size + int(ends[0]) - (state.quotes + int(at_ends[0])) // 2 > limit:
        raise breach(state.line, state.column)
    newline = data.gather(ends) != sep
    if len(chunk) > limit:
        # each field ended in this chunk: its bytes, less half its quotes
        sizes = (ends - ends.shift(1, fill_value=-1) - 1) - (
            at_ends - at_ends.shift(1, fill_value=0)
        ) // 2
        over = (sizes.slice(1) > limit).arg_true()
        if over.len():
            j = int(over[0]) + 1
            line = state.lines + chunk.count(b"\n", 0, int(ends[j - 1]) + 1) + 1
            raise breach(line, _column(newline, j, state.column))
    last = int(ends[-1])
    lines = _close(state, chunk, last, _column(newline, ends.len(), state.column))
    _carry(state, chunk, last + 1, limit, breach, lines_before=lines)


def _column(newline: pl.Series, j: int, column: int) -> int:
    """The position in its line of the field after end number `j - 1` of a chunk."""
    before = newline.head(j).arg_true()
    if before.len():
        return j - int(before[-1]) - 1
    return column + j if column >= 0 else -1


def _header_name(head: bytes, separator: str, skip_lines: int, column: int) -> str | None:
    """The name of column `column` in the header line, if `head` holds all of it."""
    lines = head.split(b"\n", skip_lines + 1)
    if len(lines) <= skip_lines + 1:
        return None
    text = lines[skip_lines].decode("utf-8", "replace").strip("\r\ufeff")
    header = next(csv.reader([text], delimiter=separator), [])
    return header[column].strip() if 0 <= column < len(header) else None


def _text(value: str) -> str | None:
    return value if value != "" else None


def _header(fields: list[str], uri: str, source: str, line: int, max_columns: int) -> list[str]:
    if len(fields) > max_columns:
        raise too_large(
            f"the header (line {line}) has {len(fields):,} columns",
            max_columns,
            "max_columns",
            unit="columns",
            source=source,
            file=uri,
        )
    names = [f.strip() or f"column_{n}" for n, f in enumerate(fields, start=1)]
    # counted once: names.count() per name was quadratic (1,000,000 columns never finished)
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        positions: dict[str, list[int]] = {name: [] for name in repeated}
        for position, name in enumerate(names, start=1):
            if name in positions:
                positions[name].append(position)
        raise SourceReadError(
            f"header (line {line}) repeats column name(s) "
            + ", ".join(f"{shown(n)} at positions {positions[n][:10]}" for n in repeated[:10]),
            source=source,
            file=uri,
            column=shown(repeated[0], quoted=False),
            hint="Rename the repeated columns in the file; a mapping cannot tell them apart.",
        )
    return names


def _lines(data: bytes) -> pl.Series | None:
    """The lines of UTF-8 `data`, `\n`-separated, read by polars' CSV reader (on every core,
    without making a Python string of each line) as one column: no quoting and NUL as the
    separator. None when a line holds a NUL or polars reads no line; blank lines may be left
    out."""
    if b"\x00" in data:
        return None
    try:
        return pl.read_csv(
            io.BytesIO(data),
            separator="\x00",
            quote_char=None,
            has_header=False,
            infer_schema=False,
            new_columns=["line"],
        ).to_series()
    except pl.exceptions.NoDataError:  # nothing but line ends
        return None


def _regular(data: bytes, separator: str, width: int, body: str | None = None) -> bool:
    """True when every line of UTF-8 `data` has exactly the header's field count, no field
    spans lines, and polars reads each line as the csv module does. `body`, when given, is
    `data` as text (else decoded only if polars cannot read the lines: a NUL in them, or a NUL
    separator). Raises UnicodeDecodeError or polars' ComputeError for bytes that are not UTF-8."""
    if data.startswith(codecs.BOM_UTF8):  # a line's U+FEFF, which polars would drop as a BOM
        return False
    lines = _lines(data) if separator != "\x00" else None
    if lines is None:
        text = data.decode("utf-8") if body is None else body
        lines = pl.Series(text.split("\n"), dtype=pl.String)
    # only the lines that hold a quote pay for the quoting check: every field whole, quoted from
    # its start to its end or holding no quote (polars reads `"a"b` or an unclosed quote
    # leniently, where the csv module refuses them), then counted with quoted fields taken out
    has_quote = lines.str.contains('"', literal=True)
    quoted = lines.filter(has_quote)
    sep = f"\\x{{{ord(separator):x}}}"
    field = f'(?:{_QUOTED}|[^"{sep}]*)'
    if not bool(quoted.str.contains(f"^{field}(?:{sep}{field})*$").all()):
        return False
    unquoted = lines.filter(~has_quote)
    off = unquoted.filter(unquoted.str.count_matches(separator, literal=True) + 1 != width)
    # only an empty line is blank: one of spaces is a short row (polars would pad it with nulls)
    if off.len() and not bool((off == "").all()):
        return False
    # a line with a quote is never blank, even when its quoted fields were all it held
    fields = quoted.str.replace_all(_QUOTED, "").str.count_matches(separator, literal=True) + 1
    return not bool((fields != width).any())


def _read_regular(
    data: bytes, separator: str, header: list[str], *, has_header: bool
) -> pl.DataFrame:
    """Polars' reading of lines `_regular` passed, as the csv module reads them: a quoted empty
    field is empty, and a line of nothing (blank, or separators only) is not a record."""
    frame = pl.read_csv(
        io.BytesIO(data),
        separator=separator,
        has_header=has_header,
        infer_schema=False,
        new_columns=header,
        truncate_ragged_lines=False,
    )
    if b'""' in data:
        frame = frame.with_columns(pl.all().replace("", None))
    return frame.filter(~pl.all_horizontal(pl.all().is_null()))


def read_delimited(
    data: bytes,
    *,
    separator: str,
    encoding: str | None,
    skip_rows: int,
    uri: str,
    source: str,
    settings: Settings | None = None,
) -> tuple[pl.DataFrame, RowErrors | None]:
    """Read a delimited file as text columns; returns the rows and, per row, its read errors."""
    settings = settings or Settings()
    # the csv module refuses a longer field itself (its cap is process-wide, so set per read)
    csv.field_size_limit(settings.max_field_bytes)
    text = decode(data, encoding, uri=uri, source=source, skip_lines=skip_rows, separator=separator)
    if "\r" in text:  # \r\n, \n and a lone \r (old Mac exports) may all end a line
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n", skip_rows)
    body = lines[-1] if len(lines) > skip_rows else ""
    offset = skip_rows  # lines before the header
    while body.startswith("\n"):
        body, offset = body[1:], offset + 1
    if not body.strip():
        raise SourceReadError(
            "the file is empty: no header and no rows",
            source=source,
            file=uri,
            hint="Check the export that wrote it; nothing was loaded for this source.",
        )
    reader = csv.reader(io.StringIO(body), delimiter=separator, strict=True)
    try:
        header = _header(next(reader), uri, source, offset + 1, settings.max_columns)
    except csv.Error as exc:
        _field_too_large(exc, settings, uri, source, None)
        raise SourceReadError(
            f"the header (line {offset + 1}) is not valid CSV: {exc}", source=source, file=uri
        ) from exc
    header_lines = reader.line_num
    width = len(header)
    data = body.encode("utf-8")  # the check's lines and the read, from the same bytes
    if _regular(data, separator, width, body):
        try:
            return _read_regular(data, separator, header, has_header=True), None
        except pl.exceptions.PolarsError:
            pass  # the csv module below says which line is wrong
    del data  # not held while the csv module reads the text row by row
    return _read_slowly(reader, header, header_lines, offset, uri, source, settings)


class Irregular(Exception):
    """The file is not of the well-formed UTF-8 kind read in pieces: read it whole instead
    (`read_delimited`, which says what is wrong with it, if anything)."""


_UTF8 = ("utf-8", "utf8", "utf-8-sig")


def iter_delimited(
    data: bytes | BinaryIO,
    *,
    separator: str,
    encoding: str | None,
    skip_rows: int,
    uri: str,
    source: str,
    settings: Settings,
    rows: int,
) -> Iterator[pl.DataFrame]:
    """Read a well-formed UTF-8 delimited file in pieces of about `rows` rows, each cut at a
    line end, as `read_delimited` would read the whole (text columns, blank lines dropped).
    `data` is the file's bytes or, so that memory holds one piece and never the file, the file
    itself, read a piece at a time.

    Raises Irregular, before or between pieces, for anything else: another encoding, a lone
    carriage return, a line with another field count or a field spanning lines, bytes that
    are not UTF-8, an empty file. The caller then reads the file whole.
    """
    if (encoding or "utf-8").lower().replace("_", "-") not in _UTF8:
        raise Irregular("not UTF-8")
    handle = io.BytesIO(data) if isinstance(data, bytes) else data
    line = handle.readline()
    line = line[3:] if line.startswith(codecs.BOM_UTF8) else line
    for _ in range(skip_rows):
        if not line.endswith(b"\n"):
            raise Irregular("no header")
        _no_lone_return(line)
        line = handle.readline()
    while line in (b"\n", b"\r\n"):
        line = handle.readline()
    _no_lone_return(line)
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise Irregular("not UTF-8") from exc
    if not text.strip() or text.count('"') % 2:
        raise Irregular("no header, or one spanning lines")
    try:
        fields = next(csv.reader([text], delimiter=separator, strict=True))
    except csv.Error as exc:  # read whole, it is refused naming its line
        raise Irregular(f"the header is not valid CSV: {exc}") from exc
    header = _header(fields, uri, source, skip_rows + 1, settings.max_columns)
    sample = handle.read(1 << 16)
    if not sample:  # a header and no rows
        yield pl.DataFrame(schema={name: pl.String for name in header})
        return
    per_row = max(len(sample) // max(sample.count(b"\n"), 1), 1)
    piece = max(rows * per_row, 1 << 16)
    # each piece ends at a line end (or the file's end): a line, and a character, is never cut
    block = sample + read_up_to(handle, piece - len(sample)) + handle.readline()
    while block:
        _no_lone_return(block)
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
        try:  # polars reads the lines strictly as UTF-8: no text of the block is made
            regular = _regular(block, separator, len(header))
        except (UnicodeDecodeError, pl.exceptions.ComputeError) as exc:
            raise Irregular("not UTF-8") from exc
        if not regular:
            raise Irregular("ragged lines")
        try:  # strict UTF-8, so the same bytes as the text checked
            frame = _read_regular(block, separator, header, has_header=False)
        except pl.exceptions.PolarsError as exc:
            raise Irregular(str(exc)) from exc
        yield frame
        block = read_up_to(handle, piece) + handle.readline()


def read_up_to(handle: BinaryIO, size: int) -> bytes:
    """At most `size` bytes, read a chunk at a time: a read of `size` at once reserves `size`
    (the estimate of a file whose first lines are long can be gigabytes) before the file's end
    says how much there is."""
    parts: list[bytes] = []
    while size > 0 and (chunk := handle.read(min(size, 1 << 20))):
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _no_lone_return(data: bytes) -> None:
    """A carriage return only before a line feed (read_delimited takes a lone one as a line
    end, as old Mac exports have it)."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        raise Irregular("a lone carriage return")


def _field_too_large(
    exc: csv.Error, settings: Settings, uri: str, source: str, row: int | None
) -> None:
    if "field larger than field limit" in str(exc):
        raise too_large(
            "a field", settings.max_field_bytes, "max_field_bytes", source=source, file=uri, row=row
        ) from exc


def _read_slowly(
    reader: Any,
    header: list[str],
    header_lines: int,
    offset: int,
    uri: str,
    source: str,
    settings: Settings,
) -> tuple[pl.DataFrame, RowErrors]:
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    errors: RowErrors = []
    line = header_lines
    while True:
        start = offset + line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            _field_too_large(exc, settings, uri, source, len(errors) + 1)
            raise SourceReadError(
                f"line {start}: {exc}: a quote is opened and never closed, or stands inside an "
                "unquoted field",
                source=source,
                file=uri,
                row=len(errors) + 1,
                hint="Fix the quoting in the file (a quote inside a field is written twice: "
                '""); nothing was loaded for this source.',
            ) from exc
        line = reader.line_num
        if not any(fields):
            continue
        problems: list[dict[str, str | None]] = []
        if len(fields) != width:
            problems.append(
                {
                    "column": "_row",
                    "check": Reason.FIELD_COUNT,
                    "value": json.dumps(fields, ensure_ascii=False),
                    "message": f"row {len(errors) + 1} (line {start}) has {len(fields)} "
                    f"field(s), the header has {width}",
                }
            )
        padded = [*fields[:width], *[""] * (width - len(fields))]
        for column, value in zip(columns, padded, strict=True):
            column.append(_text(value))
        errors.append(problems)
    frame = pl.DataFrame(
        dict(zip(header, columns, strict=True)), schema={name: pl.String for name in header}
    )
    return frame, errors
