"""Scaling out: one visits source of several files in S3, run by the nightly flow in one process
and on a local Dask cluster of 1 and 2 workers; wall time and peak memory of each process.

The source is bench/run.py's synthetic visits (`generate`), cut into `--files` CSV files under
one prefix of an S3-compatible server on 127.0.0.1 (moto's server, a process of its own). Each
configuration runs in a spawned process of its own, under Prefect's test harness, into a fresh
warehouse home; the Dask cluster is started before the clock starts. Writes
bench/results/scale.json (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from run import MIB, RESULTS_DIR, _answer, environment, generate, make_source

RUNS = ("one process", "dask, 1 worker", "dask, 2 workers")
KEY = SECRET = "bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_s3() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on 127.0.0.1, in a process of its own (its memory is not the runs')."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("moto's S3 server did not start within 60 s")


def write_lists(work: Path, endpoint: str, files: int, rows: int, seed: int) -> dict[str, Any]:
    """The synthetic visits in `files` CSV files of `rows` rows under s3://bucket/visits/, and
    the sources file naming that prefix; returns what was written."""
    import polars as pl
    import s3fs
    import yaml

    whole = work / "visits.csv"
    written = generate(whole, files * rows, seed)
    fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    frame = pl.read_csv(whole, infer_schema=False)
    part = work / "part.csv"
    for n in range(files):
        frame.slice(n * rows, rows).write_csv(part)
        fs.put_file(str(part), f"{bucket}/visits/part-{n:03d}.csv")
    part.unlink()
    whole.unlink()
    entry = json.loads(make_source(Path("visits.csv")).model_dump_json(by_alias=True))
    entry.update(
        name="bench-visits-by-file",
        uri=f"s3://{bucket}/visits/",
        format="csv",
        storage_options={"key": KEY, "secret": SECRET, "endpoint_url": endpoint},
    )
    config = work / "sources.yaml"
    config.write_text(yaml.safe_dump({"sources": [entry]}, sort_keys=False), encoding="utf-8")
    return {**written, "files": files, "rows_per_file": rows, "config": str(config)}


def _task_spans(flow_run: str) -> dict[str, Any]:
    """From the Prefect API's task runs of the flow run: seconds from the first worker task's
    start (reading the source) to the last one's end (its last file staged), and the seconds of
    each kind of task (the workers' prepare_source and stage_part; the flow's load, publish);
    in one process, `prepare_s` is its extract and transform tasks."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run]))
        )
    done = [r for r in runs if r.start_time and r.end_time]
    by_kind: dict[str, float] = {}
    for r in done:
        kind = r.name.rsplit("-", 1)[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + (r.end_time - r.start_time).total_seconds()
    on_workers = [r for r in done if r.name.startswith(("prepare_source", "stage_part"))]
    if not on_workers:  # one process: extract and transform, in the flow's process
        alone = by_kind.get("extract_source", 0.0) + by_kind.get("transform_source", 0.0)
        return {"prepare_s": alone, "task_s": by_kind}
    span = max(r.end_time for r in on_workers) - min(r.start_time for r in on_workers)
    return {"prepare_s": span.total_seconds(), "task_s": by_kind}


def _one_run(name: str, config: str, home: str, workers: int, queue: Any) -> None:
    """Child: one configuration, its wall time, its own peak RSS and each worker's."""
    from prefect.testing.utilities import prefect_test_harness
    from relations_etl_flows.ingest import nightly

    from relations_etl import pipeline
    from relations_etl.query import run_query
    from relations_etl.settings import Settings

    report: dict[str, Any] = {"run": name, "workers": workers}
    finish = pipeline.finish_parts

    def timed_finish(*args: Any) -> Any:  # the split of a source staged by file, in this process
        started = time.perf_counter()
        try:
            return finish(*args)
        finally:
            report["finish_parts_s"] = time.perf_counter() - started

    pipeline.finish_parts = timed_finish
    with prefect_test_harness(server_startup_timeout=240):
        cluster = None
        if workers:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=40,
            )
            os.environ["RELATIONS_ETL_DASK_ADDRESS"] = str(cluster.scheduler_address)
        started = time.perf_counter()
        results = nightly(config=config, home=home, task_runner="dask" if workers else None)
        report["wall_s"] = time.perf_counter() - started
        if cluster is not None:
            with Client(cluster) as client:
                peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            report["worker_peak_rss_mib"] = sorted(kib / MIB for kib in peaks.values())
            cluster.close()
        flow_run = run_query(
            Settings(home=Path(home)), "SELECT any_value(flow_run_id) FROM load_batches"
        )
        report.update(_task_spans(str(flow_run.item())))
        (result,) = results
        report.update(
            rows_read=result.rows_read,
            rows_loaded=result.rows_loaded,
            rows_rejected=result.rows_rejected,
            rows_deduplicated=result.rows_deduplicated,
        )
        digest = run_query(
            Settings(home=Path(home)),
            "SELECT count(*) || ':' || sum(hash(visit_id, host_country, visitor_country, "
            "start_date, source_record)::HUGEINT) FROM visits",
        )
        report["visits_digest"] = str(digest.item())
    # the flow's process: the commit (split, load, publish) and, in one process, everything
    report["flow_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    queue.put(report)


def run_one(name: str, config: str, home: Path, workers: int) -> dict[str, Any]:
    """One configuration in a spawned process of its own, into a fresh home."""
    shutil.rmtree(home, ignore_errors=True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_one_run, args=(name, config, str(home), workers, queue))
    process.start()
    report = _answer(queue, process)
    process.join()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the three configurations, print a table, write bench/results/scale.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-rows", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.batch_rows:
        os.environ["RELATIONS_ETL_BATCH_ROWS"] = str(args.batch_rows)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="relations-etl-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    server, endpoint = start_s3()
    try:
        started = time.perf_counter()
        data = write_lists(work, endpoint, args.files, args.rows_per_file, args.seed)
        took = time.perf_counter() - started
        print(f"{data['rows']:,} rows in {args.files} files, put in S3 in {took:.0f} s")
        runs = []
        for name, workers in zip(RUNS, (0, 1, 2), strict=True):
            report = run_one(name, data["config"], work / f"home-{workers}", workers)
            print(json.dumps(report), flush=True)
            runs.append(report)
    finally:
        server.kill()
        server.wait()
    counts = ("rows_read", "rows_loaded", "rows_rejected", "rows_deduplicated", "visits_digest")
    same = all("failed" not in r and all(r.get(k) == runs[0].get(k) for k in counts) for r in runs)
    ok = same and runs[0].get("rows_rejected") == data["bad_rows"]
    report = {
        "data": {k: v for k, v in data.items() if k != "config"},
        "runs": runs,
        "checks": {"same_result_in_every_run": same, "ok": ok},
        "environment": environment(),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "scale.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        f"{'run':<18} {'wall s':>8} {'prepare s':>10} {'split s':>8} {'load s':>7} "
        f"{'publish s':>10} {'flow peak MiB':>14} {'worker peaks MiB':>18}"
    )
    nan = float("nan")
    for r in runs:
        workers = ", ".join(f"{m:,.0f}" for m in r.get("worker_peak_rss_mib", [])) or "-"
        tasks = r.get("task_s", {})
        print(
            f"{r['run']:<18} {r.get('wall_s', nan):>8.1f} {r.get('prepare_s', nan):>10.1f} "
            f"{r.get('finish_parts_s', nan):>8.1f} {tasks.get('load_prepared', nan):>7.1f} "
            f"{tasks.get('publish', nan):>10.1f} {r.get('flow_peak_rss_mib', nan):>14,.0f} "
            f"{workers:>18}"
        )
    print("same result in every run" if same else "RESULTS DIFFER", "; ok" if ok else "; NOT OK")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
