"""The nightly flow on a 2-worker local Dask cluster gives the warehouse and Parquet of one
process, sources of several files in S3 prepared file by file on several workers included, and
the Prefect global concurrency limit keeps a second run out (real flow runs under
prefect_test_harness, a real LocalCluster and a real S3-compatible server on 127.0.0.1)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.concurrency.sync import concurrency
from relations_etl_flows import cli, scale
from relations_etl_flows.ingest import nightly

from relations_etl import pipeline
from relations_etl.audit import LoadResult
from relations_etl.errors import EX_TEMPFAIL, SourcesFailedError, WarehouseLockedError
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.state import parquet_digests, sample_lists, table_digests
from tests.test_object_storage import _fs
from tests.test_object_storage import s3_endpoint as s3_endpoint  # the S3 server fixture

pytestmark = pytest.mark.usefixtures("prefect_server")
LIMIT = "relations-etl-warehouse"
BATCH_ROWS = "2"
"""Raw rows per chunk in this module: the files of a source cut in several chunks, at other
places than the source's combined table is cut in one process."""
BY_FILE = {"visits-by-file": "by-file", "visits-by-row": "by-row", "visits-mixed": "mixed"}
"""The sources of several S3 files: ids from a column, ids by file and row (no record_id), and
files of other columns (prepared again in one piece when their staged rows come together)."""


@pytest.fixture(scope="module", autouse=True)
def small_chunks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RELATIONS_ETL_BATCH_ROWS", BATCH_ROWS)
        yield


def _with_s3_sources(config: Path, endpoint: str) -> Path:
    """The demo visits in S3 as prefixes of several files, with rows that repeat or conflict
    with rows of another file, and rejected rows in several files."""
    fs = _fs(endpoint)
    bucket = f"lists-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    data = config.parent / "data"
    lines = (data / "kz_visits_2023.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    parts = [header + "".join(body[n::3]) for n in range(3)]
    # a repeat of a row of part 0 and its second row changed: a repeat and a conflict
    parts.append(header + body[0] + body[3].replace("official", "working"))
    for prefix in ("by-file", "by-row"):
        for n, text in enumerate(parts):
            fs.pipe(f"{bucket}/{prefix}/part-{n}.csv", text.encode())
    fs.pipe(f"{bucket}/mixed/a.csv", parts[0].encode())
    fewer = [",".join(line.split(",")[:9]) + "\n" for line in parts[1].splitlines()]
    fs.pipe(f"{bucket}/mixed/b.csv", "".join(fewer).encode())  # without the notes column
    spec = yaml.safe_load(config.read_text(encoding="utf-8"))
    demo = next(s for s in spec["sources"] if s["name"] == "kz-visits-2023")
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    for name, prefix in BY_FILE.items():
        entry = {
            **demo,
            "name": name,
            "uri": f"s3://{bucket}/{prefix}/",
            "storage_options": options,
        }
        if name == "visits-by-row":
            entry["mapping"] = {**demo["mapping"], "record_id": []}
        spec["sources"].append(entry)
    config.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return config


def _with_synthetic_sources(config: Path, files: int = 4) -> Path:
    """The demo lists plus a visits list split into several files, each its own source."""
    data = config.parent / "data"
    lines = (data / "kz_visits_2023.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    spec = yaml.safe_load(config.read_text(encoding="utf-8"))
    demo = next(s for s in spec["sources"] if s["name"] == "kz-visits-2023")
    for n in range(files):
        name = f"part-{n}.csv"
        (data / name).write_text(header + "".join(body[n::files]), encoding="utf-8")
        spec["sources"].append({**demo, "name": f"visits-part-{n}", "uri": f"data/{name}"})
    config.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return config


def _only(config: Path, name: str) -> Path:
    """The sources file with its one source `name` (a run about the slot, not the lists)."""
    spec = yaml.safe_load(config.read_text(encoding="utf-8"))
    spec["sources"] = [s for s in spec["sources"] if s["name"] == name]
    config.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One 2-worker local Dask cluster for the module, reached by RELATIONS_ETL_DASK_ADDRESS
    (a temporary cluster per run is tested once, on the command line)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=40,
    ) as local:
        yield str(local.scheduler_address)


Single = tuple[Path, Settings, list[LoadResult]]


@pytest.fixture(scope="module")
def single(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None, s3_endpoint: str
) -> Single:
    """The demo lists, a visits list split into four sources and the visits as S3 prefixes of
    several files, run in one process."""
    folder = tmp_path_factory.mktemp("single")
    config = _with_s3_sources(_with_synthetic_sources(sample_lists(folder / "lists")), s3_endpoint)
    settings = Settings(home=folder / "warehouse")
    with pytest.MonkeyPatch.context() as patch:
        # the reference: every source read as one table (one process too stages a prefix file
        # by file, as workers do, unless told not to)
        patch.setattr(pipeline, "source_parts", lambda fetched: None)
        return config, settings, nightly(config=str(config), home=str(settings.home))


@pytest.fixture
def on_cluster(cluster: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELATIONS_ETL_DASK_ADDRESS", cluster)
    return cluster


def test_two_dask_workers_give_the_tables_and_parquet_of_one_process(
    single: Single, on_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, alone, one = single
    staging = tmp_path / "shared-staging"
    monkeypatch.setenv("RELATIONS_ETL_STAGING_DIR", str(staging))
    spread = Settings(home=tmp_path / "spread")
    whole: list[str] = []  # sources prepared in one piece in this process (not on a worker)
    prepare = pipeline._prepare_whole
    monkeypatch.setattr(
        pipeline,
        "_prepare_whole",
        lambda f, s, *a, **k: whole.append(s.name) or prepare(f, s, *a, **k),
    )

    two = nightly(config=str(config), home=str(spread.home), task_runner="dask")

    assert [r.source for r in two] == [r.source for r in one]  # committed in the given order
    for a, b in zip(one, two, strict=True):
        assert (b.rows_read, b.rows_loaded, b.rows_rejected, b.rows_deduplicated) == (
            a.rows_read,
            a.rows_loaded,
            a.rows_rejected,
            a.rows_deduplicated,
        )
    assert table_digests(spread, across_runs=True) == table_digests(alone, across_runs=True)
    assert parquet_digests(spread, across_runs=True) == parquet_digests(alone, across_runs=True)
    assert len(parquet_digests(spread)) > 4
    # every source was prepared by a task of this flow run (on the cluster's workers)
    flow_run = run_query(spread, "SELECT DISTINCT flow_run_id FROM load_batches").item()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run]))
        )
    prepared = [r for r in runs if r.name.startswith("prepare_source")]
    assert len(prepared) == len(two) and all(r.state_type == "COMPLETED" for r in prepared)
    # the files of each S3 prefix were transformed by a task each, staged in the shared folder
    files = [r for r in runs if r.name.startswith("stage_part")]
    assert len(files) == 4 + 4 + 2 and all(r.state_type == "COMPLETED" for r in files)
    assert staging.is_dir() and not any(staging.iterdir())  # every staged file removed
    assert whole == ["visits-mixed"]  # files of other columns: again in one piece, here
    by_source = {r.source: r for r in two}
    demo, by_id, by_row, _ = (by_source[n] for n in ("kz-visits-2023", *BY_FILE))
    assert by_id.rows_deduplicated == 1  # the repeat across files
    assert by_id.rows_rejected > demo.rows_rejected  # and the conflict across files
    assert by_row.rows_loaded == by_row.rows_read - demo.rows_rejected
    # a second run: every source unchanged, skipped after hashing alone
    again = nightly(config=str(config), home=str(spread.home), task_runner="dask")
    assert all(r.unchanged_since for r in again)
    assert table_digests(spread, across_runs=True) == table_digests(alone, across_runs=True)


