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

from relations_etl.errors import WarehouseLockedError
from relations_etl.settings import Settings

# flock belongs to an open file, so nested runs in one process (nightly -> ingest-source) must
# not open the file again and wait on themselves: the outermost run holds it for all of them
_held: set[Path] = set()
_guard = threading.Lock()


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


@contextmanager
def run_lock(settings: Settings, what: str) -> Iterator[None]:
    """Hold the warehouse's run lock; wait up to `settings.lock_timeout` seconds for it."""
    path = lock_path(settings).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _guard:
        nested = path in _held
    if nested:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    with _guard:
        _held.add(path)
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
