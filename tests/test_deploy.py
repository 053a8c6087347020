"""`make deploy` on a real Prefect server (the session's); real process workers run the deployments
to Completed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest
from relations_etl_flows.steps import enter_checkout

from relations_etl.errors import EX_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOYMENTS = ("nightly/nightly", "ingest-source/on-demand", "replay-quarantine/on-demand")
PULL_STEPS = [{"relations_etl_flows.steps.enter_checkout": {}}]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Prefect's server answers these when a request may simply be sent again (a busy SQLite
# database answers 503), and its own client retries them; so does this one
RETRYABLE = (429, 502, 503)


def _api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            attempt += 1
            if error.code not in RETRYABLE or attempt == 8:
                raise
            time.sleep(min(2**attempt, 10) / 2)


@pytest.fixture(scope="module")
def server(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's Prefect server (a real API process on 127.0.0.1, its own database), and
    the env to reach it from commands with a PREFECT_HOME of their own."""
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def _make_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # the venv running the tests is the one `make` would have built; never rebuild it here
    venv = Path(sys.prefix)
    return subprocess.run(
        ["make", "deploy", f"VENV={venv}", "-o", str(venv / ".installed")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run_worker(env: dict[str, str]) -> str:
    worker = subprocess.run(
        [BIN / "prefect", "worker", "start", "--pool", "relations-etl", "--run-once"],
        cwd=env["RELATIONS_ETL_HOME"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    return worker.stdout + worker.stderr


def _start(api: str, deployment: dict[str, Any], parameters: dict[str, Any]) -> str:
    run = _api(api, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    run_id: str = run["id"]
    return run_id


def _state(api: str, run_id: str) -> str:
    state: str = _api(api, f"/flow_runs/{run_id}")["state"]["type"]
    return state


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_deploy_and_a_process_worker_run_every_deployment_from_its_own_clone(
    server: dict[str, str], tmp_path: Path
) -> None:
    api = server["PREFECT_API_URL"]
    first = _make_deploy(server)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Created work pool 'relations-etl'" in first.stdout
    again = _make_deploy(server)  # the pool now exists: kept, and the deployments updated
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Created work pool" not in again.stdout
    pool = _api(api, "/work_pools/relations-etl")
    assert pool["type"] == "process"

    deployments = {name: _api(api, f"/deployments/name/{name}") for name in DEPLOYMENTS}
    for name, deployment in deployments.items():
        assert deployment["work_pool_name"] == "relations-etl", name
        assert deployment["entrypoint"].startswith("flows/relations_etl_flows/ingest.py:"), name
        assert deployment["pull_steps"] == PULL_STEPS, name
        # nothing of the machine that deployed: the worker's own clone is entered at run time
        assert str(REPO) not in json.dumps(deployment), name
    assert deployments["nightly/nightly"]["schedules"][0]["schedule"]["cron"] == "15 2 * * *"

    # the worker's clone lives elsewhere than the one `make deploy` ran in
    clone = tmp_path / "worker-clone"
    for part in ("flows", "examples"):
        shutil.copytree(REPO / part, clone / part)
    home = tmp_path / "warehouse"
    home.mkdir()
    worker_env = {
        **server,
        "RELATIONS_ETL_REPO": str(clone),
        "RELATIONS_ETL_HOME": str(home),
        "RELATIONS_ETL_REPORT_COUNTRY": "KAZ",
    }

    # as the README shows it
    run = subprocess.run(
        [BIN / "prefect", "deployment", "run", "nightly/nightly"],
        env=server,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    uuid = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout)
    assert uuid is not None, run.stdout
    nightly = uuid.group(1)
    log = _run_worker(worker_env)
    assert _state(api, nightly) == "COMPLETED", log
    with duckdb.connect(str(home / "relations.duckdb"), read_only=True) as db:
        batches = db.execute("SELECT source, status FROM load_batches ORDER BY source").fetchall()
    assert batches == [
        ("kz-memberships", "succeeded"),
        ("kz-relations", "succeeded"),
        ("kz-reported-totals", "succeeded"),
        ("kz-visits-2023", "succeeded"),
    ]
    artifacts = {
        a["key"]: a
        for a in _api(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [nightly]}}})
    }
    report = home / "reports" / "KAZ-2023.html"
    # Prefect stores a link artifact as a one-link markdown: the URI of the worker's file
    link = f"[Annual report KAZ-2023]({report.as_uri()})"
    assert artifacts["nightly-report"]["data"] == link
    assert report.is_file()
    summary = artifacts["nightly-summary"]["data"]
    assert str(report) in summary and "file://" not in summary

    # one list on demand (a sources-file entry as the parameter), then a replay of the quarantine
    source = {
        "name": "relations-on-demand",
        "kind": "relations",
        "uri": "examples/data/kz_relations.csv",
        "mapping": {
            "columns": {
                "country": "country",
                "counterpart": "counterpart",
                "event": "event",
                "date": "event_date",
                "notes": "notes",
            }
        },
    }
    ingest = _start(api, deployments["ingest-source/on-demand"], {"source": source})
    replay = _start(api, deployments["replay-quarantine/on-demand"], {})
    log = _run_worker(worker_env)
    assert (_state(api, ingest), _state(api, replay)) == ("COMPLETED", "COMPLETED"), log
    with duckdb.connect(str(home / "relations.duckdb"), read_only=True) as db:
        loaded = db.execute(
            "SELECT count(*) FROM relations WHERE source = 'relations-on-demand'"
        ).fetchone()
    assert loaded == (5,)


def test_the_pull_step_enters_the_clone_named_on_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    clone = tmp_path / "clone"
    (clone / "flows").mkdir(parents=True)
    (clone / "flows" / "prefect.yaml").write_text("name: relations-etl\n")
    monkeypatch.setenv("RELATIONS_ETL_REPO", str(clone))
    assert enter_checkout() == {"directory": str(clone)}
    assert Path.cwd() == clone

    monkeypatch.setenv("RELATIONS_ETL_REPO", str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        enter_checkout()
    assert raised.value.exit_code == EX_CONFIG
    assert f"RELATIONS_ETL_REPO={tmp_path} is not a clone" in str(raised.value)
    assert "make worker" in str(raised.value)

    # unset: the clone this package was installed from (an editable install, as `make` does)
    monkeypatch.delenv("RELATIONS_ETL_REPO")
    assert enter_checkout() == {"directory": str(REPO)}
    assert Path.cwd() == REPO
