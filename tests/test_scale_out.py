"""The nightly flow on a 2-worker local Dask cluster gives the warehouse and Parquet of one
process, and the Prefect global concurrency limit keeps a second run out (real flow runs under
prefect_test_harness, a real LocalCluster on 127.0.0.1)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.concurrency.sync import concurrency
from relations_etl_flows import cli
from relations_etl_flows.ingest import nightly

from relations_etl.audit import LoadResult
from relations_etl.errors import EX_TEMPFAIL, SourcesFailedError, WarehouseLockedError
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.state import parquet_digests, sample_lists, table_digests

pytestmark = pytest.mark.usefixtures("prefect_server")
LIMIT = "relations-etl-warehouse"


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
def single(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Single:
    """The demo lists and a visits list split into four sources, run in one process."""
    folder = tmp_path_factory.mktemp("single")
    config = _with_synthetic_sources(sample_lists(folder / "lists"))
    settings = Settings(home=folder / "warehouse")
    return config, settings, nightly(config=str(config), home=str(settings.home))


@pytest.fixture
def on_cluster(cluster: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELATIONS_ETL_DASK_ADDRESS", cluster)
    return cluster


def test_two_dask_workers_give_the_tables_and_parquet_of_one_process(
    single: Single, on_cluster: str, tmp_path: Path
) -> None:
    config, alone, one = single
    spread = Settings(home=tmp_path / "spread")

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
    config = sample_lists(tmp_path / "lists")
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
    single: Single,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, alone, _ = single
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(tmp_path / "w"))
    monkeypatch.setenv("RELATIONS_ETL_DASK_WORKERS", "2")  # a temporary local cluster
    assert cli.main(["run", "--config", str(config), "--task-runner", "dask"]) == 0
    assert table_digests(Settings(), across_runs=True) == table_digests(alone, across_runs=True)
    assert parquet_digests(Settings(), across_runs=True) == parquet_digests(alone, across_runs=True)
    # a scheduler that does not answer: the run fails as temporary before reading anything
    shutil.rmtree(tmp_path / "w")
    monkeypatch.setenv("RELATIONS_ETL_DASK_ADDRESS", "tcp://127.0.0.1:9")
    code = cli.main(["run", "--config", str(config), "--task-runner", "dask"])
    assert code == EX_TEMPFAIL
    assert "RELATIONS_ETL_DASK_ADDRESS" in capsys.readouterr().err
