"""Crash safety, concurrency and retries: runs killed with SIGKILL, runs that overlap, servers
that fail on purpose. `make faults` runs this file; `make test` runs it with the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from relations_etl_flows.ingest import ingest_source

from relations_etl.config import Kind, Source, load_sources
from relations_etl.errors import WarehouseLockedError
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO, copy_warehouse
from tests.state import edit_relations, parquet_digests, run_all, sample_lists, table_digests

pytestmark = pytest.mark.faults
SCRIPT = Path(sys.executable).parent / "relations-etl"


def _driver(point: str, action: str, config: Path, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.driver", point, action, str(config)],
        cwd=REPO,
        env={**os.environ, "RELATIONS_ETL_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@dataclass(frozen=True)
class TwoVersions:
    """The sample lists after edit_relations, a warehouse holding their first version, and the
    digests of a warehouse that loaded the first version, then the second."""

    config: Path
    old: Settings
    old_tables: dict[str, str]
    new_tables: dict[str, str]
    new_parquet: dict[str, str]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> TwoVersions:
    """Built once for the killed runs: each kills a run on its own copy of `old`."""
    folder = tmp_path_factory.mktemp("two-versions")
    config = sample_lists(folder / "lists")
    old = Settings(home=folder / "old")
    run_all(config, old)
    clean = copy_warehouse(old, folder / "clean")
    old_tables = table_digests(old, across_runs=True)
    edit_relations(config)
    run_all(config, clean)
    new_tables = table_digests(clean, across_runs=True)
    assert old_tables["relations"] != new_tables["relations"]
    return TwoVersions(
        config, old, old_tables, new_tables, parquet_digests(clean, across_runs=True)
    )


@pytest.mark.parametrize(
    ("point", "committed"),
    [("extract", False), ("load", False), ("publish", True), ("rename", True)],
)
def test_a_run_killed_at_any_stage_loses_nothing(
    two_versions: TwoVersions, tmp_path: Path, point: str, committed: bool
) -> None:
    config, old, new = two_versions.config, two_versions.old_tables, two_versions.new_tables
    crashed = copy_warehouse(two_versions.old, tmp_path / "crashed")
    assert table_digests(crashed, across_runs=True) == old

    killed = _driver(point, "kill", config, crashed.home)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL

    # the warehouse opens and holds the old or the new state, never a mix
    assert table_digests(crashed, across_runs=True) == (new if committed else old)
    # a reader of the Parquet never meets a partial file: every *.parquet is whole
    for path in crashed.parquet_dir.rglob("*.parquet"):
        pq.read_table(path)

    run_all(config, crashed)
    assert table_digests(crashed, across_runs=True) == new
    assert parquet_digests(crashed, across_runs=True) == two_versions.new_parquet
    assert not list(crashed.parquet_dir.rglob("*.tmp")), "leftovers of the killed publish"
    statuses = run_query(crashed, "SELECT status FROM load_batches").to_series().to_list()
    assert "running" not in statuses
    assert ("abandoned" in statuses) == (not committed)
    pending = run_query(crashed, "SELECT count(*) FROM publish_queue").item()
    assert pending == 0


def test_overlapping_runs_wait_or_name_the_holder_and_readers_see_whole_states(
    tmp_path: Path,
) -> None:
    config = sample_lists(tmp_path / "lists")
    settings = Settings(home=tmp_path / "warehouse")
    run_all(config, settings)
    count = "SELECT count(*) AS n FROM relations"
    before = run_query(settings, count).item()
    edit_relations(config)
    first = _driver("load", "pause", config, settings.home)
    try:
        _wait_for(settings.home / "paused", first)
        relations = load_sources(config)[2]
        # another run gives up after its timeout, naming the run that holds the warehouse
        impatient = Settings(home=settings.home, lock_timeout=0.5)
        with pytest.raises(WarehouseLockedError, match=f"pid {first.pid}"):
            run_source(relations, impatient)
        # an analyst in the middle of the load waits for its commit instead of a half state
        env = {**os.environ, "RELATIONS_ETL_HOME": str(settings.home)}
        reader = subprocess.Popen(
            [str(SCRIPT), "sql", count, "--csv"],
            env={**env, "RELATIONS_ETL_LOCK_TIMEOUT": "120"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        hurried = subprocess.run(
            [str(SCRIPT), "sql", count],
            env={**env, "RELATIONS_ETL_LOCK_TIMEOUT": "0.5"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert hurried.returncode == 75
        assert "another process has it open" in hurried.stderr
        assert "Traceback" not in hurried.stderr
        assert reader.poll() is None, "the reader cannot open the warehouse mid-load"
        (settings.home / "release").touch()
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        after = int(out.splitlines()[1])
        assert after == before + 2
        first.communicate(timeout=120)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the patient run went on after the first one and found nothing new to do
    patient = run_source(load_sources(config)[2], settings)
    assert patient.unchanged_since is not None
    assert run_query(settings, count).item() == after


class FlakyHandler(BaseHTTPRequestHandler):
    """Serves one CSV; the first `failures` requests fail the way `mode` says."""

    body = b"country,counterpart,event,date\nKazakhstan,China,established,1992-01-03\n"
    mode = "503"
    failures = 2
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if len(self.requests) <= self.failures:
            if self.mode == "silent":
                # answer nothing for longer than the client's timeout
                time.sleep(2)
                self.close_connection = True
                return
            if self.mode == "reset":
                # close the socket without an answer: the client sees a reset connection
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_error(int(self.mode))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def flaky() -> Iterator[type[FlakyHandler]]:
    handler = type("Handler", (FlakyHandler,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/relations.csv"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _extract_runs(flow_run_id: object) -> list[int]:
    with get_client(sync_client=True) as client:
        return [
            r.run_count
            for r in client.read_task_runs()
            if r.flow_run_id == flow_run_id and r.name.startswith("extract_source")
        ]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("mode", "failures", "attempts"),
    # aiohttp itself resends a request once when the server drops the connection, so three
    # resets take two attempts of the task
    [("503", 2, 3), ("500", 2, 3), ("reset", 3, 2), ("silent", 1, 2), ("404", 1, 1)],
)
def test_transient_failures_are_retried_with_back_off_bad_answers_are_not(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flaky: type[FlakyHandler],
    mode: str,
    failures: int,
    attempts: int,
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_RETRY_DELAYS", "[0.2, 0.4, 0.8]")
    monkeypatch.setenv("RELATIONS_ETL_HTTP_TIMEOUT", "0.5")
    flaky.mode, flaky.failures = mode, failures
    source = Source(
        name="flaky",
        kind=Kind.RELATIONS,
        uri=flaky.url,  # type: ignore[attr-defined]
        mapping={
            "columns": {
                "country": "country",
                "counterpart": "counterpart",
                "event": "event",
                "date": "event_date",
            }
        },
    )
    state = ingest_source(source, home=str(tmp_path / "warehouse"), return_state=True)
    runs = _extract_runs(state.state_details.flow_run_id)
    assert runs == [attempts]
    if mode == "404":
        assert state.is_failed() and "404" in str(state.message)
        assert len(flaky.requests) == 1
    else:
        assert state.is_completed(), state.message
        assert state.result().rows_loaded == 1
        assert len(flaky.requests) == failures + 1
