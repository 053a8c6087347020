"""The hostile corpus, as run under a ceiling: each case runs in a worker process limited in
memory (RLIMIT_AS) and time, so a case that regresses in cost fails its test, not the machine.

Also here: the generators of the large or binary inputs (never committed: a gigabyte of zeros
is a sparse file, a 3 GiB shared string a 3 MB ZIP) and the damage done to a warehouse.
`python -m tests.hostile_cases mounted SPEC` runs one case on a tmpfs mounted in a private
mount namespace (a read-only home, a full disk), for tests/test_hostile.py.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import traceback
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

CASES_DIR = Path(__file__).parent / "cases" / "hostile"
SPEC = yaml.safe_load((CASES_DIR / "cases.yaml").read_text(encoding="utf-8"))
NAME = "hostile"
MEMORY = 2 * 1024**3
SECONDS = 60
# address space reserved, not used, that would count against the ceiling: glibc keeps an arena
# of 64 MiB per thread, pyarrow's mimalloc reserves 1 GiB up front
LEAN = {"MALLOC_ARENA_MAX": "2", "MIMALLOC_ARENA_RESERVE": "64MiB"}


# --- what the worker runs ------------------------------------------------------------------


def _mapping_file(folder: Path, case: dict[str, Any]) -> Path:
    data = {**SPEC["base_mapping"], **case.get("mapping", {})}
    data["options"] = {**data.get("options", {}), **case.get("options", {})}
    path = folder / "case-mapping.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def case_source(case: dict[str, Any], uri: str, folder: Path, settings: Any) -> Any:
    """The Source a case describes: the base mapping with the case's mapping and options, read
    from a YAML file as a configured source's mapping is (so its errors are ConfigErrors)."""
    from relations_etl.config import Kind, Source, builtin_mapping, load_mapping

    fmt = case.get("format")
    if fmt == "hsg-visits-xml":
        mapping = builtin_mapping(fmt, Kind.VISITS)
    else:
        mapping = load_mapping(_mapping_file(folder, case), Kind.VISITS, settings)
    return Source(
        name=NAME,
        kind=Kind.VISITS,
        uri=uri,
        format=fmt,
        mapping=mapping,
        landing=case.get("landing"),
        # every case loads as `hostile` over good.csv: each declares the move, as a user must
        moved_from=None if uri == str(CASES_DIR / "good.csv") else str(CASES_DIR / "good.csv"),
        # a case is one more file for the source, not a new version of the whole list: what
        # the corpus checks is that hostile input never costs a row already loaded
        mode="append",
    )


_REFERENCE: list[Any] = []


def _reference() -> Any:
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    if not _REFERENCE:
        _REFERENCE.append(Reference.load(Settings()))
    return _REFERENCE[0]


def run_case(case: dict[str, Any], uri: str, home: str, folder: str) -> Any:
    """One case: a mapping or sources file is loaded, any other case runs as source `hostile`."""
    from relations_etl.config import Kind, load_mapping, load_sources
    from relations_etl.pipeline import run_source
    from relations_etl.settings import Settings

    settings = Settings(home=Path(home), **case.get("settings", {}))
    if case.get("as") == "mapping":
        return load_mapping(Path(uri), Kind.VISITS, settings)
    if case.get("as") == "sources":
        return load_sources(Path(uri), settings)
    cwd = os.getcwd()
    os.chdir(case.get("cwd", cwd))
    try:
        source = case_source(case, uri, Path(folder), settings)
        return run_source(source, settings, ref=_reference(), force=case.get("force", False))
    finally:
        os.chdir(cwd)


_TEMPLATE: list[tuple[Path, Any]] = []


def load_good(home: str, folder: str) -> Any:
    """The warehouse every case starts from: good.csv loaded as source `hostile` (loaded once
    per worker, then copied: the same tables and files, times included)."""
    import shutil

    from relations_etl.pipeline import run_source
    from relations_etl.settings import Settings

    if not _TEMPLATE or not _TEMPLATE[0][0].is_dir():
        _TEMPLATE.clear()
        template = Path(folder) / "template-warehouse"
        settings = Settings(home=template)
        source = case_source({}, str(CASES_DIR / "good.csv"), Path(folder), settings)
        _TEMPLATE.append((template, run_source(source, settings, ref=_reference())))
    template, result = _TEMPLATE[0]
    shutil.copytree(template, home)
    return result


