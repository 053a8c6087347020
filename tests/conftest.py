"""Shared fixtures: a temporary warehouse, copies of the demo warehouse built once per session,
the command line in this process, a Prefect test server, local HTTP servers, the public lists."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import settings as hypothesis_settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from relations_etl.config import Source
from relations_etl.settings import Settings

# no property test fails for being slow: hypothesis's default 200 ms per example is a timing
# assertion, and this machine (CI's too) is shared; time is for bench/
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RELATIONS_ETL_SHARED_DATA", REPO.parent / "shared" / "data"))
# the demo's sources file; its lists are read in place, and no test may change them
DEMO = REPO / "examples" / "sources.yaml"


def shared(path: str) -> Path:
    """A file of ../shared/data; skipped when absent, a failure when CI requires it."""
    target = SHARED_DATA / path
    if not target.exists():
        if os.environ.get("RELATIONS_ETL_REQUIRE_SHARED_DATA"):
            pytest.fail(f"{target} is missing and CI requires the shared data")
        pytest.skip(f"{target} is absent: the public-domain lists live in ../shared/data")
    return target


def trips_source(path: Path, *, name: str = "trips", date: str = "date", **entry: Any) -> Source:
    """A visits list of the columns record, host, visitor_country, visitor, title and `date`
    (the start date), as the tests of snapshots, the quarantine and annual_summary write it."""
    columns = {
        "host": "host_country",
        "visitor_country": "visitor_country",
        "visitor": "visitor_name",
        "title": "visitor_title",
        date: "start_date",
    }
    return Source.model_validate(
        {
            "name": name,
            "kind": "visits",
            "uri": str(path),
            "mapping": {"record_id": "record", "columns": columns},
            **entry,
        }
    )


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) the tests of each of these modules
# run on one worker: they share a module fixture that costs seconds to build (a Dask cluster and
# a nightly run, a clone whose README commands run in order, the loads of the public lists).
ONE_WORKER = ("test_scale_out", "test_readme", "test_public_lists", "test_deploy")
# ... and the slowest tests are handed out first, so no worker is left with one at the end
FIRST = ("test_scale_out", "test_package", "test_deploy", "test_orchestration", "test_cli")
# The tests that read the session's nightly flow run (`demo_nightly`, 13-18 s) share a worker too,
# or each worker runs it once; a test that uses the fixture must be named here (checked).
NIGHTLY_READERS = (
    "tests/test_flows.py::test_nightly_loads_every_sample_source_and_reports_it",
    "tests/test_guarantees.py::test_nightly_twice_leaves_every_table_and_parquet_file_the_same",
    "tests/test_orchestration.py::test_ingest_of_every_demo_source_equals_the_nightly_run",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` with each module of ONE_WORKER as one group, tests in collection order.

    xdist 3.8 names a group by appending it to the test's `_nodeid`, which pytest 9.2 no longer
    reads: the scheduler here takes the groups from the module names instead."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid in NIGHTLY_READERS:
                return "demo_nightly"
            module = nodeid.split("::", 1)[0]
            return module if Path(module).stem in ONE_WORKER else nodeid

    config.option.loadscopereorder = False  # keep the order of FIRST, not the biggest group first
    return ModuleGroups(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a pytest-xdist worker, the modules of FIRST first; a run without workers is left as is.

    Either way a reader of `demo_nightly` missing from NIGHTLY_READERS is a usage error."""
    unnamed = [
        item.nodeid
        for item in items
        if "demo_nightly" in getattr(item, "fixturenames", ())
        and item.nodeid not in NIGHTLY_READERS
    ]
    if unnamed:
        raise pytest.UsageError(f"add to NIGHTLY_READERS in tests/conftest.py: {unnamed}")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {module: n for n, module in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(FIRST)))  # stable: file order kept


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a fresh warehouse under tmp_path."""
    return Settings(home=tmp_path / "warehouse")


def closed_port() -> str:
    """The URL of a Prefect API on a port of 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"  # nothing listens once the socket is closed


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for the whole session (real flow runs, no mocks).

    The flow runs of this process send no heartbeats: Prefect's heartbeat thread sleeps in
    whole seconds and the end of every flow run waits for it, 0-1 s idle per flow run (a nightly
    of the demo lists is five), and no test is about the heartbeats a server reads to find
    crashed runs (the tests of crashes kill the processes themselves).

    Its database starts as the embedded API's migrated template (`server.seed_database`), as
    `relations-etl run` does on a new PREFECT_HOME: 5 s to start, not 16 s of migrations."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing import utilities
    from relations_etl_flows.server import keep_template, seed_database

    databases: list[Path] = []

    def seeded_folder() -> str:
        # the harness's database is prefect-test.db in the folder it makes with mkdtemp()
        folder = Path(tempfile.mkdtemp(prefix="prefect-harness-"))
        databases.append(folder / "prefect-test.db")
        seed_database(databases[-1])
        return str(folder)

    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(utilities, "mkdtemp", seeded_folder)
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=120))
        if databases:
            keep_template(databases[0])  # where none was kept yet: the next start is fast
        stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        yield


