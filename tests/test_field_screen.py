"""Field sizes are checked while a file arrives: a CSV field or a JSON string longer than
max_field_bytes stops the read at the limit (and one chunk), whatever the chunking, with the
answer a whole parse would give."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable, Iterator

import pytest

from relations_etl.errors import LimitError
from relations_etl.readers.delimited import field_screen
from relations_etl.readers.records import string_screen

Screen = Callable[[bytes, int], None]
CHUNK = 1 << 20


def _feed(screen: Screen, chunks: Iterator[bytes]) -> int:
    """Send the chunks to the screen until it refuses; the bytes it took."""
    taken = 0
    for chunk in chunks:
        taken += len(chunk)
        screen(chunk, taken - len(chunk))
    return taken


def _cut(data: bytes, size: int) -> Iterator[bytes]:
    return (data[at : at + size] for at in range(0, len(data), size))


def _refused(screen: Screen, data: bytes, size: int) -> bool:
    try:
        _feed(screen, _cut(data, size))
    except LimitError:
        return True
    return False


def _csv_screen(limit: int) -> Screen:
    screen = field_screen(",", limit, uri="list.csv", source="s")
    assert screen is not None
    return screen


def test_a_csv_field_is_refused_exactly_when_it_is_over_the_limit() -> None:
    rng = random.Random(7)
    for _ in range(1500):
        rows = [["h1", "h2"]] + [
            ["".join(rng.choice('ab,"\né') for _ in range(rng.randint(0, 9))) for _ in "12"]
            for _ in range(rng.randint(1, 4))
        ]
        text = io.StringIO()
        csv.writer(text, lineterminator=rng.choice(["\n", "\r\n"])).writerows(rows)
        data = text.getvalue().encode("utf-8")
        limit = rng.randint(1, 12)
        # a quoted field counts its value and one byte for its quotes
        longest = max(
            len(v.encode("utf-8")) + any(c in v for c in ',"\n') for row in rows for v in row
        )
        for size in (rng.randint(1, 15), len(data) + 1):
            assert _refused(_csv_screen(limit), data, size) == (longest > limit), (data, size)


def test_a_json_string_is_refused_exactly_when_it_is_over_the_limit() -> None:
    rng = random.Random(8)
    for _ in range(1500):

        def value() -> str:
            return "".join(rng.choice('a\\"\né/') for _ in range(rng.randint(0, 8)))

        document = [{value(): value(), "k": [value(), 1]} for _ in range(rng.randint(1, 3))]
        text = json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        data = text.encode("utf-8")
        limit = rng.randint(1, 14)
        # a string as the file writes it, escapes included, between its quotes
        longest = max(len(m.group(0).encode()) - 2 for m in re.finditer(r'"(?:[^"\\]|\\.)*"', text))
        for size in (rng.randint(1, 12), len(data) + 1):
            screen = string_screen(limit, uri="list.json", source="s")
            assert _refused(screen, data, size) == (longest > limit), (data, size)


def _endless(head: bytes, repeated: bytes) -> Iterator[bytes]:
    """`head`, then chunks of `repeated` without end (never held as one big bytes object)."""
    yield head
    chunk = repeated * (CHUNK // len(repeated))
    while True:
        yield chunk


@pytest.mark.parametrize(
    "repeated", [b"x", b'x,\n""'], ids=["plain", "quoted: separators, line ends, quotes"]
)
def test_an_endless_csv_field_costs_the_limit_not_the_field(repeated: bytes) -> None:
    limit = 4 * CHUNK
    taken: list[int] = []
    head = b'id,notes\n1,"' if repeated.endswith(b'"') else b"id,notes\n1,"

    def counted() -> Iterator[bytes]:
        for chunk in _endless(head, repeated):
            taken.append(len(chunk))
            yield chunk

    with pytest.raises(LimitError) as refused:
        _feed(_csv_screen(limit), counted())
    assert (refused.value.row, refused.value.column) == (1, "notes")
    assert "a field at line 2 ('notes'), over the limit of 4 MiB" in str(refused.value)
    # the limit and a chunk, not the field (a doubled quote is one byte of the field: the
    # quoted one takes 5 bytes of the file for 4 of the field)
    assert (
        sum(taken)
        <= limit * len(repeated) / (len(repeated) - repeated.count(b'"') // 2) + 2 * CHUNK
    )


def test_many_small_fields_are_never_refused() -> None:
    chunks = _endless(b"id,notes\n1,", b'x,"y",\n')
    assert _feed(_csv_screen(4 * CHUNK), (next(chunks) for _ in range(64))) > 60 * CHUNK


@pytest.mark.parametrize("repeated", [b"x", b'\\"\\\\'], ids=["plain", "escapes"])
def test_an_endless_json_string_costs_the_limit_not_the_string(repeated: bytes) -> None:
    limit = 4 * CHUNK
    taken: list[int] = []

    def counted() -> Iterator[bytes]:
        for chunk in _endless(b'[{"notes": "', repeated):
            taken.append(len(chunk))
            yield chunk

    with pytest.raises(LimitError, match="a string at line 1, over the limit of 4 MiB"):
        _feed(string_screen(limit, uri="list.json", source="s"), counted())
    assert sum(taken) <= limit + 2 * CHUNK  # the limit and one chunk, not the string


def test_a_header_that_arrives_in_pieces_still_names_the_column() -> None:
    # a network read can end inside the header line: the names come from every piece of it
    def pieces() -> Iterator[bytes]:
        yield b"id,no"
        yield b"tes\n1,"
        yield from _endless(b"", b"x")

    with pytest.raises(LimitError) as refused:
        _feed(_csv_screen(2 * CHUNK), pieces())
    assert (refused.value.row, refused.value.column) == (1, "notes")
    assert "a field at line 2 ('notes')" in str(refused.value)


def test_a_refused_csv_field_is_named_alike_whatever_the_chunking() -> None:
    # the first field over the limit, by line and column, as the whole file names it: a
    # network read cuts the stream anywhere, inside a quoted field too
    rng = random.Random(9)
    for _ in range(1500):
        rows = [["h1", "h2", "h3"]] + [
            ["".join(rng.choice('ab,"\n') for _ in range(rng.randint(0, 9))) for _ in "123"]
            for _ in range(rng.randint(1, 4))
        ]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        data = text.getvalue().encode("utf-8")
        limit = rng.randint(1, 8)
        over = [
            (n, column)
            for n, row in enumerate(rows)
            for column, v in enumerate(row)
            if len(v) + any(c in v for c in ',"\n') > limit
        ]
        if not over:
            continue
        named = []
        for size in (len(data) + 1, *(rng.randint(1, 15) for _ in range(3))):
            with pytest.raises(LimitError) as refused:
                _feed(_csv_screen(limit), _cut(data, size))
            named.append((refused.value.column, str(refused.value), refused.value.row))
        row, column = over[0]
        assert named[0][0] == (rows[0][column] if row else None), (data, limit)
        assert all(n == named[0] for n in named), (data, limit, named)
