"""Analyst SQL in a child process the kernel forbids to write: Linux Landlock under DuckDB's own
restrictions, so a query that slips past the statement check still cannot change a file.

The child comes from the readers' fork server (a clean single-threaded interpreter); it restricts
itself before DuckDB starts a thread (Landlock binds the calling thread and the threads it starts
afterwards), then opens the analyst connection and sends back an Arrow table (IPC stream) or a
pickled RelationsEtlError. Where the kernel has no Landlock the child runs with DuckDB's
restrictions alone, and says so.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from relations_etl.errors import QueryError, RelationsEtlError
from relations_etl.readers.isolated import _death, _get_context, _receive, _without_main

_log = logging.getLogger(__name__)

# <linux/landlock.h>, syscall numbers of every architecture but alpha/mips (one table since 5.13)
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
# the file system rights each ABI version knows: 1 has EXECUTE .. MAKE_SYM, 2 adds REFER,
# 3 TRUNCATE, 5 IOCTL_DEV; a ruleset may handle only the rights its kernel knows
_FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)  # a file is no folder
_NET_TCP = 1 | 2  # ABI 4: bind and connect
_CONNECT_TCP = 2
_RULE_NET_PORT = 2
_SCOPES = 1 | 2  # ABI 6: abstract UNIX sockets and signals outside the sandbox
_READ = READ_FILE | READ_DIR
_CODE = _READ | EXECUTE

# the seconds a child may take past DuckDB's own statement timeout to send its answer before it
# is killed
_GRACE = 5.0


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _NetPortAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel; 0 where there is none (or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(
        _CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
    )
    return max(0, int(version))


def _fs_rights(abi: int) -> int:
    return _FS_RIGHTS[max(v for v in _FS_RIGHTS if v <= abi)]


def restrict(read: Iterable[Path], write: Iterable[Path] = (), connect: Iterable[int] = ()) -> str:
    """Forbid this thread and every thread and process it starts from now on to write any file,
    and to read any but `read` (and to do anything but in `write`); what was done, in words.

    Every file system right the kernel knows is handled; `read` paths get reading (and running
    code, for the interpreter's own files), `write` paths every right. TCP is refused but for
    connections to the `connect` ports (the object store of published Parquet) and, from ABI 6,
    signals and abstract sockets beyond the sandbox are refused too. Where the kernel has no
    Landlock nothing changes and the words say so.
    """
    abi = landlock_abi()
    if abi < 1:
        return "Landlock is not available on this kernel: DuckDB's own restrictions only"
    libc = _libc()
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = int(libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0))
    if ruleset < 0:
        return _unavailable("landlock_create_ruleset", ctypes.get_errno())
    try:
        for paths, rights in ((read, _CODE), (write, handled)):
            for path in paths:
                _allow(libc, ruleset, path, rights & handled)
        for port in connect if abi >= 4 else ():
            _allow_port(libc, ruleset, port)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return _unavailable("prctl(PR_SET_NO_NEW_PRIVS)", ctypes.get_errno())
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            return _unavailable("landlock_restrict_self", ctypes.get_errno())
    finally:
        os.close(ruleset)
    return f"Landlock ABI {abi}: no file can be written, only the allowed paths read"


def _allow(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that is not there cannot be read either
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_add_rule({path}): {os.strerror(code)}")
    finally:
        os.close(fd)


def _allow_port(libc: ctypes.CDLL, ruleset: int, port: int) -> None:
    rule = _NetPortAttr(_CONNECT_TCP, port)
    if libc.syscall(_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(rule), 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"landlock_add_rule(port {port}): {os.strerror(code)}")


def _unavailable(call: str, code: int) -> str:
    # EOPNOTSUPP: built in but switched off at boot; ENOSYS: not built in
    why = errno.errorcode.get(code, str(code))
    return f"Landlock refused ({call}: {why}): DuckDB's own restrictions only"


def code_paths() -> list[Path]:
    """What the child needs to read besides the query's paths: the interpreter's and this
    package's code, and the system files DuckDB sizes its threads and memory from (it fails to
    start without /proc/self/cgroup)."""
    package = Path(__file__).resolve().parent.parent  # src/ or site-packages
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix)
    system = ("/proc/self/cgroup", "/sys/fs/cgroup", "/sys/devices/system/cpu")
    return list(dict.fromkeys([*(Path(p).resolve() for p in (*prefixes, *system)), package]))


def _child(
    answer: Connection,
    target: Callable[..., pa.Table],
    args: tuple[Any, ...],
    read: list[Path],
    scratch: Path,
    connect: list[int],
    environ: dict[str, str],
) -> None:
    """Restrict this process, run `target(*args, scratch)` and send back its table or error."""
    # the fork server's environment is that of its start: the caller's variables as of now
    os.environ.update(environ)
    try:
        state = restrict([*read, *code_paths()], [scratch], connect)
        try:
            table = target(*args, scratch)
        except RelationsEtlError as exc:
            answer.send(("error", state, exc))
            return
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        buffer = sink.getvalue()
        answer.send(("table", state, buffer.size))
        answer.send_bytes(memoryview(buffer))
    except BaseException as exc:  # the sandbox's own failure: its type and first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        answer.send(("failed", "", f"{type(exc).__name__}: {first}"))
    finally:
        answer.close()


def stopped_after(timeout: float) -> QueryError:
    """The error of a query stopped at RELATIONS_ETL_SQL_TIMEOUT, by DuckDB or by a kill."""
    return QueryError(
        f"the query ran longer than {timeout:g} s and was stopped",
        hint="Narrow the query, or raise RELATIONS_ETL_SQL_TIMEOUT; the warehouse is unchanged.",
    )


def run_sandboxed(
    target: Callable[..., pa.Table],
    args: tuple[Any, ...],
    *,
    read: Iterable[Path],
    timeout: float,
    grace: float = _GRACE,
    connect: Iterable[int] = (),
    environ: Mapping[str, str] | None = None,
) -> pa.Table:
    """`target(*args, scratch)` in a child process that can read only `read` and write only
    `scratch` (a throwaway folder for DuckDB's spills, removed afterwards) and connect only to
    the TCP ports `connect` (with the variables `environ` set), killed past
    `timeout` seconds plus `grace` (for DuckDB's own timeout to answer); its table comes back.
    """
    context = _get_context()
    scratch = Path(tempfile.mkdtemp(prefix="relations-etl-sql-"))
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(send, target, args, list(read), scratch, list(connect), dict(environ or {})),
        daemon=True,
    )
    deadline = time.monotonic() + timeout + grace
    try:
        with _without_main():
            process.start()
        send.close()  # the child's end: EOF here once the child is gone
        kind, state, payload = _receive(receive, deadline, receive.recv)
        if state:
            _log.info("sql sandbox: %s", state)
        if kind == "table":
            data = _receive(receive, deadline, receive.recv_bytes)
            return pa.ipc.open_stream(data).read_all()
        if kind == "error":
            raise payload
        raise QueryError(
            f"the query's sandbox failed: {payload}", hint="The warehouse is unchanged."
        )
    except EOFError:
        process.join(5)
        raise QueryError(
            f"the query stopped without an answer ({_death(process.exitcode)})",
            hint="The warehouse is unchanged. A query that needs much memory: narrow it, or "
            "lower RELATIONS_ETL_SQL_MEMORY_LIMIT below what the machine has.",
        ) from None
    except TimeoutError:
        raise stopped_after(timeout) from None
    finally:
        send.close()
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(5)
        shutil.rmtree(scratch, ignore_errors=True)
