"""Storage of the published Parquet: a local folder or an object-storage prefix, one interface.

Every file appears whole or not at all. On disk a file is written under a hidden temporary name
beside its target and renamed into place; in object storage it is written to a local staging
file and sent in one PUT (a multipart upload for a large file, which the store makes visible
only when the upload completes), so no reader ever sees half an object. The publish pass
(publish.py) asks this module for where to write, to put, stat, digest, list and remove files;
it never touches a path or a bucket itself.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

from relations_etl.config import local_path, uri_scheme
from relations_etl.errors import WarehouseError
from relations_etl.fetch import OBJECT_STORES, object_error, object_fs
from relations_etl.settings import Settings

_log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp"
_BLOCK = 1 << 20
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Stored:
    """What a stored file is now: its size and change stamp (nanoseconds): a local file's ctime,
    which no one can set back, or an object's last modification."""

    size: int
    modified_ns: int


class Storage:
    """The root of the published tables; paths given to it are relative (`visits/year=2023/...`)."""

    root: str
    identity: str
    """The same for every spelling of one root (a local folder resolved)."""

    def uri(self, relative: str) -> str:
        """The full path or URI of a relative path, as users and readers name it."""
        return f"{self.root.rstrip('/')}/{relative}"

    def staged(self, relative: str) -> Path:
        """A local path to write the file to before `put` makes it appear."""
        raise NotImplementedError

    def put(self, staged: Path, relative: str) -> Stored:
        """Make the staged file appear whole at `relative`, replacing what was there."""
        raise NotImplementedError

    def discard(self, staged: Path) -> None:
        """Drop a staged file that will not be put (nothing, or half of a file, was written)."""
        staged.unlink(missing_ok=True)

    def stat(self, relative: str) -> Stored | None:
        """The stored file's size and time; None if there is no such file."""
        raise NotImplementedError

    @contextmanager
    def open(self, relative: str) -> Iterator[IO[bytes]]:
        """The stored file, open for reading."""
        raise NotImplementedError
        yield  # pragma: no cover

    def digest(self, relative: str) -> str:
        """SHA-256 of the stored file, read as a reader would."""
        digest = hashlib.sha256()
        with self.open(relative) as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def files(self, pattern: str) -> list[str]:
        """Relative paths of the stored files matching a glob pattern (`visits/year=*/...`)."""
        raise NotImplementedError

    def remove(self, relative: str) -> None:
        """Remove a stored file; a file already gone is fine."""
        raise NotImplementedError

    def remove_leftovers(self) -> None:
        """Staged files of a publish that was killed before its put."""
        raise NotImplementedError


