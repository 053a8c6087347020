"""A fetched source holds its files' hashes, not their bytes: local files are read again from
disk when parsed, remote ones from a spool copy, and what is parsed is what was hashed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relations_etl.config import Source
from relations_etl.errors import LimitError, SourceReadError, TransientSourceError
from relations_etl.extract import Fetched, fetch, parse, parse_pieces, refetch
from relations_etl.pipeline import DIRECT, Steps, prepare_ahead, read_source, run_source
from relations_etl.readers import delimited
from relations_etl.readers.delimited import Irregular, _regular, iter_delimited, read_delimited
from relations_etl.settings import Settings
from tests.conftest import QuietHandler, Serve, trips_source

HEADER = "record,host,visitor_country,visitor,title,date\n"
ROW = "t{n},Germany,United States,Antony Blinken,Secretary of State,2023-01-10\n"


def _trips(path: Path, rows: int) -> Path:
    path.write_text(HEADER + "".join(ROW.format(n=n) for n in range(rows)), encoding="utf-8")
    return path


@pytest.fixture
def spool_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder of this test alone, where spool folders are made."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _spools(root: Path) -> list[Path]:
    return sorted(root.glob("relations-etl-fetch-*"))


def test_a_local_file_is_hashed_in_place_and_no_byte_is_held(tmp_path: Path) -> None:
    path = _trips(tmp_path / "trips.csv", 20_000)
    fetched = fetch(trips_source(path))
    (file,) = fetched.files
    assert (file.uri, file.path, file.size) == (str(path), str(path), path.stat().st_size)
    assert file.sha256 == fetched.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    # what a Dask worker sends back: hashes and paths, not the 1.4 MB of the list
    assert file.size > 1_000_000 and len(pickle.dumps(fetched)) < 5_000
    assert parse(fetched).frame.height == 20_000


def test_a_remote_file_is_spooled_while_hashed_and_its_copy_removed_on_close(
    tmp_path: Path, serve: Serve, spool_root: Path
) -> None:
    path = _trips(tmp_path / "trips.csv", 100)
    url, requested = serve(tmp_path, QuietHandler)
    with fetch(trips_source(path).model_copy(update={"uri": url + "trips.csv"})) as fetched:
        (file,) = fetched.files
        (folder,) = _spools(spool_root)
        assert Path(file.path).parent == folder
        assert Path(file.path).read_bytes() == path.read_bytes()
        assert file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert parse(fetched).frame.height == 100
    assert requested == ["/trips.csv"], "parsed from the copy, not fetched twice"
    assert _spools(spool_root) == []
    with pytest.raises(TransientSourceError, match="fetched earlier is gone") as gone:
        parse(fetched)
    assert gone.value.exit_code == 75


def test_a_body_over_the_byte_limit_leaves_no_copy(
    tmp_path: Path, serve: Serve, spool_root: Path
) -> None:
    path = _trips(tmp_path / "trips.csv", 1000)
    url, _ = serve(tmp_path, QuietHandler)
    source = trips_source(path).model_copy(update={"uri": url + "trips.csv"})
    with pytest.raises(LimitError, match="RELATIONS_ETL_MAX_SOURCE_BYTES"):
        fetch(source, Settings(home=tmp_path / "w", max_source_bytes=10_000))
    assert _spools(spool_root) == []


@pytest.mark.parametrize("outcome", ["loaded", "skipped", "failed"])
def test_run_source_removes_the_copies_whatever_happens(
    tmp_path: Path, serve: Serve, spool_root: Path, outcome: str
) -> None:
    path = _trips(tmp_path / "trips.csv", 10)
    if outcome == "failed":  # not UTF-8: found when the file is parsed, after the hash
        path.write_bytes(path.read_bytes().replace(b"Antony", b"Ant\xffny"))
    url, _ = serve(tmp_path, QuietHandler)
    source = trips_source(path).model_copy(update={"uri": url + "trips.csv"})
    settings = Settings(home=tmp_path / "warehouse")
    kept: list[Fetched] = []  # as a flow's task state keeps its result: never collected here

    def extract(source: Source, settings: Settings) -> Fetched:
        kept.append(read_source(source, settings))
        return kept[-1]

    steps: Steps = replace(DIRECT, extract=extract)
    if outcome == "failed":
        with pytest.raises(SourceReadError, match="is not UTF-8"):
            run_source(source, settings, steps=steps)
    else:
        assert run_source(source, settings, steps=steps).rows_loaded == 10
        if outcome == "skipped":
            assert run_source(source, settings, steps=steps).unchanged_since is not None
    assert kept and all(f.spool is not None and f.spool.folder for f in kept)
    assert _spools(spool_root) == []


def test_prepare_ahead_sends_back_hashes_without_bytes_or_copies(
    tmp_path: Path, serve: Serve, spool_root: Path
) -> None:
    path = _trips(tmp_path / "trips.csv", 20_000)
    url, _ = serve(tmp_path, QuietHandler)
    source = trips_source(path).model_copy(update={"uri": url + "trips.csv"})
    fetched, prepared, by_file = prepare_ahead(source, Settings(home=tmp_path / "warehouse"), None)
    assert not by_file and prepared is not None and prepared.rows_read == 20_000
    prepared.discard()
    assert fetched.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(pickle.dumps(fetched)) < 5_000
    assert _spools(spool_root) == [], "a copy on a worker is valid there only: removed"


def test_a_copy_removed_is_fetched_again_only_with_the_bytes_hashed(
    tmp_path: Path, serve: Serve, spool_root: Path
) -> None:
    """What a Dask task does with a file another worker hashed: fetch it again, and refuse it
    when the list changed in between (the hash, and the skip check, were of other bytes)."""
    path = _trips(tmp_path / "trips.csv", 50)
    url, _ = serve(tmp_path, QuietHandler)
    source = trips_source(path).model_copy(update={"uri": url + "trips.csv"})
    settings = Settings(home=tmp_path / "warehouse")
    with read_source(source, settings) as fetched:
        pass
    assert _spools(spool_root) == []
    with refetch(fetched, settings) as again:
        assert again.content_hash == fetched.content_hash
        assert again.read(again.files[0]) == path.read_bytes()
    assert _spools(spool_root) == []
    path.write_bytes(path.read_bytes().replace(b"Germany", b"Hungary", 1))
    with pytest.raises(TransientSourceError, match="changed after it was hashed"):
        refetch(fetched, settings)
    assert _spools(spool_root) == []


def _rewrite_keeping_the_stamp(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes in place, same size, and put the modification time back: the stamp
    (inode, size, mtime) stays the same, only the bytes tell."""
    before = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    with open(path, "r+b") as handle:
        handle.seek(data.index(old))
        handle.write(new)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def _all_pieces(fetched: Fetched) -> pl.DataFrame:
    pieces = parse_pieces(fetched, Settings(), 1000)
    assert pieces is not None
    return pl.concat([t.frame for t in pieces])


