"""Fetch: the files of one URI (local file, HTTP(S), S3 or another fsspec protocol) hashed as
they stream by, within a byte limit counted while they arrive, and the files a folder or an
object-storage prefix holds.

No file is held in memory: a local file is hashed in blocks and read again, from disk, when it
is parsed; a remote one is copied to a spool file while it is hashed. Reading it again
(`open_hashed`) hashes it once more and refuses bytes other than those hashed. Readers get
their bytes from here and never open a URI themselves. Errors say what the user can do:
a missing file, key or bucket is a SourceMissingError (66), a refused credential a ConfigError
(78), a throttled or failing server a TransientSourceError (75, retried by the flow).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import fsspec

from relations_etl.config import check_uri, guess_format, resolve_local, uri_scheme
from relations_etl.errors import (
    ConfigError,
    RelationsEtlError,
    SourceMissingError,
    SourceReadError,
    TransientSourceError,
)
from relations_etl.limits import too_large
from relations_etl.settings import Settings
from relations_etl.text import shown

_CHUNK = 1 << 20
Screen = Callable[[bytes, int], None]
"""Looks at each chunk of a file as it arrives (with its offset) and raises to refuse it."""


Sink = Callable[[bytes], object]
"""Where the chunks of a file go once screened and hashed (a spool file's write, a list)."""


def _stream(
    read: Callable[[int], bytes],
    limit: int,
    uri: str,
    source: str,
    screen: Screen | None,
    sink: Sink | None,
) -> tuple[int, str]:
    """Read chunks until the end, refusing at `limit` bytes: a source that never ends (an HTTP
    body, /dev/zero) or is too large for the settings costs at most the limit. Returns the
    bytes read and their SHA-256; each chunk goes to `sink`, and is then let go."""
    digest = hashlib.sha256()
    total = 0
    while chunk := read(_CHUNK):
        if screen is not None:
            screen(chunk, total)
        total += len(chunk)
        if total > limit:
            raise too_large(
                "reading stopped: the source is longer",
                limit,
                "max_source_bytes",
                source=source,
                file=uri,
            )
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return total, digest.hexdigest()


class Stamp(NamedTuple):
    """What the kernel says a local file is: which file (device, inode) and its size and last
    modification, as when it was hashed."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Stamp:
        """The stamp of an fstat."""
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@dataclass(frozen=True)
class FetchedFile:
    """One file of a source, hashed as it streamed by: where its bytes are on this machine
    (the local file itself, or the spool copy of a remote one) and what they were."""

    uri: str
    """The file as rows name it (`_file`)."""
    path: str
    """Where its bytes are read from when it is parsed, on the machine that fetched it."""
    size: int
    sha256: str
    stamp: Stamp | None = None
    """A local file's identity and modification when hashed; None for a spool copy."""


class Spool:
    """The temporary folder holding the copies of a source's remote files, made at the first
    copy. `remove()` deletes it; so does the last reference to it going away, or the end of
    the interpreter (a process killed with SIGKILL leaves it in the temporary folder, named
    relations-etl-fetch-*). A copy sent to another process names the folder but does not
    remove it when it goes away: the folder is on the machine that made it."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self._made = 0
        self._finalizer: Callable[[], object] | None = None

    def new_file(self) -> Path:
        """A path for one more copy."""
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="relations-etl-fetch-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self._made += 1
        return Path(self.folder) / f"{self._made:06d}.copy"

    def remove(self) -> None:
        """Delete the folder and the copies in it (again: nothing happens)."""
        if self._finalizer is not None:
            self._finalizer()
        elif self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder, self._made, self._finalizer = state["folder"], 0, None


def _still_inside(fd: int, path: Path, uri: str, source: str, landing: str | None) -> None:
    """The file opened is the one that was checked: a link swapped in between the landing
    check and the open is caught from what the kernel says the descriptor is."""
    if landing is None or not os.path.isdir("/proc/self/fd"):
        return
    opened = Path(os.path.realpath(f"/proc/self/fd/{fd}"))
    if opened != path:
        raise ConfigError(
            f"{uri!r} changed while it was opened: it now leads to {opened}, not {path}",
            source=source,
            hint="Something is replacing files in the landing folder; nothing was read.",
        )


def _open_local(path: Path, uri: str, source: str) -> int:
    """A file descriptor for a local file, never following a link at its last step."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise SourceMissingError(f"file not found: {uri}", source=source, file=uri) from exc
    except OSError as exc:
        raise SourceReadError(
            f"could not read {uri}: {exc.strerror}", source=source, file=uri
        ) from exc


def _hash_local(
    uri: str, source: str, landing: str | None, limit: int, screen: Screen | None
) -> FetchedFile:
    """Hash a local file in blocks; a file that changes while it is read is a transient error."""
    path = resolve_local(source, uri, landing)
    assert path is not None
    fd = _open_local(path, uri, source)
    try:
        _still_inside(fd, path, uri, source, landing)
        before = os.fstat(fd)
        if stat.S_ISDIR(before.st_mode):
            raise SourceReadError(
                f"{uri} is a folder; this format reads one file", source=source, file=uri
            )
        try:
            size, sha256 = _stream(lambda n: os.read(fd, n), limit, uri, source, screen, None)
        except OSError as exc:
            raise SourceReadError(
                f"could not read {uri}: {exc.strerror}", source=source, file=uri
            ) from exc
        after = os.fstat(fd)
    finally:
        os.close(fd)
    stamp = (before.st_size, before.st_mtime_ns)
    if stamp != (after.st_size, after.st_mtime_ns) or size != before.st_size:
        raise TransientSourceError(
            f"{uri} changed while it was read ({before.st_size} bytes before, {size} read, "
            f"{after.st_size} after)",
            source=source,
            file=uri,
            hint="Another process is writing it; the read is retried. Have the producer write "
            "under a temporary name and rename it into place.",
        )
    return FetchedFile(uri, str(path), size, sha256, Stamp.of(after))


def _read_http(
    uri: str, source: str, timeout: float, limit: int, screen: Screen | None, sink: Sink
) -> tuple[int, str]:
    import aiohttp

    try:
        fs, path = fsspec.core.url_to_fs(
            uri, client_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
        )
        # block_size 0: one GET streamed chunk by chunk, so the byte limit holds while the body
        # arrives; a size given skips fsspec's HEAD request, which reports any failure as 404
        with fs.open(path, "rb", block_size=0, size=1) as handle:
            return _stream(handle.read, limit, uri, source, screen, sink)
    except FileNotFoundError as exc:
        raise SourceMissingError(f"{uri} answered 404 Not Found", source=source, file=uri) from exc
    except aiohttp.TooManyRedirects as exc:
        raise SourceMissingError(
            f"{uri} redirects in a loop (more than {(exc.history and len(exc.history)) or 10} "
            "redirects)",
            source=source,
            file=uri,
            hint="The server is misconfigured or the URL is stale; fix the URL. Not retried.",
        ) from exc
    except aiohttp.RedirectClientError as exc:
        # aiohttp follows redirects to http(s) only: a Location of file://, ftp:// or
        # garbage is refused, and retrying would get the same answer
        raise SourceMissingError(
            f"{uri} redirects to {shown(str(exc), 120)}, which is not followed: a source read "
            "over HTTP(S) stays on HTTP(S)",
            source=source,
            file=uri,
            hint="Fix the URL or the server; a redirect to another scheme is never followed "
            "and not retried.",
        ) from exc
    except aiohttp.ClientResponseError as exc:
        if exc.status >= 500 or exc.status in (408, 429):
            raise TransientSourceError(
                f"{uri} answered {exc.status} {exc.message}", source=source, file=uri
            ) from exc
        raise SourceMissingError(
            f"{uri} answered {exc.status} {exc.message}", source=source, file=uri
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise TransientSourceError(
            f"{uri} sent fewer bytes than announced: it changed or the connection broke while it "
            f"was read ({exc})",
            source=source,
            file=uri,
        ) from exc
    except TimeoutError as exc:
        raise TransientSourceError(
            f"{uri} did not answer within {timeout:g} s",
            source=source,
            file=uri,
            hint="The read is retried; RELATIONS_ETL_HTTP_TIMEOUT sets the limit.",
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise TransientSourceError(
            f"could not fetch {uri}: {exc}", source=source, file=uri
        ) from exc


OBJECT_STORES = ("s3", "s3a")
"""Schemes read through s3fs: Amazon S3 and S3-compatible stores (MinIO, Ceph, moto)."""


def object_options(
    settings: Settings, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The s3fs options for a URI: endpoint and region from the settings (AWS_ENDPOINT_URL,
    AWS_REGION), then a source's own `storage_options`, which win. Credentials come from
    botocore's usual chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role)
    unless `storage_options` gives `key` and `secret`."""
    options: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    for name, value in (storage_options or {}).items():
        if name == "client_kwargs" and isinstance(value, Mapping):
            options["client_kwargs"] = {**options.get("client_kwargs", {}), **value}
        else:
            options[name] = value
    return options


def object_fs(
    uri: str, settings: Settings, storage_options: Mapping[str, Any] | None = None
) -> tuple[Any, str]:
    """The fsspec filesystem of an object-storage URI and the path in it (`bucket/key`)."""
    try:
        fs, path = fsspec.core.url_to_fs(uri, **object_options(settings, storage_options))
    except ImportError as exc:
        raise ConfigError(
            f"reading {uri} needs s3fs, which is not installed",
            hint="Install the extra: pip install 'relations-etl[s3]'.",
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot open {uri}: {exc}",
            hint="Check the source's storage_options (they are s3fs.S3FileSystem arguments).",
        ) from exc
    return fs, str(path)


def object_error(
    exc: BaseException, uri: str, source: str | None, doing: str = "read"
) -> RelationsEtlError:
    """An object store's failure as one of ours: missing bucket or key 66, refused credentials
    78, anything else (throttling, 5xx, a broken connection) transient 75."""
    if isinstance(exc, RelationsEtlError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return SourceMissingError(
            f"{uri}: no such bucket or key",
            source=source,
            file=uri,
            hint="Check the bucket and key (a folder is a prefix ending in /); nothing was "
            f"{'loaded for this source' if doing == 'read' else 'written'}.",
        )
    if isinstance(exc, TypeError):  # raised when the client is made from the options
        return ConfigError(
            f"{uri}: the object store client refused its options: {shown(str(exc), 200)}",
            source=source,
            file=uri,
            hint="Fix the source's storage_options: they are s3fs.S3FileSystem arguments "
            "(endpoint_url, key, secret, anon, client_kwargs, config_kwargs, ...).",
        )
    name = type(exc).__name__
    refused = name in ("NoCredentialsError", "PartialCredentialsError")
    if isinstance(exc, PermissionError) or refused:
        return ConfigError(
            f"{uri}: the object store refused the credentials ({shown(str(exc), 200)})",
            source=source,
            file=uri,
            hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the source's "
            "storage_options key and secret) to credentials allowed to "
            f"{doing} this bucket; AWS_ENDPOINT_URL names an S3-compatible server. Not retried.",
        )
    return TransientSourceError(
        f"could not {doing} {uri}: {name}: {shown(str(exc), 200)}",
        source=source,
        file=uri,
        hint="The object store is throttling, failing or unreachable; the read is retried. If "
        "it keeps failing, check AWS_ENDPOINT_URL and the network.",
    )


def _read_object(
    uri: str,
    source: str,
    settings: Settings,
    limit: int,
    screen: Screen | None,
    storage_options: Mapping[str, Any] | None,
    sink: Sink,
) -> tuple[int, str]:
    """Read one object, streamed chunk by chunk so that the byte limit holds as it arrives."""
    fs, path = object_fs(uri, settings, storage_options)
    try:
        info = fs.info(path)
        if info.get("type") == "directory":
            raise SourceReadError(
                f"{uri} is a prefix (a folder), not an object",
                source=source,
                file=uri,
                hint="End the URI with / to read every file under the prefix.",
            )
        size = int(info.get("size") or 0)
        if size > limit:  # refused before a byte is fetched; _stream still counts what arrives
            raise too_large(
                f"the object holds {size} bytes",
                limit,
                "max_source_bytes",
                source=source,
                file=uri,
            )
        with fs.open(path, "rb", block_size=8 * _CHUNK, cache_type="readahead") as handle:
            read, sha256 = _stream(handle.read, limit, uri, source, screen, sink)
    except Exception as exc:
        raise object_error(exc, uri, source) from exc
    if read != size:
        raise TransientSourceError(
            f"{uri} changed while it was read ({size} bytes listed, {read} read)",
            source=source,
            file=uri,
            hint="Another process replaced the object; the read is retried.",
        )
    return read, sha256


def list_files(
    uri: str,
    fmt: str,
    source: str,
    settings: Settings,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The files a source reads: the URI itself, or for an object-storage prefix (a URI ending
    in `/`, or a key that is a folder) every object under it whose name says `fmt`, in name
    order. Names starting with `.` or `_` (markers such as _SUCCESS) are not lists."""
    if uri_scheme(uri) not in OBJECT_STORES:
        return [uri]
    fs, path = object_fs(uri, settings, storage_options)
    try:
        fs.invalidate_cache()  # a long-lived worker must see objects added since its last look
        if not uri.endswith("/") and fs.info(path).get("type") != "directory":
            return [uri]
        found = fs.find(path.rstrip("/"), detail=False)
    except Exception as exc:
        raise object_error(exc, uri, source) from exc
    scheme = uri_scheme(uri)
    files = []
    for key in sorted(str(k) for k in found):
        name = key.rsplit("/", 1)[-1]
        if name.startswith((".", "_")) or "." not in name:
            continue
        try:
            if guess_format(name) == fmt:
                files.append(f"{scheme}://{key}")
        except ConfigError:
            continue  # a file of no known format under the prefix: not a list
    if not files:
        raise SourceMissingError(
            f"no {fmt} files under {uri}",
            source=source,
            file=uri,
            hint=f"Put the lists under the prefix with a .{fmt} name, or fix the URI.",
        )
    return files


def fetch_file(
    uri: str,
    source: str,
    settings: Settings | None = None,
    *,
    spool: Spool,
    landing: str | None = None,
    limit: int | None = None,
    screen: Screen | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> FetchedFile:
    """Hash a whole file: local, HTTP(S), S3 or another fsspec protocol, at most `limit` bytes
    (default: the settings' max_source_bytes). A local file stays where it is; a remote one is
    copied into `spool` as it arrives (memory holds one chunk, never the file).

    A local URI is resolved once (config.resolve_local: checked against `landing` and then read
    at the path that check saw). Not found (404, no such bucket or key) and other client errors
    are terminal, refused credentials a configuration error; 5xx, throttling, timeouts, broken
    connections and a file that changed while it was read are transient (retried by the flow).
    """
    settings = settings or Settings()
    limit = settings.max_source_bytes if limit is None else limit
    scheme = uri_scheme(uri)
    if scheme == "file":
        return _hash_local(uri, source, landing, limit, screen)
    copy = spool.new_file()
    with open(copy, "wb") as handle:
        sink = handle.write
        if scheme in ("http", "https"):
            size, sha256 = _read_http(uri, source, settings.http_timeout, limit, screen, sink)
        elif scheme in OBJECT_STORES:
            size, sha256 = _read_object(uri, source, settings, limit, screen, storage_options, sink)
        else:
            size, sha256 = _read_other(uri, source, limit, screen, storage_options, sink)
    return FetchedFile(uri, str(copy), size, sha256)


def _read_other(
    uri: str,
    source: str,
    limit: int,
    screen: Screen | None,
    storage_options: Mapping[str, Any] | None,
    sink: Sink,
) -> tuple[int, str]:
    """Read through another fsspec protocol (the settings allow only file, http(s) and s3 by
    default)."""
    try:
        with fsspec.open(uri, "rb", **(storage_options or {})) as handle:
            return _stream(handle.read, limit, uri, source, screen, sink)
    except FileNotFoundError as exc:
        raise SourceMissingError(f"file not found: {uri}", source=source, file=uri) from exc
    except (ImportError, ValueError) as exc:
        raise SourceReadError(f"cannot open {uri}: {exc}", source=source, file=uri) from exc
    except RelationsEtlError:
        raise
    except Exception as exc:
        raise TransientSourceError(
            f"could not fetch {uri}: {exc}", source=source, file=uri
        ) from exc


def fetch_files(
    files: Iterable[str],
    source: str,
    settings: Settings,
    *,
    landing: str | None = None,
    screen: Callable[[str], Screen | None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[tuple[FetchedFile, ...], Spool]:
    """Hash each file of a source (see `fetch_file`); the files share the source's byte limit,
    and with a `landing` folder each must resolve inside it (a listed file may be a link out of
    it). `screen(file)` gives each file's screen. The spool holds the remote files' copies: the
    caller removes it (it is removed here if a file fails)."""
    spool = Spool()
    fetched: list[FetchedFile] = []
    remaining = settings.max_source_bytes
    try:
        for file in files:
            check_uri(source, file, settings.allowed_schemes, landing)
            if remaining <= 0:
                raise too_large(
                    "reading stopped: the source's files are longer together",
                    settings.max_source_bytes,
                    "max_source_bytes",
                    source=source,
                    file=file,
                )
            done = fetch_file(
                file,
                source,
                settings,
                spool=spool,
                landing=landing,
                limit=remaining,
                screen=screen(file) if screen is not None else None,
                storage_options=storage_options,
            )
            remaining -= done.size
            fetched.append(done)
    except BaseException:
        spool.remove()
        raise
    return tuple(fetched), spool


class _Hashing(io.RawIOBase):
    """A file read through, hashing every byte that passes (for `open_hashed`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = os.readv(self.fd, [view])
        self.digest.update(view[:n])
        self.size += n
        return n


def changed_after_hashing(file: FetchedFile, source: str, what: str) -> TransientSourceError:
    """The error of a file whose bytes are not those hashed when it was fetched."""
    return TransientSourceError(
        f"{file.uri} changed after it was hashed ({what}): the bytes read now are not the "
        "bytes the source's hash and the skip check were made of",
        source=source,
        file=file.uri,
        hint="Another process is writing or replacing it; nothing was loaded, run again. Have "
        "the producer write under a temporary name and rename it into place.",
    )


@contextlib.contextmanager
def open_hashed(file: FetchedFile, source: str) -> Iterator[BinaryIO]:
    """Read a fetched file again (to parse it): the same file (device and inode) with the size
    and modification time it had when hashed, else a transient error before any byte is used;
    and once the caller is done, every byte of it read and hashed again and compared with the
    hash (what a modification time cannot tell: a write within the same clock tick, a file
    system with coarse times), so that the bytes parsed are the bytes hashed.

    The path is on the machine that fetched the file: a spool copy removed (`Spool.remove`), or
    made on another machine, is a transient error that says to fetch again."""
    try:
        fd = os.open(file.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        if file.stamp is None:
            raise TransientSourceError(
                f"the copy of {file.uri} fetched earlier is gone ({file.path}): it was removed "
                "once its source was done, or it was fetched on another machine",
                source=source,
                file=file.uri,
                hint="Run the source again: it is fetched again where it is parsed.",
            ) from exc
        raise SourceMissingError(
            f"{file.uri} was removed after it was hashed", source=source, file=file.uri
        ) from exc
    except OSError as exc:  # a link put in its place: O_NOFOLLOW says ELOOP
        raise changed_after_hashing(
            file, source, f"it cannot be opened again: {exc.strerror}"
        ) from exc
    raw = _Hashing(fd)
    reader = io.BufferedReader(raw, buffer_size=_CHUNK)
    try:
        if file.stamp is not None and Stamp.of(os.fstat(fd)) != file.stamp:
            now = Stamp.of(os.fstat(fd))
            what = (
                "another file is at its path now"
                if now[:2] != file.stamp[:2]
                else f"{file.stamp.size} bytes then, {now.size} now; modified since"
            )
            raise changed_after_hashing(file, source, what)
        yield reader
        while reader.read(_CHUNK):  # what the reader left unread is hashed too
            pass
        if (raw.size, raw.digest.hexdigest()) != (file.size, file.sha256):
            raise changed_after_hashing(
                file, source, f"{file.size} bytes then, {raw.size} read now"
            )
    except OSError as exc:
        raise SourceReadError(
            f"could not read {file.uri}: {exc.strerror}", source=source, file=file.uri
        ) from exc
    finally:
        reader.close()
        os.close(fd)
