"""A run of every configured source that stops at a named point: SIGKILL, or a pause.

Test-side fault injection: the library code is unchanged; this process replaces one function
with a wrapper that kills the process (no cleanup, no finally blocks) or waits for a file.
Usage: python -m tests.faults.driver <point> <action> <sources.yaml>   (home: RELATIONS_ETL_HOME)
  point:  extract | load | publish | rename (between two files put: renamed on disk, PUT in S3)
  action: kill | pause (touch <home>/paused, wait for <home>/release, go on)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import relations_etl.extract
import relations_etl.load
import relations_etl.publish
import relations_etl.storage
from relations_etl.config import load_sources
from relations_etl.pipeline import run_source
from relations_etl.settings import Settings


def _stop(action: str, home: Path) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    (home / "paused").touch()
    while not (home / "release").exists():
        time.sleep(0.05)


def main() -> None:
    point, action, config = sys.argv[1:4]
    settings = Settings()
    home = settings.home

    def at(target: Any, name: str, when: Callable[..., bool] = lambda *a: True) -> None:
        original = getattr(target, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if when(*args):
                _stop(action, home)
            return original(*args, **kwargs)

        setattr(target, name, wrapper)

    if point == "extract":
        # after the file is fetched, while the source is being read
        at(relations_etl.extract, "as_text_table")
    elif point == "load":
        # inside the load transaction: data inserted, audit row next, commit not reached
        at(relations_etl.load, "audit_batch", lambda *a: a[3] == "succeeded")
    elif point == "publish":
        # a load is committed and its years are queued; no Parquet is written yet
        at(relations_etl.publish, "publish_years")
    elif point == "rename":
        # the first year file is put in place (renamed on disk, one PUT in object storage),
        # the kill comes before the second
        seen = {"n": 0}

        def second(*args: Any) -> bool:
            seen["n"] += str(args[2]).endswith("data.parquet")
            return seen["n"] == 2

        at(relations_etl.storage.LocalStorage, "put", second)
        at(relations_etl.storage.ObjectStorage, "put", second)
    else:
        raise SystemExit(f"unknown point {point}")
    for source in load_sources(Path(config)):
        run_source(source, settings)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