class QuietHandler(SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.requested.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:
        self.requested.append(self.path)
        super().do_HEAD()


class NoListingHandler(QuietHandler):
    """A static server that, like a raw repository host, cannot list a folder."""

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "listing disabled")
        return None


Serve = Callable[[Path, type[QuietHandler]], tuple[str, list[str]]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start real HTTP servers on 127.0.0.1 (port 0) in background threads; stop them after."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(directory: Path, handler: type[QuietHandler]) -> tuple[str, list[str]]:
        requested: list[str] = []
        bound = type("Handler", (handler,), {"requested": requested})
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(bound, directory=str(directory))
        )
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}/", requested

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo lists (examples/sources.yaml) loaded once per session through the library.

    Never written: tests take a copy (`demo_warehouse`, `copy_warehouse`), about 0.1 s where a
    load takes seconds. A copy holds the same batches and bindings as a load of the demo
    sources file, so running those sources again on it skips them as unchanged.
    """
    from tests.state import run_all

    settings = Settings(home=tmp_path_factory.mktemp("demo-template") / "warehouse")
    run_all(DEMO, settings)
    return settings


def copy_warehouse(template: Settings, home: Path) -> Settings:
    """A copy of the warehouse of `template` at `home` (which must not exist), and its settings."""
    shutil.copytree(template.home, home)  # copy2: published files keep the mtimes audited
    # a warehouse naming its own home would read or write the template's files from the copy
    copied = home / template.db_path.relative_to(template.home)
    assert str(template.home).encode() not in copied.read_bytes(), (
        f"{template.db_path} names its home: a copy of it is not a separate warehouse"
    )
    return Settings(home=home)


@pytest.fixture
def demo_warehouse(demo_template: Settings, tmp_path: Path) -> Settings:
    """This test's own copy of the demo warehouse, at tmp_path/warehouse (the `settings` home)."""
    return copy_warehouse(demo_template, tmp_path / "warehouse")


@pytest.fixture(scope="session")
def sample_warehouse(demo_template: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo warehouse plus a user alias file, shared by the session; tests only read it."""
    settings = copy_warehouse(demo_template, tmp_path_factory.mktemp("sample") / "warehouse")
    settings.user_reference_dir.mkdir()
    (settings.user_reference_dir / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,note\nKazakstan,KAZ,,,a spelling seen in old lists\n",
        encoding="utf-8",
    )
    return settings


@dataclass(frozen=True)
class NightlyRun:
    """One run of the nightly flow: its flow run id, what it returned, the home it loaded."""

    flow_run_id: UUID
    results: list[Any]
    settings: Settings


@pytest.fixture(scope="session")
def demo_nightly(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> NightlyRun:
    """The nightly flow run once per session on the demo lists, writing the report of KAZ.

    Tests only read it: one that runs on from there takes a copy (`copy_warehouse`)."""
    from relations_etl_flows.ingest import nightly

    from tests.runs import run_flow

    settings = Settings(home=tmp_path_factory.mktemp("demo-nightly") / "warehouse")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RELATIONS_ETL_REPORT_COUNTRY", "kaz")
        flow_run_id, state = run_flow(nightly, config=str(DEMO), home=str(settings.home))
    return NightlyRun(flow_run_id, state.result(), settings)


@dataclass(frozen=True)
class Done:
    """What one command did: its exit code and what it printed."""

    code: int
    out: str
    err: str


class Cli:
    """`relations-etl` called in this process (`main(argv)`) on one warehouse home."""

    def __init__(
        self, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from relations_etl_flows.output import PIPE_WIDTH

        self.home = home
        self._capsys = capsys
        monkeypatch.setenv("RELATIONS_ETL_HOME", str(home))
        # what the console script sees writing to a pipe: no terminal, the pipe's width
        monkeypatch.setenv("COLUMNS", str(PIPE_WIDTH))
        # main() sets these for its process with setdefault: here they end with the test
        for name, value in (
            ("PREFECT_LOGGING_LEVEL", "WARNING"),
            ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL"),
        ):
            monkeypatch.setenv(name, os.environ.get(name, value))

    def __call__(self, *args: str) -> Done:
        """Run one command; its exit code as the console script would exit with it."""
        from relations_etl_flows.cli import main

        self._capsys.readouterr()  # what the test printed before is not this command's
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = self._capsys.readouterr()
        return Done(code, out, err)

    def sql(self, query: str) -> list[dict[str, str]]:
        """The rows of a read-only query, as `sql --csv` prints them."""
        done = self("sql", query, "--csv")
        assert done.code == 0, done.err
        return list(csv.DictReader(io.StringIO(done.out)))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line in this process on tmp_path/warehouse (the `settings` home)."""
    return Cli(tmp_path / "warehouse", monkeypatch, capsys)
