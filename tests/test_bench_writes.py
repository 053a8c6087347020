"""bench/writes.py at 3,000 rows, so that it never rots: both trials run and a reload writes
nothing (each trial checks it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_writes_benchmark_compares_two_checkouts(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "writes.py"),
            "--before",
            str(REPO),  # this checkout against itself: the numbers are not the point here
            "--rows",
            "3000",
            "--repeats",
            "1",
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert [line.split()[:3] for line in lines if line.startswith("trial")] == [
        ["trial", "1", "before"],
        ["trial", "1", "after"],
    ]
    steps = ("load", "publish", "reload", "republish_after_reload", "publish_every_year")
    assert [line.split()[0] for line in lines[-len(steps) :]] == list(steps)
