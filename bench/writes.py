"""The warehouse writes alone (load and publish), two checkouts side by side on the same files.

    python bench/writes.py --before /tmp/old-checkout [--rows 1000000] [--repeats 3]

The synthetic visits CSV of bench/run.py is generated and prepared once (fetch, parse, mapping,
normalize, validate, split: the code of this checkout; neither load nor publish reads anything
else), its staged facts and rejected rows kept in the work folder. Each trial is a process
running one checkout's library (`--before` or this one) on a fresh warehouse: the first load of
those files, its publish (every year), the same files loaded again (every fact the same) and
its publish, then every year queued and published again. The checkouts alternate, trial by
trial, and the best of `--repeats` of each step is shown: on a shared machine only the ratio of
two numbers measured side by side means something.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("load", "publish", "reload", "republish_after_reload", "publish_every_year")


def build(work: Path, rows: int, seed: int) -> dict[str, Any]:
    """Generate and prepare the list once; returns its counts (kept in work/meta.json)."""
    meta_path = work / "meta.json"
    if meta_path.exists():
        loaded: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        if loaded.get("rows") == rows and loaded.get("seed") == seed:
            return loaded
    sys.path.insert(0, str(HERE))
    import run as bench  # bench/run.py: the same list as `make bench`

    from relations_etl import pipeline
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    work.mkdir(parents=True, exist_ok=True)
    csv = work / "visits.csv"
    bench.generate(csv, rows, seed)
    source = bench.make_source(csv)
    settings = Settings(home=work / "prepare-home")
    prepared = pipeline.prepare(
        pipeline.read_source(source, settings), source, Reference.load(settings), settings
    )
    try:
        shutil.copy(prepared.facts_path, work / "facts.parquet")
        shutil.copy(prepared.rejected_path, work / "rejected.parquet")
    finally:
        prepared.discard()
    meta = {
        "rows": rows,
        "seed": seed,
        "rows_read": prepared.rows_read,
        "repeated": prepared.repeated,
        "content_hash": prepared.content_hash,
        "dropped": prepared.dropped,
    }
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    return meta


def trial(work: Path, home: Path) -> dict[str, float]:
    """One checkout's load and publish on a fresh warehouse (run in a child process)."""
    from relations_etl import pipeline
    from relations_etl.db import connect
    from relations_etl.load import load_batch
    from relations_etl.publish import publish_pending
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    sys.path.insert(0, str(HERE))
    import run as bench

    meta = json.loads((work / "meta.json").read_text(encoding="utf-8"))
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    source = bench.make_source(work / "visits.csv")
    ref = Reference.load(settings)
    connect(settings).close()  # the tables made before the clock starts
    seconds: dict[str, float] = {}

    def timed(step: str, call: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        value = call()
        seconds[step] = time.perf_counter() - started
        seconds[f"{step}_cpu"] = time.process_time() - cpu  # every thread of this process
        return value

    def load() -> Any:
        return load_batch(
            settings,
            pipeline.start_batch(settings, source),
            work / "facts.parquet",
            work / "rejected.parquet",
            rows_read=meta["rows_read"],
            repeated=meta["repeated"],
            content_hash=meta["content_hash"],
            ref=ref,
            dropped=meta["dropped"],
        )

    timed("load", load)
    timed("publish", lambda: publish_pending(settings))
    again = timed("reload", load)
    timed("republish_after_reload", lambda: publish_pending(settings))
    conn = connect(settings)
    try:
        conn.execute(
            "INSERT OR IGNORE INTO publish_queue "
            "SELECT DISTINCT 'visits', year(start_date), 'bench' FROM visits"
        )
    finally:
        conn.close()
    timed("publish_every_year", lambda: publish_pending(settings))
    assert again.facts_written == 0, "a fact of the same list looked changed"
    shutil.rmtree(home, ignore_errors=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Build once, then alternate trials of the two checkouts; print the best of each step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/relations-etl-writes"))
    parser.add_argument("--trial", type=Path, help=argparse.SUPPRESS)  # a child's home
    args = parser.parse_args(argv)
    work = args.workdir / str(args.rows)
    if args.trial:
        print(json.dumps(trial(work, args.trial)))
        return 0
    meta = build(work, args.rows, args.seed)
    print(f"{args.rows:,} rows, {meta['rows_read']:,} read; staged in {work}", flush=True)
    checkouts = {"before": args.before.resolve(), "after": REPO}
    best: dict[str, dict[str, float]] = {label: {} for label in checkouts}
    for repeat in range(args.repeats):
        for label, checkout in checkouts.items():
            env = {**os.environ, "PYTHONPATH": f"{checkout / 'src'}{os.pathsep}{HERE}"}
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rows",
                    str(args.rows),
                    "--workdir",
                    str(args.workdir),
                    "--before",
                    str(args.before),
                    "--trial",
                    str(args.workdir / f"home-{label}"),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            seconds = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"trial {repeat + 1} {label:6s} "
                + " ".join(f"{step} {seconds[step]:.2f}" for step in STEPS),
                flush=True,
            )
            for step, value in seconds.items():
                best[label][step] = min(best[label].get(step, float("inf")), value)
    print(f"\nbest of {args.repeats}, seconds: wall (CPU of all threads)")
    print(f"{'':24s} {'before':>15s} {'after':>15s}   after/before wall (CPU)")
    for step in STEPS:
        cpu = step + "_cpu"
        before, after = best["before"], best["after"]
        print(
            f"{step:24s} {before[step]:6.2f} ({before[cpu]:6.2f}) {after[step]:6.2f} "
            f"({after[cpu]:6.2f})   {after[step] / before[step]:5.2f} "
            f"({after[cpu] / before[cpu]:5.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
