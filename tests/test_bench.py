"""The benchmark at 10,000 rows, so that it never rots: it runs, writes its JSON, and conserves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

KEYS = (
    "rows",
    "bare_copy_s",
    "full_path_s",
    "ratio",
    "peak_rss_mb",
    "bare_peak_rss_mb",
    "rows_rejected",
    "stages_s",
)


def test_the_benchmark_runs_and_every_row_is_accounted_for(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # a process of its own, as `make bench` runs it (its memory children are spawned from it)
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--rows",
            "10000",
            "--baseline-repeats",
            "1",
            "--batch-rows",
            "3000",  # several chunks: repeats and rejects are found across them
            "--no-prefect",
            "--workdir",
            str(tmp_path / "work"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((results / "latest.json").read_text(encoding="utf-8"))
    assert [k for k in KEYS if k not in report] == []
    assert report["rows"] == 10000
    result = report["full"]["result"]
    assert result["rows_read"] == 10000
    assert result["rows_read"] == (
        result["rows_loaded"] + result["rows_rejected"] + result["rows_deduplicated"]
    )
    # exactly the planted bad rows are rejected, all others loaded
    assert report["rows_rejected"] == report["csv"]["bad_rows"] > 0
    assert result["rows_loaded"] == 10000 - report["csv"]["bad_rows"]
    assert report["peak_rss_mb"] > report["bare_peak_rss_mb"] > 0
    assert {"fetch", "prepare", "load", "publish"} <= set(report["stages_s"])
    assert {"mapping", "normalize", "validate", "split"} <= set(report["prepare_steps_s"])