class LocalStorage(Storage):
    """A folder on this machine: written beside the target and renamed (atomic on POSIX)."""

    def __init__(self, root: Path) -> None:
        self.path = root
        self.root = str(root)
        self.identity = str(root.resolve())

    def staged(self, relative: str) -> Path:
        """A hidden name beside the target: a reader globbing *.parquet never sees it."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f".{target.name}.{os.getpid()}{TEMPORARY_SUFFIX}"

    def put(self, staged: Path, relative: str) -> Stored:
        """Rename into place: a reader opens the old file or the new one, never a mix."""
        target = self.path / relative
        os.replace(staged, target)
        info = target.stat()
        return Stored(info.st_size, info.st_ctime_ns)

    def stat(self, relative: str) -> Stored | None:
        """Size and time from the file system."""
        path = self.path / relative
        if not path.is_file():
            return None
        info = path.stat()
        return Stored(info.st_size, info.st_ctime_ns)

    @contextmanager
    def open(self, relative: str) -> Iterator[IO[bytes]]:
        """Open the file."""
        with open(self.path / relative, "rb") as handle:
            yield handle

    def files(self, pattern: str) -> list[str]:
        """Glob under the folder."""
        if not self.path.is_dir():
            return []
        return sorted(str(p.relative_to(self.path)) for p in self.path.glob(pattern))

    def remove(self, relative: str) -> None:
        """Unlink the file."""
        (self.path / relative).unlink(missing_ok=True)

    def remove_leftovers(self) -> None:
        """Hidden temporaries beside the targets."""
        if self.path.is_dir():
            for path in self.path.glob(f"*/year=*/.*{TEMPORARY_SUFFIX}"):
                path.unlink(missing_ok=True)


def _store_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """An object store that refuses or fails is a WarehouseError (74): the publish pass keeps
    the years queued and the next run writes them (publish.publish_or_defer)."""

    @functools.wraps(function)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except WarehouseError:
            raise
        except Exception as exc:
            store = args[0]
            assert isinstance(store, ObjectStorage)
            why = object_error(exc, store.root, None, doing="write")
            raise WarehouseError(
                f"the published Parquet at {store.root} could not be written or read: "
                f"{why.message}",
                hint=f"The years stay queued and the next run publishes them. {why.hint}".strip(),
            ) from exc

    return guarded


class ObjectStorage(Storage):
    """An S3 (or S3-compatible) prefix, reached through s3fs with the settings' endpoint,
    region and the usual AWS credentials."""

    def __init__(self, uri: str, settings: Settings) -> None:
        self.root = uri.rstrip("/")
        self.identity = self.root
        self.scheme = uri_scheme(uri)
        self.fs: Any
        self.fs, path = object_fs(self.root, settings)
        self.path = path.rstrip("/")
        # staged files live on the writer's disk, beside the warehouse, until they are sent
        self.staging = settings.home / ".publish-staging"

    def _key(self, relative: str) -> str:
        return f"{self.path}/{relative}"

    def staged(self, relative: str) -> Path:
        """A local file in the staging folder, named for its target and this process."""
        self.staging.mkdir(parents=True, exist_ok=True)
        name = relative.replace("/", "__")
        return self.staging / f"{name}.{os.getpid()}{TEMPORARY_SUFFIX}"

    @_store_errors
    def put(self, staged: Path, relative: str) -> Stored:
        """One PUT (multipart for a large file, completed only at its end), then drop the
        staged file."""
        self.fs.put_file(str(staged), self._key(relative))
        staged.unlink(missing_ok=True)
        stored = self.stat(relative)
        if stored is None:
            raise WarehouseError(f"{self.uri(relative)} is not there after it was written")
        return stored

    @_store_errors
    def stat(self, relative: str) -> Stored | None:
        """Size and last-modified time from the store (its resolution: a second or better)."""
        self.fs.invalidate_cache(self._key(relative))
        try:
            info = self.fs.info(self._key(relative))
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        modified = info.get("LastModified") or info.get("mtime")
        stamp = int(modified.timestamp() * 1_000_000_000) if modified is not None else 0
        return Stored(int(info["size"]), stamp)

    @contextmanager
    def open(self, relative: str) -> Iterator[IO[bytes]]:
        """Open the object for streamed reading."""
        try:
            handle = self.fs.open(self._key(relative), "rb", block_size=8 * _BLOCK)
        except Exception as exc:
            raise _as_warehouse_error(exc, self.uri(relative)) from exc
        with handle:
            yield handle

    @_store_errors
    def files(self, pattern: str) -> list[str]:
        """Glob under the prefix, listing afresh (another writer may have changed it)."""
        self.fs.invalidate_cache()
        prefix = f"{self.path}/"
        return sorted(str(key).removeprefix(prefix) for key in self.fs.glob(f"{prefix}{pattern}"))

    @_store_errors
    def remove(self, relative: str) -> None:
        """Delete the object."""
        with suppress(FileNotFoundError):
            self.fs.rm_file(self._key(relative))

    def remove_leftovers(self) -> None:
        """The local staging files of a killed publish, and the parts of its unfinished
        multipart uploads under the prefix: invisible to readers, but kept (and billed) by the
        store until aborted. A store that refuses to list or abort them is logged, and the
        publish goes on."""
        if self.staging.is_dir():
            shutil.rmtree(self.staging, ignore_errors=True)
        bucket, _, key = self.path.partition("/")
        prefix = f"{key}/" if key else ""
        try:
            # one writer per warehouse (the run lock, the Prefect slot), called before this
            # run's first upload: an unfinished upload under the prefix is a killed publish's
            for upload in self._unfinished_uploads(bucket, prefix):
                self.fs.call_s3(
                    "abort_multipart_upload",
                    Bucket=bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                )
        except Exception as exc:  # the parts cost storage only; the publish must not wait
            _log.warning(
                "could not abort the unfinished multipart uploads under %s: %s", self.root, exc
            )

    def _unfinished_uploads(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Every multipart upload begun and not completed under `prefix`, page by page."""
        markers: dict[str, str] = {}
        while True:
            page = self.fs.call_s3(
                "list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers
            )
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }


def _as_warehouse_error(exc: BaseException, uri: str) -> WarehouseError:
    why = object_error(exc, uri, None, doing="read")
    return WarehouseError(f"could not read {uri}: {why.message}", hint=why.hint)


def storage_for(settings: Settings) -> Storage:
    """The storage of the settings' published Parquet (RELATIONS_ETL_PARQUET_URI)."""
    root = settings.parquet_root
    if uri_scheme(root) in OBJECT_STORES:
        return ObjectStorage(root, settings)
    return LocalStorage(local_path(root) or Path(root))
