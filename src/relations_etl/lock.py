"""Run lock: one writing run per warehouse; another run waits for it, then fails naming it."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relations_etl.errors import WarehouseError, WarehouseLockedError
from relations_etl.settings import Settings

# flock belongs to an open file, so nested runs in one process (nightly -> ingest-source) must
# not open the file again and wait on themselves: the outermost run holds it for all of them
_held: set[Path] = set()
_guard = threading.Lock()
_runs: dict[Path, int] = {}


def run_number(settings: Settings) -> int:
    """How many times this process has taken the warehouse's run lock (outermost takes only):
    what is done once per run can tell a new run from the next source of the same one."""
    with _guard:
        return _runs.get(lock_path(settings).resolve(), 0)


def lock_path(settings: Settings) -> Path:
    """The lock file of a warehouse home."""
    return settings.home / ".run.lock"


def holder(settings: Settings) -> str:
    """Who holds (or last held) the lock, as written by that run."""
    try:
        info = json.loads(lock_path(settings).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    if not info:
        return "an unknown process"
    return (
        f"{info.get('what', 'a run')} (pid {info.get('pid')} on {info.get('host')}, "
        f"started {info.get('started_at')})"
    )


def _unwritable(path: Path, exc: OSError) -> WarehouseError:
    return WarehouseError(
        f"cannot take the run lock {path}: {exc.strerror or exc}",
        hint="The warehouse home must be a writable folder with free space "
        "(RELATIONS_ETL_HOME); nothing was changed.",
    )


@contextmanager
def run_lock(settings: Settings, what: str) -> Iterator[None]:
    """Hold the warehouse's run lock; wait up to `settings.lock_timeout` seconds for it."""
    path = lock_path(settings).resolve()
    with _guard:
        nested = path in _held
    if nested:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    deadline = time.monotonic() + settings.lock_timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise WarehouseLockedError(
                    f"the warehouse {settings.home} is busy: {holder(settings)} holds its lock"
                ) from None
            time.sleep(0.1)
    info = {
        "what": what,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError as exc:  # a full disk: the lock is ours, but who holds it cannot be said
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise _unwritable(path, exc) from exc
    with _guard:
        _held.add(path)
        _runs[path] = _runs.get(path, 0) + 1
    try:
        yield
    finally:
        with _guard:
            _held.discard(path)
        # the kernel also drops the lock if this process is killed, so a crash never leaves
        # a stale lock behind
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