def run_query(home: str, query: str) -> Any:
    """`relations-etl sql` as the library runs it."""
    from relations_etl.query import run_query as query_warehouse
    from relations_etl.settings import Settings

    return query_warehouse(Settings(home=Path(home)), query).rows()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "run_case": run_case,
    "load_good": load_good,
    "run_query": run_query,
}


def limit(memory: int) -> None:
    """The ceiling of a worker: its address space (its reader child processes inherit it)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def worker_main(conn: Connection, memory: int) -> None:
    """Serve calls from the test process until told to stop."""
    limit(memory)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        name, kwargs = message
        try:
            conn.send(("ok", FUNCTIONS[name](**kwargs)))
        except Exception as exc:
            try:
                conn.send(("raised", exc))
            except Exception:  # an exception that does not pickle: its text, as a bug
                conn.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))
            if not hasattr(exc, "exit_code"):
                traceback.print_exc()


# --- generated inputs --------------------------------------------------------------------


def _zip(path: Path, entries: dict[str, tuple[bytes, int, int]]) -> None:
    """A ZIP of raw deflate streams: name -> (compressed, crc32, uncompressed size)."""
    central, offset = b"", 0
    with open(path, "wb") as out:
        for name, (data, crc, size) in entries.items():
            encoded = name.encode()
            header = struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size,
                len(encoded), 0,
            )  # fmt: skip
            out.write(header + encoded + data)
            central += struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                len(encoded), 0, 0, 0, 0, 0, offset,
            ) + encoded  # fmt: skip
            offset += len(header) + len(encoded) + len(data)
        out.write(central)
        out.write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), offset, 0
            )
        )


def _deflated(text: bytes) -> tuple[bytes, int, int]:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(text) + packer.flush(), zlib.crc32(text), len(text)


def shared_string_3gib(folder: Path) -> Path:
    """A 3 MB workbook whose one shared string is 3 GiB of 'a' (never built in memory: each
    fully flushed deflate block of 1 MiB of 'a' is the same bytes, repeated)."""
    import importlib.util
    import zipfile

    found = importlib.util.spec_from_file_location("make_xlsx", CASES_DIR / "make_xlsx.py")
    assert found and found.loader
    make_xlsx = importlib.util.module_from_spec(found)
    found.loader.exec_module(make_xlsx)
    template = folder / "template.xlsx"
    make_xlsx.raw_book(template, '<row r="1"><c r="A1" t="s"><v>0</v></c></row>')

    with zipfile.ZipFile(template) as book:
        entries = {name: _deflated(book.read(name)) for name in book.namelist()}
    chunk, count = b"a" * (1 << 20), 3072
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head, tail = b'<sst xmlns="x" count="1" uniqueCount="1"><si><t>', b"</t></si></sst>"
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    start = zlib.compressobj(9, zlib.DEFLATED, -15)
    opening = start.compress(head) + start.flush(zlib.Z_FULL_FLUSH)
    closing = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(tail, crc)
    data = opening + block * count + closing.compress(tail) + closing.flush()
    entries["xl/sharedStrings.xml"] = (data, crc, len(head) + len(chunk) * count + len(tail))
    path = folder / "shared_string_3gib.xlsx"
    _zip(path, entries)
    return path


def _packed(folder: Path, name: str, pack: Callable[[bytes], bytes]) -> Path:
    path = folder / name
    path.write_bytes(pack((CASES_DIR / "good.csv").read_bytes()))
    return path


def gzip_named_csv_gz(folder: Path) -> Path:
    """good.csv gzip-compressed, named as such (as archives ship it: visits.csv.gz)."""
    import gzip

    return _packed(folder, "good.csv.gz", gzip.compress)


def gzip_named_csv(folder: Path) -> Path:
    """good.csv gzip-compressed under a .csv name: its first bytes tell."""
    import gzip

    return _packed(folder, "good.csv", gzip.compress)


def zip_named_csv(folder: Path) -> Path:
    """good.csv in a zip archive under a .csv name."""
    import io
    import zipfile

    def pack(data: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("good.csv", data)
        return out.getvalue()

    return _packed(folder, "visits.csv", pack)


def xz_named_ndjson(folder: Path) -> Path:
    """xz-compressed bytes under an .ndjson name."""
    import lzma

    return _packed(folder, "visits.ndjson", lzma.compress)


def nul_gigabyte(folder: Path) -> Path:
    """1 GiB of NUL bytes, as a sparse file (no disk used)."""
    path = folder / "nul_gigabyte.csv"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)
    return path


def million_columns(folder: Path) -> Path:
    """A 9 MB CSV whose header has 1,000,000 columns."""
    path = folder / "million_columns.csv"
    header = ",".join(f"c{n}" for n in range(1_000_000))
    path.write_text(header + "\n" + "," * 999_999 + "\n", encoding="utf-8")
    return path


def repeated_columns(folder: Path) -> Path:
    """10,000 columns (the limit), 9,994 of them named x."""
    path = folder / "repeated_columns.csv"
    header = "id,visitor,country,start,end,notes," + ",".join(["x"] * 9_994)
    path.write_text(header + "\n", encoding="utf-8")
    return path


def big_field(folder: Path) -> Path:
    """A notes field of 17 MiB, one more than the default limit."""
    path = folder / "big_field.csv"
    path.write_text(
        "id,visitor,country,start,end,notes\n"
        f"h1,King Philippe,Belgium,2023-03-01,,{'x' * (17 * 1024**2)}\n",
        encoding="utf-8",
    )
    return path


def big_string_ndjson(folder: Path) -> Path:
    """NDJSON whose second line holds a notes value of 17 MiB."""
    path = folder / "big_string.ndjson"
    line = '{"id": "h%d", "visitor": "King Philippe", "country": "Belgium", "start": "2023-03-01"'
    path.write_text(
        line % 1 + "}\n" + line % 2 + f', "notes": "{"x" * (17 * 1024**2)}"}}\n', encoding="utf-8"
    )
    return path


def deep_json(folder: Path) -> Path:
    """JSON nested 100,000 deep."""
    path = folder / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return path


_GOOD = (
    '{"id": "h1", "visitor": "King Philippe", "country": "Belgium", "start": "2023-03-01", '
    '"end": null, "notes": null}\n'
    '{"id": "h3", "visitor": "Chancellor Olaf Scholz", "country": "Germany", '
    '"start": "2023-06-20", "end": null, "notes": null}\n'
)


def deep_ndjson(folder: Path) -> Path:
    """Two good lines around one line nested 100,000 deep."""
    path = folder / "deep.ndjson"
    first, second = _GOOD.splitlines()
    deep = '{"id": "h2", "notes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(f"{first}\n{deep}\n{second}\n", encoding="utf-8")
    return path


def huge_integer_json(folder: Path) -> Path:
    """A record whose id is an integer of 5,000 digits."""
    path = folder / "huge_integer.json"
    path.write_text(
        '[{"id": ' + "7" * 5_000 + ', "visitor": "King Philippe", "country": "Belgium", '
        '"start": "2023-03-01"}]',
        encoding="utf-8",
    )
    return path


def huge_integer_ndjson(folder: Path) -> Path:
    """Two good lines around one with an integer of 5,000 digits."""
    path = folder / "huge_integer.ndjson"
    first, second = _GOOD.splitlines()
    path.write_text(f'{first}\n{{"id": {"7" * 5_000}}}\n{second}\n', encoding="utf-8")
    return path


def sparse_keys_json(folder: Path) -> Path:
    """10,001 records, each with a key of its own: 10,001 columns."""
    path = folder / "sparse_keys.json"
    path.write_text(json.dumps([{f"k{n}": n} for n in range(10_001)]), encoding="utf-8")
    return path


def sparse_cells_json(folder: Path) -> Path:
    """5,000 records with a key of their own and 15,000 empty ones: a 100,000,000-cell table
    from a 100 KB file."""
    path = folder / "sparse_cells.json"
    records: list[dict[str, int]] = [{f"k{n}": n} for n in range(5_000)] + [{}] * 15_000
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def wide_parquet(folder: Path) -> Path:
    """A Parquet file of 10,001 columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "wide.parquet"
    pq.write_table(pa.table({f"c{n}": [n] for n in range(10_001)}), path)
    return path