@pytest.mark.parametrize("reader", ["pieces", "whole"])
def test_bytes_changed_after_hashing_are_refused_even_with_the_same_stamp(
    tmp_path: Path, reader: str
) -> None:
    path = _trips(tmp_path / "trips.csv", 5000)
    fetched = fetch(trips_source(path))
    _rewrite_keeping_the_stamp(path, b"t4999,Germany", b"t4999,Ukraine")
    read = _all_pieces if reader == "pieces" else parse
    with pytest.raises(TransientSourceError, match="changed after it was hashed") as info:
        read(fetched)
    assert info.value.exit_code == 75 and info.value.file == str(path)


def test_a_file_grown_or_replaced_after_hashing_is_refused_before_it_is_parsed(
    tmp_path: Path,
) -> None:
    path = _trips(tmp_path / "trips.csv", 10)
    fetched = fetch(trips_source(path))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(ROW.format(n=10))
    with pytest.raises(TransientSourceError, match="bytes then"):
        parse(fetched)
    fetched = fetch(trips_source(path))
    other = _trips(tmp_path / "other.csv", 11)
    os.replace(other, path)  # a producer renaming a new version into place
    with pytest.raises(TransientSourceError, match="another file is at its path now"):
        parse(fetched)
    fetched = fetch(trips_source(path))
    path.unlink()
    path.symlink_to(_trips(tmp_path / "elsewhere.csv", 10))  # never followed when read again
    with pytest.raises(TransientSourceError, match="cannot be opened again"):
        parse(fetched)