def test_a_failing_source_on_a_worker_fails_alone_and_is_audited(
    on_cluster: str, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    (config.parent / "data" / "kz_relations.csv").unlink()
    settings = Settings(home=tmp_path / "w")
    with pytest.raises(SourcesFailedError, match="kz-relations"):
        nightly(config=str(config), home=str(settings.home), task_runner="dask")
    rows = run_query(settings, "SELECT source, status FROM load_batches ORDER BY source").rows()
    assert [tuple(r) for r in rows] == [
        ("kz-memberships", "succeeded"),
        ("kz-relations", "failed"),
        ("kz-reported-totals", "succeeded"),
        ("kz-visits-2023", "succeeded"),
    ]


def test_a_run_waits_for_the_global_concurrency_slot_then_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _only(sample_lists(tmp_path / "lists"), "kz-reported-totals")
    home = tmp_path / "w"
    nightly(config=str(config), home=str(home))  # creates the limit, with one slot
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(LIMIT)
    assert limit.limit == 1 and limit.active_slots == 0

    monkeypatch.setenv("RELATIONS_ETL_LOCK_TIMEOUT", "2")
    # a run on another machine holds the slot
    with concurrency(LIMIT, occupy=1, strict=True), pytest.raises(WarehouseLockedError) as held:
        nightly(config=str(config), home=str(tmp_path / "other"), force=True)
    assert LIMIT in held.value.message
    assert not (tmp_path / "other" / "relations.duckdb").exists()  # nothing was written


def test_run_task_runner_dask_on_the_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the demo lists: the sources of several files, by file on the workers, are the first
    # test's; this one is about the command line and its temporary cluster
    config = sample_lists(tmp_path / "lists")
    alone = Settings(home=tmp_path / "alone")
    nightly(config=str(config), home=str(alone.home))
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(tmp_path / "w"))
    monkeypatch.setenv("RELATIONS_ETL_DASK_WORKERS", "2")  # a temporary local cluster
    assert cli.main(["run", "--config", str(config), "--task-runner", "dask"]) == 0
    assert table_digests(Settings(), across_runs=True) == table_digests(alone, across_runs=True)
    assert parquet_digests(Settings(), across_runs=True) == parquet_digests(alone, across_runs=True)
    # a scheduler that does not answer: the run fails as temporary before reading anything
    shutil.rmtree(tmp_path / "w")
    monkeypatch.setenv("RELATIONS_ETL_DASK_ADDRESS", "tcp://127.0.0.1:9")
    # nothing listens there: every try is refused at once, and the client gives up when its
    # timeout is over (10 s of retries, an idle wait, where 1 s makes the same failure)
    monkeypatch.setattr(scale, "CONNECT_TIMEOUT", 1)
    code = cli.main(["run", "--config", str(config), "--task-runner", "dask"])
    assert code == EX_TEMPFAIL
    assert "RELATIONS_ETL_DASK_ADDRESS" in capsys.readouterr().err
