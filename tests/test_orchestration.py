"""One orchestration: the CLI's in-process ingest and the nightly flow leave the same warehouse;
the nightly's Prefect API starts in time, fails as a temporary error, and dies with the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from relations_etl_flows.cli import main

from relations_etl.config import Source, load_sources
from relations_etl.settings import Settings
from tests.conftest import DEMO, NightlyRun, closed_port
from tests.state import DEMO_ROWS, parquet_digests, row_counts, table_digests

SCRIPT = Path(sys.executable).parent / "relations-etl"


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {
        **env,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "RELATIONS_ETL_HOME": str(tmp_path / "warehouse"),
        **extra,
    }


def _ingest_args(source: Source, folder: Path) -> list[str]:
    """`relations-etl ingest` of one entry of a sources file: its mapping as a file."""
    mapping = folder / f"{source.name}.yaml"
    mapping.write_text(
        yaml.safe_dump(source.mapping.model_dump(mode="json", exclude_unset=True)),
        encoding="utf-8",
    )
    args = ["ingest", source.kind.value, source.uri, "--mapping", str(mapping)]
    args += ["--format", source.format] if source.format else []
    return [*args, "--name", source.name]


def test_ingest_of_every_demo_source_equals_the_nightly_run(
    tmp_path: Path, demo_nightly: NightlyRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingested = Settings(home=tmp_path / "ingested")
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(ingested.home))
    with temporary_settings(updates={PREFECT_API_URL: closed_port()}):  # never contacted
        for source in load_sources(DEMO):
            assert main(_ingest_args(source, tmp_path)) == 0

    # the session's nightly run of the demo lists (test_cli runs `run` itself on the command line)
    nightly = demo_nightly.settings
    assert table_digests(ingested, across_runs=True) == table_digests(nightly, across_runs=True)
    assert parquet_digests(ingested, across_runs=True) == parquet_digests(nightly, across_runs=True)
    assert row_counts(nightly) == row_counts(ingested) == DEMO_ROWS


def test_the_console_script_ingests_with_no_prefect_api(
    tmp_path: Path, demo_template: Settings
) -> None:
    """The installed script, PREFECT_API_URL naming a closed port: ingest never needs it."""
    env = _cli_env(tmp_path, PREFECT_API_URL=closed_port())
    visits, *_ = load_sources(DEMO)
    done = subprocess.run(
        [str(SCRIPT), *_ingest_args(visits, tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kz-visits-2023: read 11, loaded 8, rejected 3, deduplicated 0\n"
    assert done.stderr == ""
    ingested = Settings(home=tmp_path / "warehouse")
    # the rows the library loads from that list, every one
    assert (
        table_digests(ingested, across_runs=True)["visits"]
        == table_digests(demo_template, across_runs=True)["visits"]
    )


def test_run_against_an_unreachable_api_is_a_temporary_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(tmp_path / "warehouse"))
    closed = closed_port()
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        code = main(["run", "--config", str(DEMO)])
    err = capsys.readouterr().err
    assert code == 75, err
    assert f"PREFECT_API_URL={closed} does not answer" in err
    assert "bug" not in err
    assert not (tmp_path / "warehouse" / "relations.duckdb").exists()


def test_an_embedded_api_that_starts_too_slowly_is_a_temporary_error(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, RELATIONS_ETL_PREFECT_STARTUP_TIMEOUT="0.2")
    done = subprocess.run(
        [str(SCRIPT), "run", "--config", str(DEMO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 75, done.stderr
    assert "did not start within RELATIONS_ETL_PREFECT_STARTUP_TIMEOUT=0.2 s" in done.stderr
    assert "PREFECT_API_URL" in done.stderr  # what to do instead
    assert "bug" not in done.stderr and "Traceback" not in done.stderr


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_the_embedded_api_dies_with_a_killed_cli(tmp_path: Path) -> None:
    cli = subprocess.Popen(
        [str(SCRIPT), "run", "--config", str(DEMO)],
        env=_cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while not servers and time.monotonic() < deadline and cli.poll() is None:
            servers = [p for p in _children(cli.pid) if "uvicorn" in _cmdline(p)]
            time.sleep(0.05)
        assert servers, "the CLI started no embedded Prefect API"
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in servers), "the Prefect API outlived the CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize("argv", [["--help"], ["sql", "--help"], ["--version"], ["no-such"]])
def test_help_imports_no_prefect_and_no_engine(argv: list[str]) -> None:
    """The parser alone answers `--help`, `--version` and a usage error: Prefect, polars,
    DuckDB, pyarrow, rich and the stages are for the commands that use them (0.36 s, not
    1.13 s, for `relations-etl --help` measured on this kind of machine)."""
    heavy = ("prefect", "polars", "duckdb", "pyarrow", "rich", "pandera", "relations_etl.config")
    code = (
        "import sys\n"
        "from relations_etl_flows.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m for m in sys.modules if m.startswith({heavy!r})}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_flow_runs_on_the_embedded_api_send_no_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded API stops with the command, so nobody is left to read heartbeats; and the
    end of each flow run waited up to 1 s for Prefect's heartbeat thread (a configured API,
    a deployment's server, is left to Prefect's settings)."""
    import httpx
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    from relations_etl_flows.server import prefect_api

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    # Prefect's default, whatever this session set (its flow runs send none either)
    every = {PREFECT_API_URL: None, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}
    with temporary_settings(updates=every):
        with prefect_api(Settings(home=tmp_path / "warehouse")) as url:
            assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180


def test_a_new_prefect_database_is_a_copy_of_the_first_one_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start on a machine keeps its migrated database (read while in use, its WAL
    included) as the template; a new database is a copy of it, never one over another's."""
    import sqlite3

    from relations_etl_flows.server import _template, keep_template, seed_database

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tmp_path / "first" / "prefect.db"
    assert not seed_database(first) and not first.exists()  # no template yet: migrate

    first.parent.mkdir()
    server = sqlite3.connect(first)
    server.execute("PRAGMA journal_mode=WAL")
    server.execute("CREATE TABLE block_type (name TEXT)")
    server.execute("INSERT INTO block_type VALUES ('s3-bucket')")
    server.commit()  # in the WAL, not yet in the file: the server still has it open
    keep_template(first)
    server.execute("INSERT INTO block_type VALUES ('a run after the template was kept')")
    server.commit()
    keep_template(first)  # a template is kept once
    server.close()
    assert _template().is_file()

    new = tmp_path / "new" / "prefect.db"
    assert seed_database(new)
    with sqlite3.connect(new) as copy:
        assert copy.execute("SELECT name FROM block_type").fetchall() == [("s3-bucket",)]

    other = tmp_path / "other" / "prefect.db"
    other.parent.mkdir()
    other.write_bytes(b"another process's database")
    assert seed_database(other)
    assert other.read_bytes() == b"another process's database"
    assert sorted(p.name for p in other.parent.iterdir()) == ["prefect.db"]  # no leftovers