def test_a_list_changed_between_the_hash_and_the_transform_loads_nothing(
    tmp_path: Path,
) -> None:
    path = _trips(tmp_path / "trips.csv", 100)
    settings = Settings(home=tmp_path / "warehouse")

    def extract_then_change(source: Source, settings: Settings) -> Fetched:
        fetched = read_source(source, settings)
        _rewrite_keeping_the_stamp(path, b"t42,Germany", b"t42,Ukraine")
        return fetched

    steps: Steps = replace(DIRECT, extract=extract_then_change)
    with pytest.raises(TransientSourceError, match="changed after it was hashed"):
        run_source(trips_source(path), settings, steps=steps)
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM visits").fetchone() == (0,)
        assert conn.execute("SELECT status FROM load_batches").fetchall() == [("failed",)]
    finally:
        conn.close()
    # the file as it is now loads on the next run
    assert run_source(trips_source(path), settings).rows_loaded == 100


class _Counting(io.RawIOBase):
    """A file that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(buffer)
        self.read_so_far += n
        return n


def _pieces(data: bytes | io.BufferedReader, **options: object) -> Iterator[pl.DataFrame]:
    return iter_delimited(
        data,
        separator=",",
        encoding=None,
        skip_rows=int(str(options.get("skip_rows", 0))),
        uri="f.csv",
        source="s",
        settings=Settings(),
        rows=1000,
    )


@pytest.mark.parametrize(
    ("prefix", "newline", "skip_rows"),
    [("", "\n", 0), ("\ufeff", "\r\n", 0), ("exported 2024\n\n", "\n", 1)],
)
def test_csv_pieces_are_read_from_the_file_a_piece_at_a_time(
    prefix: str, newline: str, skip_rows: int
) -> None:
    body = (HEADER + "".join(ROW.format(n=n) for n in range(50_000))).replace("\n", newline)
    data = (prefix + body).encode()
    counting = _Counting(data)
    pieces = _pieces(io.BufferedReader(counting), skip_rows=skip_rows)
    first = next(pieces)
    assert 900 <= first.height <= 1100
    assert counting.read_so_far < len(data) / 10, "the first piece did not wait for the file"
    streamed = pl.concat([first, *pieces])
    whole, errors = read_delimited(
        data, separator=",", encoding=None, skip_rows=skip_rows, uri="f.csv", source="s"
    )
    assert errors is None
    assert streamed.equals(whole)
    assert streamed.height == 50_000
    assert pl.concat(list(_pieces(data, skip_rows=skip_rows))).equals(whole), "bytes still do"


def test_ndjson_pieces_have_the_whole_files_columns_rows_and_errors(tmp_path: Path) -> None:
    lines = [json.dumps({"record": f"t{n}", "host": "Germany"}) for n in range(20_000)]
    lines[10] = "{not json"
    lines[20] = "[1, 2]"
    lines[30] = ""
    lines[19_000] = json.dumps({"record": "late", "visitor": "A key seen only here"})
    path = tmp_path / "trips.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fetched = fetch(trips_source(path).model_copy(update={"format": "ndjson"}))
    pieces = parse_pieces(fetched, Settings(), 500)
    assert pieces is not None
    tables = list(pieces)
    assert len(tables) >= 5
    assert all(t.columns == ("record", "host", "visitor") for t in tables)
    assert pl.concat([t.frame for t in tables]).equals(parse(fetched).frame)


_CELL = st.text(alphabet=st.sampled_from(list('ab ,"\t\u00e9\u00a0;\x00')), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.lists(_CELL, min_size=1, max_size=4).map(",".join),
            st.sampled_from(["", " ", '"a\nb",c', '"x""y",z,w', '"open,a,b']),
        ),
        min_size=1,
        max_size=12,
    ),
    width=st.integers(min_value=1, max_value=4),
)
@example(lines=['","'], width=2)  # a line of one quoted field is short, not blank
@example(lines=[" "], width=2)  # so is a line of a space
@example(lines=['"a"b,c'], width=2)  # text after a closing quote: not CSV
def test_the_ragged_line_check_reads_lines_alike_in_polars_and_python(
    lines: list[str], width: int
) -> None:
    # the check reads the lines with polars' CSV reader (Python's where a NUL is); its answer
    # must be a plain reading of each line: every quoted field whole, and the header's field
    # count once quoted fields are taken out (or nothing at all on the line)
    body = "\n".join(lines)
    field = r'(?:"(?:[^"]|"")*"|[^",]*)'

    def regular(line: str) -> bool:
        if not re.fullmatch(f"{field}(?:,{field})*", line):
            return False
        unquoted = re.sub(r'"(?:[^"]|"")*"', "", line)
        return unquoted.count(",") + 1 == width or not line

    assert _regular(body.encode(), ",", width) == all(regular(line) for line in body.split("\n"))


def _read_both(text: str, separator: str) -> list[object]:
    """What read_delimited makes of `text` by its polars path and by the csv module's."""
    answers: list[object] = []
    for fast in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not fast:
                patch.setattr(delimited, "_regular", lambda *args, **kwargs: False)
            try:
                frame, errors = read_delimited(
                    text.encode(), separator=separator, encoding=None, skip_rows=0,
                    uri="list.csv", source="list",
                )  # fmt: skip
            except SourceReadError as exc:
                answers.append(("refused", str(exc)))
                continue
        none = [[] for _ in range(frame.height)]  # no errors at all, said either way
        answers.append((frame.to_dicts(), none if errors is None else errors))
    return answers


