"""JSON and NDJSON: a list of objects; a bad NDJSON line or a non-object record is a row error.

A key repeated in one object is refused as a repeated CSV header is (the parser would keep the
last value and drop the others without a trace). Nesting deeper than the parser can follow, or
an integer longer than Python converts, is the input's fault: a file error for a JSON document,
a row error for one NDJSON line.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import polars as pl

from relations_etl.envelope import RowErrors
from relations_etl.errors import SourceReadError
from relations_etl.limits import byte_series, too_large
from relations_etl.readers.delimited import Irregular, decode, read_up_to
from relations_etl.reasons import Reason
from relations_etl.settings import Settings
from relations_etl.text import shown

_SHOWN = 10_000  # characters of a bad line kept in its row error


@dataclass
class _String:
    """What a string screen carries from one chunk to the next."""

    inside: bool = False  # the chunk before ended inside a string
    size: int = 0  # bytes of that string so far
    line: int = 1  # the line it starts on
    backslashes: int = 0  # backslashes that ended the chunk before (an odd run escapes)
    lines: int = 0  # line ends before this chunk


def string_screen(limit: int, *, uri: str, source: str) -> Callable[[bytes, int], None]:
    """While a JSON or NDJSON file arrives, refuse it at the first string (a value or a key)
    longer than `limit` bytes as written in the file (escapes count as written): a gigabyte
    string costs the limit and one chunk, not the gigabyte and its parsed copies.

    For encodings where a quote and a backslash are one byte each (UTF-8, 8-bit).
    """
    state = _String()

    def breach(line: int) -> SourceReadError:
        return too_large(
            f"a string at line {line}", limit, "max_field_bytes", source=source, file=uri
        )

    def screen(chunk: bytes, offset: int) -> None:
        if len(chunk) > limit or b"\\\\" in chunk or state.backslashes % 2:
            _scan_strings(chunk, state, limit, breach)
            return
        # no backslash follows another here, so a quote is escaped exactly when a backslash
        # stands before it; and no string that starts in this chunk can be over the limit
        # before the chunk ends: only the strings open at its two ends matter
        close = _real_quote(chunk, 0) if state.inside else -1
        opened = _last_real_quote(chunk)
        if close is None or opened is None:
            _scan_strings(chunk, state, limit, breach)
            return
        if state.inside:
            if close < 0:
                state.size += len(chunk)
                if state.size > limit:
                    raise breach(state.line)
                _end(state, chunk)
                return
            if state.size + close > limit:
                raise breach(state.line)
            state.inside = False
        real = chunk.count(b'"', close + 1) - chunk.count(b'\\"', close + 1)
        if real % 2:
            state.inside, state.size = True, len(chunk) - opened - 1
            state.line = state.lines + chunk.count(b"\n", 0, opened) + 1
        _end(state, chunk)

    return screen


_STEPS = 64  # escaped quotes stepped over before a chunk is left to polars


def _real_quote(chunk: bytes, at: int) -> int | None:
    """The first quote from `at` with no backslash before it (-1: none; None: too many)."""
    for _ in range(_STEPS):
        quote = chunk.find(b'"', at)
        if quote <= 0 or chunk[quote - 1] != ord("\\"):
            return quote
        at = quote + 1
    return None


def _last_real_quote(chunk: bytes) -> int | None:
    """The last quote with no backslash before it (-1: none; None: too many to tell)."""
    at = len(chunk)
    for _ in range(_STEPS):
        quote = chunk.rfind(b'"', 0, at)
        if quote <= 0 or chunk[quote - 1] != ord("\\"):
            return quote
        at = quote
    return None


def _end(state: _String, chunk: bytes) -> None:
    trailing = len(chunk) - len(chunk.rstrip(b"\\"))
    state.backslashes = trailing + (state.backslashes if trailing == len(chunk) else 0)
    state.lines += chunk.count(b"\n")


def _scan_strings(
    chunk: bytes, state: _String, limit: int, breach: Callable[[int], Exception]
) -> None:
    """A chunk with escaped quotes (or longer than the limit): every string's bounds, found by
    polars over the chunk's bytes; a quote after an odd run of backslashes is escaped."""
    data = byte_series(chunk)
    slashes = data == ord("\\")
    count = slashes.cum_sum().cast(pl.Int64)
    # the backslashes in the run that ends at each byte: all so far, less those before the run
    before = pl.select(
        pl.when(~slashes).then(count).otherwise(None).forward_fill().fill_null(-state.backslashes)
    ).to_series()
    run = count - before
    quotes = (data == ord('"')).arg_true().cast(pl.Int64)
    preceding = run.gather((quotes - 1).clip(0))
    preceding = pl.select(
        pl.when(quotes == 0).then(pl.lit(state.backslashes)).otherwise(preceding)
    ).to_series()
    real = quotes.filter(preceding % 2 == 0)
    if state.inside:
        if real.len() == 0:
            state.size += len(chunk)
            if state.size > limit:
                raise breach(state.line)
            _end(state, chunk)
            return
        if state.size + int(real[0]) > limit:
            raise breach(state.line)
        real = real.slice(1)
        state.inside = False
    opens, closes = real.gather_every(2), real.gather_every(2, offset=1)
    sizes = closes - opens.head(closes.len()) - 1
    over = (sizes > limit).arg_true()
    if over.len():
        start = int(opens[int(over[0])])
        raise breach(state.lines + chunk.count(b"\n", 0, start) + 1)
    if opens.len() > closes.len():
        opened = int(opens[-1])
        state.inside, state.size = True, len(chunk) - opened - 1
        state.line = state.lines + chunk.count(b"\n", 0, opened) + 1
        if state.size > limit:
            raise breach(state.line)
    _end(state, chunk)


