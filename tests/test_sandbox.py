"""The sql sandbox: a child process the kernel (Landlock) forbids to write anywhere but its
scratch folder and to read anything but the allowed paths; killed past its timeout; where the
kernel has no Landlock the query still runs, on DuckDB's restrictions, and says so."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest
from relations_etl_flows.cli import main

from relations_etl import sandbox
from relations_etl.errors import QueryError
from relations_etl.sandbox import landlock_abi, run_sandboxed
from relations_etl.settings import Settings

needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="the kernel has no Landlock")


def _attempts(paths: list[str], scratch: Path) -> pa.Table:
    """In the child: every way to change each path (or its folder), and the errno it met."""
    rows: list[dict[str, object]] = []
    for text in [*paths, str(scratch / "spill.bin")]:
        path = Path(text)
        tries = {
            "write": lambda p=path: p.open("r+b").close(),
            "truncate": lambda p=path: os.truncate(p, 0),
            "create": lambda p=path: (p.parent / "new.bin").open("xb").close(),
            "mkdir": lambda p=path: (p.parent / "new-folder").mkdir(),
            "unlink": lambda p=path: p.unlink(),
            "rename": lambda p=path: p.rename(p.parent / "renamed.bin"),
            "symlink": lambda p=path: (p.parent / "link").symlink_to(p),
        }
        if path.parent == scratch:
            path.write_bytes(b"spilled")  # DuckDB's spills: the one folder it may write
        for what, attempt in tries.items():
            try:
                attempt()
                code = 0
            except OSError as exc:
                code = exc.errno or -1
            rows.append({"path": text, "what": what, "errno": code})
    return pa.Table.from_pylist(rows)


def _reads(paths: list[str], scratch: Path) -> pa.Table:
    """In the child: the errno reading each path met (0: read)."""
    codes = []
    for text in paths:
        try:
            Path(text).read_bytes()
            codes.append(0)
        except OSError as exc:
            codes.append(exc.errno or -1)
    return pa.table({"path": paths, "errno": codes})


def _sleeps(scratch: Path) -> pa.Table:
    time.sleep(600)
    return pa.table({"x": [1]})


def _dies(scratch: Path) -> pa.Table:
    os.kill(os.getpid(), signal.SIGKILL)
    return pa.table({"x": [1]})


@needs_landlock
def test_the_child_can_change_no_file_but_in_its_scratch_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "reference").mkdir(parents=True)
    aliases = home / "reference" / "country_aliases.csv"
    aliases.write_bytes(b"alias,code\nKazakstan,KAZ\n")
    beside = tmp_path / "beside.txt"  # not readable by the query, still under /tmp
    beside.write_bytes(b"beside")
    paths = [str(aliases), str(beside)]
    table = run_sandboxed(_attempts, (paths,), read=[home], timeout=60)
    rows = table.to_pylist()
    refused = {(r["path"], r["what"]): r["errno"] for r in rows if r["path"] in paths}
    assert refused and set(refused.values()) == {errno.EACCES}, refused
    spilled = [r for r in rows if r["path"] not in paths]
    assert {r["what"] for r in spilled if r["errno"] == 0} >= {"write", "create", "mkdir"}
    assert aliases.read_bytes() == b"alias,code\nKazakstan,KAZ\n"
    assert beside.read_bytes() == b"beside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "home"]
    assert sorted(p.name for p in (home / "reference").iterdir()) == ["country_aliases.csv"]


@needs_landlock
def test_the_child_reads_only_the_allowed_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "list.csv").write_text("a\n1\n", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=x\n", encoding="utf-8")
    paths = [str(allowed / "list.csv"), str(secret), "/etc/passwd", "/proc/self/environ"]
    table = run_sandboxed(_reads, (paths,), read=[allowed], timeout=60)
    assert dict(zip(table["path"].to_pylist(), table["errno"].to_pylist(), strict=True)) == {
        paths[0]: 0,
        paths[1]: errno.EACCES,
        "/etc/passwd": errno.EACCES,
        "/proc/self/environ": errno.EACCES,
    }


def test_a_child_past_its_timeout_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(prefix: str) -> str:
        made.append(real(prefix=prefix, dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(QueryError, match=r"ran longer than 0.2 s and was stopped"):
        run_sandboxed(_sleeps, (), read=[tmp_path], timeout=0.2, grace=0)
    assert made and not Path(made[0]).exists()  # its scratch folder is removed


def test_a_child_that_dies_is_a_query_error(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"stopped without an answer \(killed by SIGKILL\)"):
        run_sandboxed(_dies, (), read=[tmp_path], timeout=60)


def test_sql_verbose_says_how_the_query_is_kept_from_writing(
    sample_warehouse: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(sample_warehouse.home))
    assert main(["sql", "SELECT 1 AS one", "--format", "json", "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"one": 1}]
    abi = landlock_abi()
    said = f"Landlock ABI {abi}: no file can be written" if abi else "Landlock is not available"
    assert f"relations-etl: sql sandbox: {said}" in err
    assert main(["sql", "SELECT 1 AS one", "--format", "json"]) == 0
    assert capsys.readouterr().err == ""  # said only when asked


_WITHOUT_LANDLOCK = """
import json, logging, multiprocessing, sys
from pathlib import Path
from relations_etl import sandbox
from relations_etl.readers import isolated
from relations_etl.query import run_query
from relations_etl.settings import Settings

# a kernel without Landlock, in the child: the child is a fork of this (single-threaded) script
sandbox.landlock_abi = lambda: 0
isolated._context = multiprocessing.get_context("fork")
logging.basicConfig(level=logging.INFO, format="%(message)s")
settings = Settings(home=Path(sys.argv[1]))
frame = run_query(settings, "SELECT count(*) AS n FROM visits")
print(json.dumps(frame.to_dicts()))
try:
    run_query(settings, "SELECT * FROM read_text('/etc/passwd')")
except Exception as exc:
    print(type(exc).__name__)
"""


def test_without_landlock_sql_runs_on_duckdbs_restrictions_and_says_so(
    sample_warehouse: Settings,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LANDLOCK, str(sample_warehouse.home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['[{"n": 8}]', "QueryError"]
    assert "sql sandbox: Landlock is not available on this kernel: DuckDB's own restrictions" in (
        done.stderr
    )