def deep_yaml(folder: Path) -> Path:
    """A mapping file nested 100,000 deep."""
    path = folder / "deep.yaml"
    path.write_text("columns: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    return path


def link_out(folder: Path) -> Path:
    """A landing folder holding a link to /etc/passwd."""
    landing = folder / "landing"
    landing.mkdir(exist_ok=True)
    link = landing / "visits.csv"
    link.symlink_to("/etc/passwd")
    return link


def not_a_workbook_zip(folder: Path) -> Path:
    """A ZIP archive with no workbook in it."""
    import zipfile

    path = folder / "not_a_workbook.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    return path


GENERATORS: dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in (
        shared_string_3gib,
        nul_gigabyte,
        million_columns,
        repeated_columns,
        big_field,
        big_string_ndjson,
        deep_json,
        deep_ndjson,
        huge_integer_json,
        huge_integer_ndjson,
        sparse_keys_json,
        sparse_cells_json,
        wide_parquet,
        deep_yaml,
        link_out,
        not_a_workbook_zip,
        gzip_named_csv_gz,
        gzip_named_csv,
        zip_named_csv,
        xz_named_ndjson,
    )
}


# --- damage done to a warehouse from outside -----------------------------------------------


def _visits_block(db: Path) -> int:
    """The offset of a block that holds rows of `visits` (DuckDB: three 4 KiB headers, then
    blocks of block_size)."""
    import duckdb

    conn = duckdb.connect(str(db), read_only=True)
    try:
        size = conn.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        block = conn.execute(
            "SELECT min(block_id) FROM pragma_storage_info('visits') WHERE block_id >= 0"
        ).fetchone()
    finally:
        conn.close()
    assert size and block and block[0] is not None
    return 3 * 4096 + int(block[0]) * int(size[0])