class _RepeatedKeyError(Exception):
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise _RepeatedKeyError(sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
    return record


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_pairs)


def _unreadable(exc: Exception) -> str:
    """Why a JSON text could not be parsed, in words (never its content)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if isinstance(exc, RecursionError):
        return "JSON nested deeper than the parser follows (arrays or objects inside each other)"
    return f"a JSON number too long to convert ({shown(str(exc).split(':')[0], 60, quoted=False)})"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


Problem = dict[str, str | None]


@dataclass
class _Keys:
    """The keys the records of a file offer, in order of appearance, and what was counted."""

    names: dict[str, None] = field(default_factory=dict)
    records: int = 0
    first_problem: Problem | None = None

    def add(self, records: list[Any], problems: list[Problem | None]) -> None:
        for record in records:
            if isinstance(record, dict):
                self.names.update(dict.fromkeys(record))
        self.records += len(records)
        if self.first_problem is None:
            self.first_problem = next((p for p in problems if p), None)

    def check(self, uri: str, source: str, settings: Settings) -> None:
        """Refuse the table these keys make before it is built: records x distinct keys is its
        size, and a file whose every record has keys of its own would otherwise cost its
        square."""
        if len(self.names) > settings.max_columns:
            raise too_large(
                f"the records have more than {settings.max_columns:,} distinct keys",
                settings.max_columns,
                "max_columns",
                unit="columns",
                source=source,
                file=uri,
            )
        if self.records and not self.names:
            first = self.first_problem
            raise SourceReadError(
                "no record holds a JSON object with keys"
                + (f"; first problem: {first['message']}" if first else ""),
                source=source,
                file=uri,
            )
        cells = len(self.names) * self.records
        if cells > settings.max_cells:
            raise too_large(
                f"{self.records:,} records x {len(self.names):,} distinct keys ({cells:,} cells)",
                settings.max_cells,
                "max_cells",
                unit="cells",
                source=source,
                file=uri,
            )


def records_frame(
    records: list[Any],
    problems: list[Problem | None],
    uri: str,
    source: str,
    settings: Settings | None = None,
    *,
    names: Sequence[str] | None = None,
    first: int = 0,
) -> tuple[pl.DataFrame, RowErrors]:
    """Objects to text columns (union of keys, in order of appearance), with per-row errors.

    `names`, when given, are the columns (a later piece of a file, whose keys were counted
    first); `first` is the number of records before these in their file.
    """
    settings = settings or Settings()
    if names is None:
        keys = _Keys()
        keys.add(records, problems)
        keys.check(uri, source, settings)
        names = list(keys.names)
    columns: dict[str, list[str | None]] = {name: [] for name in names}
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        for name, value in record.items():
            column = columns[name]
            if len(column) < number:
                column.extend([None] * (number - len(column)))
            try:
                column.append(_text(value))
            except RecursionError:
                column.append(None)
                problems[number] = {
                    "column": "_row",
                    "check": Reason.JSON_RECORD,
                    "value": None,
                    "message": f"record {first + number + 1}: the value of {shown(name)} nests too "
                    "deeply to be kept as text",
                }
    for column in columns.values():
        column.extend([None] * (len(records) - len(column)))
    frame = pl.DataFrame(columns, schema={name: pl.String for name in names})
    return frame, [[p] if p else [] for p in problems]


def _not_object(record: Any, number: int, where: str) -> dict[str, str | None] | None:
    if isinstance(record, dict):
        return None
    try:
        value = json.dumps(record, ensure_ascii=False)[:_SHOWN]
    except RecursionError:
        value = None
    return {
        "column": "_row",
        "check": Reason.JSON_RECORD,
        "value": value,
        "message": f"{where} {number} is a JSON {type(record).__name__}, not an object",
    }


def _repeated(
    exc: _RepeatedKeyError, uri: str, source: str, line: int | None = None, row: int | None = None
) -> SourceReadError:
    where = f"line {line}: " if line is not None else ""
    return SourceReadError(
        f"{where}a JSON object repeats the key(s) {[shown(k, quoted=False) for k in exc.keys[:10]]}"
        "; the parser would keep the last value and drop the others",
        source=source,
        file=uri,
        row=row,
        column=shown(exc.keys[0], quoted=False),
        hint="Rename or remove the repeated keys in the file (as a repeated CSV header); nothing "
        "was loaded for this source.",
    )


def read_json(
    data: bytes,
    *,
    key: str | None,
    encoding: str | None,
    uri: str,
    source: str,
    settings: Settings | None = None,
) -> tuple[pl.DataFrame, RowErrors]:
    """A JSON document that is a list of objects, or an object holding one under `key`."""
    text = decode(data, encoding, uri=uri, source=source)
    if not text.strip():
        raise SourceReadError("the file is empty", source=source, file=uri)
    try:
        document = _loads(text)
    except _RepeatedKeyError as exc:
        raise _repeated(exc, uri, source) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise SourceReadError(_unreadable(exc), source=source, file=uri) from None
    wanted = key or "records"
    if isinstance(document, dict):
        if not isinstance(document.get(wanted), list):
            raise SourceReadError(
                f"the JSON document is an object without a list under {wanted!r}; its keys are "
                f"{[shown(k, quoted=False) for k in sorted(document)[:20]]}",
                source=source,
                file=uri,
                hint="Set options.records to the key that holds the list of records.",
            )
        document = document[wanted]
    if not isinstance(document, list):
        raise SourceReadError(
            f"the JSON document is a {type(document).__name__}, not a list of records",
            source=source,
            file=uri,
            hint="A JSON source is a list of objects, or an object holding one (options.records).",
        )
    problems = [_not_object(r, n, "record") for n, r in enumerate(document, start=1)]
    return records_frame(document, problems, uri, source, settings)


def _parse_lines(
    text: str, first_line: int, first_row: int, uri: str, source: str
) -> tuple[list[Any], list[Problem | None], int]:
    """The records of NDJSON text whose lines are numbered from `first_line` and records from
    `first_row`: each record (None for a bad line) and its problem; and the lines read."""
    records: list[Any] = []
    problems: list[Problem | None] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        try:
            record = _loads(line)
        except _RepeatedKeyError as exc:
            raise _repeated(exc, uri, source, number, first_row + len(records)) from None
        except (ValueError, RecursionError) as exc:
            records.append(None)
            reason = _unreadable(exc)
            if isinstance(exc, json.JSONDecodeError):
                reason = f"not valid JSON (column {exc.colno}: {exc.msg})"
            problems.append(
                {
                    "column": "_row",
                    "check": Reason.JSON_LINE,
                    "value": line[:_SHOWN],
                    "message": f"line {number} is {reason}",
                }
            )
            continue
        records.append(record)
        problems.append(_not_object(record, number, "line"))
    return records, problems, len(lines)


def _empty(uri: str, source: str) -> SourceReadError:
    return SourceReadError("the file is empty: no JSON lines", source=source, file=uri)


def read_ndjson(
    data: bytes,
    *,
    encoding: str | None,
    uri: str,
    source: str,
    settings: Settings | None = None,
) -> tuple[pl.DataFrame, RowErrors]:
    """One JSON object per line; blank lines are skipped, a bad line becomes a rejected row."""
    text = decode(data, encoding, uri=uri, source=source)
    records, problems, _ = _parse_lines(text, 1, 1, uri, source)
    if not records:
        raise _empty(uri, source)
    return records_frame(records, problems, uri, source, settings)


_UTF8 = ("utf-8", "utf8", "utf-8-sig")


def _text_pieces(handle: BinaryIO, encoding: str | None, rows: int) -> Iterator[str]:
    """A UTF-8 file as text in pieces of about `rows` lines, each cut at a line end; Irregular
    for another encoding or bytes that are not UTF-8 (read whole, `decode` names them)."""
    if (encoding or "utf-8").lower().replace("_", "-") not in _UTF8:
        raise Irregular("not UTF-8")
    sample = handle.read(1 << 16)
    per_line = max(len(sample) // max(sample.count(b"\n"), 1), 1)
    piece = max(rows * per_line, 1 << 16)
    block = sample + read_up_to(handle, piece - len(sample)) + handle.readline()
    block = block[3:] if block.startswith(codecs.BOM_UTF8) else block
    while block:
        try:
            yield block.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Irregular("not UTF-8") from exc
        block = read_up_to(handle, piece) + handle.readline()


def ndjson_keys(
    handle: BinaryIO,
    *,
    encoding: str | None,
    uri: str,
    source: str,
    settings: Settings,
    rows: int,
) -> _Keys:
    """The first of two reads of an NDJSON file read in pieces (`iter_ndjson`): its keys in
    order of appearance, counted and checked as `read_ndjson` checks the whole, so that every
    piece has the same columns as the whole file would; nothing but the keys is kept."""
    keys = _Keys()
    line = row = 1
    for text in _text_pieces(handle, encoding, rows):
        records, problems, lines = _parse_lines(text, line, row, uri, source)
        keys.add(records, problems)
        line, row = line + lines, row + len(records)
    if not keys.records:
        raise _empty(uri, source)
    keys.check(uri, source, settings)
    return keys


def iter_ndjson(
    handle: BinaryIO,
    keys: _Keys,
    *,
    encoding: str | None,
    uri: str,
    source: str,
    settings: Settings,
    rows: int,
) -> Iterator[tuple[pl.DataFrame, RowErrors]]:
    """An NDJSON file in pieces of about `rows` lines, each with the columns of `keys` (from
    `ndjson_keys` on the same file): the rows and errors `read_ndjson` gives, piece by piece.
    Raises Irregular for a file that is not UTF-8 (read it whole)."""
    line, row = 1, 1
    for text in _text_pieces(handle, encoding, rows):
        records, problems, lines = _parse_lines(text, line, row, uri, source)
        line = line + lines
        if records:
            yield records_frame(
                records, problems, uri, source, settings, names=list(keys.names), first=row - 1
            )
        row += len(records)
