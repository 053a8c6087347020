"""The Prefect API a CLI run reports to: PREFECT_API_URL when set, else an embedded server.

Prefect's own ephemeral server gives up after 20 s (too short on a busy 2-core machine, and on
the first start, which creates its database) and outlives a killed caller. This one waits
`Settings.prefect_startup_timeout`, logs to `<home>/logs/`, and dies with the process. A new
SQLite database starts as a copy of the one the first start on this machine migrated: Prefect's
116 migrations took 11 of the 16.6 s of a first start (5.1 s from the copy).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import prefect
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)

from relations_etl.errors import PrefectUnavailableError
from relations_etl.settings import Settings

_PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(parent: int) -> None:
    """In the child before exec: get SIGTERM when the CLI dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _sqlite_file() -> Path | None:
    """The file of the SQLite database the server will open, if it uses one."""
    url = get_current_settings().server.database.connection_url
    value = url.get_secret_value() if url is not None else ""
    scheme, _, path = value.partition(":///")
    if not scheme.startswith("sqlite") or not path or path.startswith(":memory:"):
        return None
    return Path(path.split("?", 1)[0])


def _template() -> Path:
    """Where this machine keeps the empty, migrated database of this Prefect version."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "relations-etl" / f"prefect-{prefect.__version__}.db"


def seed_database(database: Path) -> bool:
    """Create the missing `database` as a copy of the template; False where there is none."""
    template = _template()
    if not template.is_file():
        return False
    with contextlib.suppress(OSError):
        database.parent.mkdir(parents=True, exist_ok=True)
        part = database.with_name(f".{database.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(template, part)
            os.link(part, database)  # never over a database another process created meanwhile
        finally:
            part.unlink(missing_ok=True)
    return database.exists()


def keep_template(database: Path) -> None:
    """Save the database a first start has just migrated (no runs in it yet) as the template."""
    template = _template()
    if template.exists():
        return
    with contextlib.suppress(OSError, sqlite3.Error):
        template.parent.mkdir(parents=True, exist_ok=True)
        part = template.with_name(f".{template.name}.{os.getpid()}.tmp")
        try:
            # the backup API copies a consistent state of a database in use, its WAL included
            with (
                contextlib.closing(sqlite3.connect(database)) as source,
                contextlib.closing(sqlite3.connect(part)) as copy,
            ):
                source.backup(copy)
            os.replace(part, template)
        finally:
            part.unlink(missing_ok=True)


def _healthy(client: httpx.Client, api_url: str) -> bool:
    try:
        return client.get(f"{api_url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def _start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        # what Prefect's own ephemeral server sets: no UI, server-side settings final
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(prefect.__file__).parent.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    parent = os.getpid()
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _die_with_parent(parent),
        )
    return process, f"http://127.0.0.1:{port}/api"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])
    return ""


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[str]:
    """Yield the API URL flow runs report to while the block runs; stop what was started."""
    configured = PREFECT_API_URL.value()
    if configured:
        with httpx.Client(timeout=10) as client:
            if not _healthy(client, configured):
                raise PrefectUnavailableError(
                    f"the Prefect API at PREFECT_API_URL={configured} does not answer"
                )
        yield configured
        return
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "prefect-server.log"
    database = _sqlite_file()
    # migrated here, by this start, unless the template seeds it
    migrated = database is not None and not database.exists() and not seed_database(database)
    process, api_url = _start(log)
    try:
        deadline = time.monotonic() + settings.prefect_startup_timeout
        with httpx.Client(timeout=5) as client:
            while not _healthy(client, api_url):
                if process.poll() == _PORT_IN_USE:  # taken between the probe and the bind
                    process, api_url = _start(log)
                elif process.poll() is not None:
                    raise PrefectUnavailableError(
                        f"the embedded Prefect API exited with status {process.returncode} "
                        f"while starting ({log}: {_tail(log)})"
                    )
                if time.monotonic() > deadline:
                    limit = settings.prefect_startup_timeout
                    raise PrefectUnavailableError(
                        "the embedded Prefect API did not start within "
                        f"RELATIONS_ETL_PREFECT_STARTUP_TIMEOUT={limit:g} s"
                    )
                time.sleep(0.2)
        if migrated and database is not None:
            keep_template(database)
        # no heartbeats to a server that stops with the command: nobody is left to notice a
        # run that stops sending them, and the end of each flow run waited for the heartbeat
        # thread, which sleeps in whole seconds (0-1 s a flow run; a nightly makes five)
        with temporary_settings(
            updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        ):
            yield api_url
    finally:
        _stop(process)