def _truncated(home: Path) -> None:
    db = home / "relations.duckdb"
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 2)


def _garbage(home: Path) -> None:
    db = home / "relations.duckdb"
    offset = _visits_block(db)
    with open(db, "r+b") as handle:
        handle.seek(offset + 100)
        handle.write(os.urandom(1024))


def _not_duckdb(home: Path) -> None:
    (home / "relations.duckdb").write_bytes(b"SQLite format 3\0" + os.urandom(8000))


def _parquet(home: Path) -> Path:
    return next((home / "parquet" / "visits").glob("year=*/data.parquet"))


def _parquet_garbage(home: Path) -> None:
    _parquet(home).write_bytes(b"PAR1" + os.urandom(3000))


def _parquet_deleted(home: Path) -> None:
    _parquet(home).unlink()


def _parquet_same_size(home: Path) -> None:
    """Replaced by bytes of the same length, its modification time put back."""
    path = _parquet(home)
    info = path.stat()
    path.write_bytes(os.urandom(info.st_size))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncated,
    "garbage": _garbage,
    "not_duckdb": _not_duckdb,
    "parquet_garbage": _parquet_garbage,
    "parquet_deleted": _parquet_deleted,
    "parquet_same_size": _parquet_same_size,
}


# --- cases on a mounted file system -------------------------------------------------------


def _mount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)


def _fill(folder: Path) -> None:
    """Take every free byte of the file system that holds `folder`."""
    with open(folder / ".filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def mounted(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process's own mount namespace (started by `unshare --mount`)."""
    import shutil

    from relations_etl.errors import RelationsEtlError

    kind, home, folder = spec["mount"], Path(spec["home"]), spec["folder"]
    prepared = Path(spec["prepared"])  # a home that already holds good.csv
    target = home if kind != "publish_disk_full" else home / "parquet"
    target.mkdir(parents=True, exist_ok=True)
    _mount(target, "size=16m,mode=0755")
    shutil.copytree(prepared / ("parquet" if kind == "publish_disk_full" else ""), target,
                    dirs_exist_ok=True)  # fmt: skip
    if kind == "publish_disk_full":
        shutil.copy(prepared / "relations.duckdb", home / "relations.duckdb")
    if kind == "read_only_home":
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
    else:
        _fill(target)
    before = (home / "relations.duckdb").read_bytes()
    outcome: dict[str, Any] = {}
    try:
        result = run_case(spec["case"], spec["uri"], str(home), folder)
        outcome["result"] = {
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "publish_pending": result.publish_pending,
        }
    except RelationsEtlError as exc:
        outcome["error"] = {
            "class": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "exit_code": exc.exit_code,
            "text": str(exc),
        }
    outcome["unchanged"] = (home / "relations.duckdb").read_bytes() == before
    import duckdb

    conn = duckdb.connect(str(home / "relations.duckdb"), read_only=True)
    try:
        outcome["audit"] = conn.execute(
            "SELECT status FROM load_batches ORDER BY started_at"
        ).fetchall()
        outcome["queued"] = conn.execute("SELECT count(*) FROM publish_queue").fetchone()
    finally:
        conn.close()
    try:
        outcome["sql"] = run_query(str(home), "SELECT count(*) FROM visits")
    except RelationsEtlError as exc:
        outcome["sql"] = f"{type(exc).__name__}: {exc}"
    return outcome


def main() -> None:
    """`python -m tests.hostile_cases mounted SPEC` (under `unshare --mount`)."""
    limit(MEMORY)
    spec = json.loads(sys.argv[2])
    print(json.dumps(mounted(spec), default=str))


if __name__ == "__main__":
    main()
