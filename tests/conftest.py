"""Shared fixtures: a temporary warehouse, a Prefect test server, the public-domain lists."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from relations_etl.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RELATIONS_ETL_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(path: str) -> Path:
    """A file of ../shared/data; skipped when absent, a failure when CI requires it."""
    target = SHARED_DATA / path
    if not target.exists():
        if os.environ.get("RELATIONS_ETL_REQUIRE_SHARED_DATA"):
            pytest.fail(f"{target} is missing and CI requires the shared data")
        pytest.skip(f"{target} is absent: the public-domain lists live in ../shared/data")
    return target


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a fresh warehouse under tmp_path."""
    return Settings(home=tmp_path / "warehouse")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for the whole session (real flow runs, no mocks)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
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
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo lists loaded once for the session, plus a user alias file; tests only read it."""
    from tests.state import run_all, sample_lists

    root = tmp_path_factory.mktemp("sample")
    settings = Settings(home=root / "warehouse")
    run_all(sample_lists(root / "lists"), settings)
    settings.user_reference_dir.mkdir()
    (settings.user_reference_dir / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,note\nKazakstan,KAZ,,,a spelling seen in old lists\n",
        encoding="utf-8",
    )
    return settings
