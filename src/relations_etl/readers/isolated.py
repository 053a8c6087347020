"""Readers in native code this project does not control (calamine through fastexcel, the Parquet
reader) run in a child process with a memory limit, so that a crash or an exhausted memory
(calamine aborts the whole process when an allocation fails) fails that source alone.

The child comes from a fork server that has imported the readers once, so each read costs a
fork, not an interpreter start; its answer is an Arrow table (IPC stream) or a pickled
RelationsEtlError.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from relations_etl.errors import RelationsEtlError, SourceReadError
from relations_etl.limits import amount, env_name
from relations_etl.settings import Settings
from relations_etl.text import shown

_PRELOAD = ["relations_etl.extract", "relations_etl.readers.isolated_readers"]
_context: Any = None
_starting = threading.Lock()


# address space reserved up front that would count against the child's limit: pyarrow's
# mimalloc takes 1 GiB, glibc 64 MiB per thread
_LEAN = {"MIMALLOC_ARENA_RESERVE": "64MiB", "MALLOC_ARENA_MAX": "2"}


def _get_context() -> Any:
    global _context
    with _starting:
        return _context or _start_context()


def _start_context() -> Any:
    global _context
    if _context is None:
        # fork from this process is unsafe (polars, DuckDB and Prefect run threads); a fork
        # server is a fresh single-threaded interpreter that has only imported the readers
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        from multiprocessing import forkserver

        saved = {name: os.environ.get(name) for name in _LEAN}
        os.environ.update({k: v for k, v in _LEAN.items() if saved[k] is None})
        try:
            with _without_main():
                forkserver.ensure_running()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
        _context = context
    return _context


def _limit_memory(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """multiprocessing runs the parent's __main__ script again in every child it starts unless
    it is a `-m` module; the readers are importable modules, so the child needs none of it (a
    console script would import Prefect and the CLI into each reader child)."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _child(
    answer: Connection,
    limit: int,
    target: Callable[..., pa.Table],
    args: tuple[Any, ...],
    stderr: str,
) -> None:
    """Run `target(*args)` under the memory limit and send back its table or its error."""
    try:
        # what native code prints when it dies (calamine: "memory allocation of N bytes
        # failed", then a backtrace) goes to a file the parent quotes from, not the terminal
        os.environ["RUST_BACKTRACE"] = "0"
        log = os.open(stderr, os.O_WRONLY | os.O_APPEND)
        os.dup2(log, 2)
        os.close(log)
        _limit_memory(limit)
        table = target(*args)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        buffer = sink.getvalue()
        answer.send(("table", buffer.size))
        answer.send_bytes(memoryview(buffer))
    except RelationsEtlError as exc:
        answer.send(("error", exc))
    except MemoryError:
        answer.send(("memory", None))
    except BaseException as exc:  # the reader's own exception: its first line, never its data
        first = (str(exc).strip().splitlines() or [""])[0]
        answer.send(("failed", f"{type(exc).__name__}: {shown(first, 200, quoted=False)}"))
    finally:
        answer.close()


def _death(code: int | None) -> str:
    if code is None:
        return "it did not stop"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_isolated(
    target: Callable[..., pa.Table],
    args: tuple[Any, ...],
    *,
    what: str,
    settings: Settings,
    source: str,
    file: str,
) -> pa.Table:
    """`target(*args)` in a child process limited to settings.reader_memory_bytes of address
    space and settings.reader_timeout seconds; any way it fails is a SourceReadError."""
    limit = settings.reader_memory_bytes
    memory = f"{amount(limit)} ({env_name('reader_memory_bytes')})"
    context = _get_context()
    receive, send = context.Pipe(duplex=False)
    handle, stderr = tempfile.mkstemp(prefix="relations-etl-reader-", suffix=".log")
    os.close(handle)
    process = context.Process(target=_child, args=(send, limit, target, args, stderr), daemon=True)
    deadline = time.monotonic() + settings.reader_timeout
    with _without_main():
        process.start()
    send.close()
    try:
        kind, payload = _receive(receive, deadline, lambda: receive.recv())
        if kind == "table":
            data = _receive(receive, deadline, lambda: receive.recv_bytes())
            return pa.ipc.open_stream(data).read_all()
        if kind == "error":
            raise payload
        if kind == "memory":
            raise SourceReadError(
                f"the {what} reader ran out of memory under its limit of {memory}",
                source=source,
                file=file,
                hint="The file asks for more memory than its size explains; check it, or raise "
                "the limit named above if it is a genuine large list. Nothing was loaded.",
            )
        raise SourceReadError(
            f"the {what} reader failed on this file: {payload}", source=source, file=file
        )
    except EOFError:
        process.join(5)
        said = _first_words(stderr)
        raise SourceReadError(
            f"the {what} reader stopped without an answer ({_death(process.exitcode)}"
            + (f": {said}" if said else "")
            + f"), usually because the file made it allocate more than its memory limit of "
            f"{memory}",
            source=source,
            file=file,
            hint="Only this source failed. Check the file (a sheet or page declared far larger "
            "than its content), or raise the limit named above. Nothing was loaded.",
        ) from None
    except TimeoutError:
        raise SourceReadError(
            f"the {what} reader took longer than {settings.reader_timeout:g} s "
            f"({env_name('reader_timeout')}) and was stopped",
            source=source,
            file=file,
        ) from None
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(5)
        Path(stderr).unlink(missing_ok=True)


def _first_words(path: str) -> str:
    """The first line the dead child wrote, escaped and short (never the file's content)."""
    try:
        with open(path, "rb") as handle:
            first = handle.read(300).decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return shown(first[0], 120, quoted=False) if first else ""


def _receive(receive: Connection, deadline: float, get: Callable[[], Any]) -> Any:
    if not receive.poll(max(0.0, deadline - time.monotonic())):
        raise TimeoutError
    return get()