_ANY_CELL = st.text(alphabet=st.sampled_from(list('ab ,;|"\t\r\n\x00\u00e9\ufeff')), max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=4),
    separator=st.sampled_from([",", ";", "\t", "|"]),
    data=st.data(),
)
@example(width=4, separator=",", data=None)
def test_the_polars_path_reads_what_the_csv_module_reads(
    width: int, separator: str, data: st.DataObject | None
) -> None:
    # the quick path (polars) is taken only where it reads each line as the csv module would:
    # the same rows, values and row errors, or the same refusal (the csv module decides)
    rows = (
        [',,,""']  # a quoted empty field is empty: the line is blank
        if data is None
        else data.draw(
            st.lists(st.lists(_ANY_CELL, min_size=1, max_size=4).map(separator.join), max_size=6)
        )
    )
    header = separator.join(f"c{n}" for n in range(width))
    text = "\n".join([header, *rows]) + "\n"
    fast, slow = _read_both(text, separator)
    assert fast == slow
    # read in pieces (a large file), unless it is of the kind that is read whole
    try:
        pieces = list(
            iter_delimited(
                text.encode(), separator=separator, encoding=None, skip_rows=0,
                uri="list.csv", source="list", settings=Settings(), rows=2,
            )
        )  # fmt: skip
    except Irregular:
        return
    frame = pl.concat(pieces)
    assert slow == (frame.to_dicts(), [[] for _ in range(frame.height)])


def test_a_u_feff_that_is_not_the_files_bom_is_text() -> None:
    # polars takes a U+FEFF opening its buffer for a BOM: the header line after blank lines
    # (its one row was lost) and the first line of a piece (its first value was cut)
    options: dict[str, Any] = {"separator": ",", "encoding": None, "skip_rows": 0, "uri": "l.csv"}
    frame, _ = read_delimited(b"\n\xef\xbb\xbfid\nh1\n", source="l", **options)
    assert frame.to_dicts() == [{"\ufeffid": "h1"}]
    listed = b"id\n\xef\xbb\xbfh1\nh2\n"
    whole, _ = read_delimited(listed, source="l", **options)
    assert whole["id"].to_list() == ["\ufeffh1", "h2"]
    with pytest.raises(Irregular):  # read whole instead
        list(iter_delimited(listed, source="l", settings=Settings(), rows=1, **options))


def test_a_short_line_of_quoted_fields_only_is_a_row_error_not_a_row_of_nulls() -> None:
    frame, errors = read_delimited(
        b'host,visitor\n","\nFRA,KAZ\n',
        separator=",",
        encoding=None,
        skip_rows=0,
        uri="visits.csv",
        source="visits",
    )
    assert frame["host"].to_list() == [",", "FRA"]
    assert errors is not None
    assert [[e["check"] for e in row] for row in errors] == [["field_count"], []]
    assert errors[0][0]["message"] == "row 1 (line 2) has 1 field(s), the header has 2"
