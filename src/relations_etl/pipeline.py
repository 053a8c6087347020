"""The stages composed for one source: what a flow orchestrates, callable without Prefect."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import polars as pl

import relations_etl
from relations_etl.audit import (
    Batch,
    LoadResult,
    begin_batch,
    last_fingerprint,
    record_failure,
    record_skip,
    unconfigured_sources,
)
from relations_etl.config import Kind, Source, resolve_local, uri_scheme
from relations_etl.db import held, memory_limit, release
from relations_etl.envelope import FILE, RAW_KEYS, RECORD, staged_frame
from relations_etl.errors import BatchRejectedError, ConfigError, RelationsEtlError
from relations_etl.extract import (
    Fetched,
    ReadWhole,
    combine,
    fetch,
    parse,
    parse_pieces,
    refetch,
)
from relations_etl.facts import ID_COLUMN, content_columns
from relations_etl.fetch import OBJECT_STORES
from relations_etl.load import load_batch
from relations_etl.lock import run_lock
from relations_etl.mapping import apply_mapping, record_expr, reshape
from relations_etl.normalize import normalize
from relations_etl.periods import collapse_years_sql
from relations_etl.publish import publish_or_defer
from relations_etl.quarantine import prepare_replay, sources_with_open_rows
from relations_etl.rawtable import RawTable
from relations_etl.reference import Reference, reference_digest
from relations_etl.report import check_report_settings, write_configured_report
from relations_etl.settings import Settings
from relations_etl.split import Split, split, split_sql
from relations_etl.validate import duplicate_records_sql, validate, validate_rows


@dataclass(frozen=True)
class Prepared:
    """A whole source transformed and ready to load: its facts and rejected rows staged as
    Parquet files (bounded memory whatever the size of the list), and its counts."""

    facts_path: Path
    rejected_path: Path
    rows_read: int
    repeated: int
    content_hash: str
    fingerprint: str | None = None
    rows_rejected: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Rows the mapping's `drop` rules removed, by reason (counted in `rows_read`)."""

    @property
    def facts(self) -> pl.DataFrame:
        """The staged facts, read into memory (for tests and small lists)."""
        return pl.read_parquet(self.facts_path)

    @property
    def rejected(self) -> pl.DataFrame:
        """The staged rejected rows, read into memory."""
        return pl.read_parquet(self.rejected_path)

    def rejected_preview(self, rows: int) -> pl.DataFrame:
        """The first `rows` rejected rows, without reading the others."""
        return pl.scan_parquet(self.rejected_path).head(rows).collect()

    def discard(self) -> None:
        """Remove the staged files (after the load, or when the run failed)."""
        shutil.rmtree(self.facts_path.parent, ignore_errors=True)


def new_batch(source: Source, flow_run_id: str | None = None) -> Batch:
    """A fresh batch id for one run of one source."""
    started = dt.datetime.now(dt.UTC)
    batch_id = f"{started:%Y%m%dT%H%M%S}-{source.name}-{uuid.uuid4().hex[:8]}"
    return Batch(
        batch_id,
        source.name,
        source.kind,
        source.uri,
        started,
        flow_run_id,
        source.model_dump_json(by_alias=True),
    )


def read_source(source: Source, settings: Settings) -> Fetched:
    """Hash every file of a source, unparsed (parsing waits for `prepare`); remote files are
    copied to a temporary folder on the way, which the caller removes (`Fetched.close`)."""
    return fetch(source, settings)


def transform(raw: RawTable, source: Source, ref: Reference, settings: Settings) -> Split:
    """map -> normalize -> validate -> split, for one raw table in memory."""
    mapped = apply_mapping(raw, source, ref)
    normalized = normalize(mapped, source, ref, default_order=settings.date_order)
    validated = validate(normalized, source.kind)
    return split(validated, source.kind, source.name)


def _chunks(raw: RawTable, source: Source, rows: int) -> Iterator[RawTable]:
    """The raw table cut into tables of at most `rows` raw rows (at least one, maybe empty)."""
    frame = raw.frame
    # (an unpivoted list numbers its cells in `reshape`, chunk by chunk alike)
    if not source.mapping.record_id and not source.mapping.unpivot and RECORD not in frame.columns:
        # ids numbered per file must know whether the source has several files: settled on
        # the whole table, before it is cut
        frame = frame.with_columns(record_expr(raw, source))
    for start in range(0, max(frame.height, 1), rows):
        yield replace(raw, frame=frame.slice(start, rows))


Timings = dict[str, float]
"""Seconds per step of `prepare`, summed over chunks (filled when a caller passes one)."""


_timings_lock = threading.Lock()


@contextlib.contextmanager
def _timed(timings: Timings | None, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            with _timings_lock:  # steps of several chunks run side by side
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def _stage_chunk(
    raw: RawTable,
    source: Source,
    ref: Reference,
    settings: Settings,
    offset: int,
    timings: Timings | None = None,
) -> pl.DataFrame:
    """map -> normalize -> the per-row checks, for one chunk, in the shape the split reads."""
    with _timed(timings, "mapping"):
        mapped = apply_mapping(raw, source, ref)
    with _timed(timings, "normalize"):
        normalized = normalize(mapped, source, ref, default_order=settings.date_order)
    with _timed(timings, "validate"):
        return staged_frame(validate_rows(normalized, source.kind), source.kind, offset)


def staging_connection(settings: Settings, folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a memory limit that spills to `folder`."""
    return duckdb.connect(
        config={
            "memory_limit": memory_limit(settings.staging_memory),
            "temp_directory": str(folder / "spill"),
            "preserve_insertion_order": True,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )


SHARED_STAGING_ROWS = 100_000
"""A source of at most this many rows read is split on a cursor of one staging DuckDB kept by
the process (a new instance costs about 18 ms, a cursor under 1 ms: a fifth of the split of a
small list); a larger one gets an instance of its own, whose memory goes when it is closed."""
_shared_staging: dict[tuple[str, Path | None], duckdb.DuckDBPyConnection] = {}
_shared_staging_lock = threading.Lock()


def _staging_for(settings: Settings, folder: Path, rows: int) -> duckdb.DuckDBPyConnection:
    """A connection to split `rows` staged rows on (close it after): see SHARED_STAGING_ROWS.
    A cursor's temporary tables and views are its own, and go when it is closed."""
    if rows > SHARED_STAGING_ROWS:
        return staging_connection(settings, folder)
    key = (settings.staging_memory, settings.staging_dir)
    with _shared_staging_lock:
        if key not in _shared_staging:
            spill = Path(settings.staging_dir or tempfile.gettempdir())
            _shared_staging[key] = staging_connection(
                settings, spill / f"relations-etl-shared-{os.getpid()}"
            )
        return _shared_staging[key].cursor()


def prepare(
    inputs: Fetched | Iterable[RawTable],
    source: Source,
    ref: Reference,
    settings: Settings,
    timings: Timings | None = None,
) -> Prepared:
    """Parse (fetched files) and transform a source chunk by chunk; check its chunks together.

    Mapping, normalizing and the per-row checks run on at most `settings.batch_rows` raw rows
    at a time; each chunk's rows are staged as a Parquet file. The checks across rows (repeats,
    duplicate records, yearly periods) and the split then run in DuckDB over every staged file,
    and the facts and rejected rows are written as two Parquet files for the load. `timings`,
    when given, receives the seconds of each step.

    A source of several files that may be read file by file (`source_parts`) is staged one
    file at a time, as Dask workers would stage it (`stage_part`, `finish_parts`), so that no
    file of it is read whole when it can be read in pieces.
    """
    if isinstance(inputs, Fetched) and (parts := source_parts(inputs)) is not None:
        folder = staging_folder(settings)
        with _timed(timings, "stage_parts"):
            staged = [stage_part(p, i, folder, settings, ref) for i, p in enumerate(parts)]
        with _timed(timings, "split"):
            return finish_parts(inputs, staged, folder, settings, ref)
    return _prepare_whole(inputs, source, ref, settings, timings)


def _prepare_whole(
    inputs: Fetched | Iterable[RawTable],
    source: Source,
    ref: Reference,
    settings: Settings,
    timings: Timings | None = None,
) -> Prepared:
    """`prepare` of the source as one table, chunk by chunk."""
    folder = staging_folder(settings)
    dropped: dict[str, int] = {}
    try:
        pieces = (
            parse_pieces(inputs, settings, settings.batch_rows)
            if isinstance(inputs, Fetched)
            else None
        )
        try:
            rows_read = _stage_all(pieces, folder, source, ref, settings, timings, dropped)
        except ReadWhole:  # read in pieces, it needs the whole-file reader after all
            pieces = None
            dropped.clear()
        if pieces is None:
            for path in folder.glob("people-*.parquet"):
                path.unlink()
            with _timed(timings, "parse"):
                if isinstance(inputs, Fetched):
                    raw = parse(inputs, settings)
                else:
                    raw = combine(list(inputs), source.uri)
            chunks = _chunks(raw, source, settings.batch_rows)
            rows_read = _stage_all(chunks, folder, source, ref, settings, timings, dropped)
            file, content_hash = raw.file, raw.content_hash
            del raw  # the raw table is not needed past this point
        else:
            assert isinstance(inputs, Fetched)
            file, content_hash = inputs.file, inputs.content_hash
        with _timed(timings, "split"):
            facts, rejected, repeated, rows_rejected = _split_staged(
                folder, source, settings, rows_read
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Prepared(
        facts,
        rejected,
        rows_read,
        repeated,
        content_hash,
        fingerprint(file, content_hash, source, ref.digest),
        rows_rejected,
        dropped,
    )


STAGING_WORKERS = 2
"""Chunks transformed and staged at once, each on a thread of its own, while the calling thread
parses the next one. Polars releases the GIL, but most steps of a chunk run on one core: one
chunk at a time left the second core idle for most of `prepare` (1M rows: 4.0 s -> 2.6 s on 2
cores). Each chunk in flight holds its rows in memory, so this also bounds memory."""

CHUNK_SEQ = 1 << 32
"""Chunk n of a source is staged with `_seq` from n * CHUNK_SEQ on, so that chunks staged side
by side need not wait for the sizes of those before (the split uses only the order of `_seq`
and its being distinct). A chunk holds at most `batch_rows` raw rows, and one row a few
people: far fewer rows than this; the parts of a source split by file (PART_SEQ) hold 65,536
chunks each."""


def _stage_all(
    chunks: Iterator[RawTable] | None,
    folder: Path,
    source: Source,
    ref: Reference,
    settings: Settings,
    timings: Timings | None,
    dropped: dict[str, int],
    *,
    prefix: str = "people-",
    offset: int = 0,
) -> int:
    """Transform and stage each chunk n as folder/<prefix>NNNNNN.parquet, its rows' `_seq` from
    `offset` + n * CHUNK_SEQ on, STAGING_WORKERS chunks at a time; returns the rows read
    (cells, once unpivoted) and adds the rows the mapping's drop rules removed to `dropped`."""
    if chunks is None:
        return 0

    def stage(chunk: RawTable, number: int) -> tuple[int, dict[str, int]]:
        with _timed(timings, "mapping"):
            shaped = reshape(chunk, source)  # unpivot and drop: rows are cells from here on
        first = offset + number * CHUNK_SEQ
        staged = _stage_chunk(shaped.table, source, ref, settings, first, timings)
        if staged.height >= CHUNK_SEQ:
            raise ConfigError(
                f"{len(chunk.frame):,} raw rows made {staged.height:,} rows",
                source=source.name,
                hint="Lower RELATIONS_ETL_BATCH_ROWS.",
            )
        with _timed(timings, "stage"):
            staged.write_parquet(folder / f"{prefix}{number:06d}.parquet", compression="lz4")
        return shaped.read, shaped.dropped  # its counts, not its rows

    rows = 0
    in_flight: collections.deque[Future[tuple[int, dict[str, int]]]] = collections.deque()

    def count_first() -> None:
        nonlocal rows
        read, removed = in_flight.popleft().result()
        for reason, count in removed.items():
            dropped[reason] = dropped.get(reason, 0) + count
        rows += read

    number = 0
    with ThreadPoolExecutor(STAGING_WORKERS, thread_name_prefix="stage") as pool:
        try:
            while True:
                while len(in_flight) >= STAGING_WORKERS:  # before parsing: bounded memory
                    count_first()
                with _timed(timings, "parse"):
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                for piece in _cells_bounded(chunk, source, settings.batch_rows):
                    while len(in_flight) >= STAGING_WORKERS:
                        count_first()
                    in_flight.append(pool.submit(stage, piece, number))
                    number += 1
            while in_flight:
                count_first()
        except BaseException:
            for pending in in_flight:
                pending.cancel()
            raise  # (leaving the pool waits for the chunks already running)
    return rows


def _cells_bounded(chunk: RawTable, source: Source, rows: int) -> Iterator[RawTable]:
    """A chunk cut so that, unpivoted, none holds more than `rows` cells (raw rows times all
    its columns): a panel of 534 organization columns makes 534 rows of each raw row."""
    if source.mapping.unpivot is None or RECORD in chunk.frame.columns:
        yield chunk
        return
    step = max(1, rows // max(1, len(chunk.columns)))
    for start in range(0, max(chunk.frame.height, 1), step):
        yield replace(chunk, frame=chunk.frame.slice(start, step))


def _split_staged(
    folder: Path, source: Source, settings: Settings, rows: int
) -> tuple[Path, Path, int, int]:
    """The split of every staged chunk of a source (`rows` rows read), as facts.parquet and
    rejected.parquet."""
    kind = source.kind
    conn = _staging_for(settings, folder, rows)
    try:
        pattern = str(folder / "people-*.parquet").replace("'", "''")
        conn.execute(f"CREATE TEMP VIEW _staged_people AS SELECT * FROM read_parquet('{pattern}')")
        duplicate_records_sql(conn, "_staged_people", kind)
        facts, rejected, repeated = split_sql(conn, "_staged_people", kind, source.name)
        if kind is Kind.MEMBERSHIPS and source.mapping.periods == "yearly":
            facts = collapse_years_sql(conn, facts)
        wanted = [ID_COLUMN[kind], *content_columns(kind), "source", "source_record", RAW_KEYS]
        columns = ", ".join(f'"{c}"' for c in wanted)
        facts_path, rejected_path = folder / "facts.parquet", folder / "rejected.parquet"
        conn.execute(
            f"COPY (SELECT {columns} FROM {facts}) TO '{facts_path}' "
            "(FORMAT parquet, COMPRESSION lz4)"
        )
        ((rows_rejected,),) = conn.execute(
            f"COPY (SELECT * FROM {rejected}) TO '{rejected_path}' "
            "(FORMAT parquet, COMPRESSION lz4)"
        ).fetchall()
    finally:
        conn.close()
    for path in folder.glob("people-*.parquet"):
        path.unlink()
    return facts_path, rejected_path, repeated, int(rows_rejected)


def fingerprint(file: str, content_hash: str, source: Source, ref_digest: str) -> str:
    """Everything a batch's result depends on: files, source entry, reference data, code."""
    digest = hashlib.sha256()
    for part in (
        relations_etl.__version__,
        source.model_dump_json(by_alias=True),
        ref_digest,
        f"{file}={content_hash}",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def start_batch(settings: Settings, source: Source, flow_run_id: str | None = None) -> Batch:
    """A new batch, audited as running (call with the run lock held)."""
    batch = new_batch(source, flow_run_id)
    begin_batch(settings, batch)
    return batch


def skip_if_unchanged(
    settings: Settings, batch: Batch, fetched: Fetched, source: Source, ref_digest: str
) -> LoadResult | None:
    """Audit and return a skipped batch when the inputs equal the last successful batch's.

    Decided on the files' bytes (their hashes), the source entry, the reference files' digest
    and the code version: nothing is parsed, neither the lists nor the reference data.
    """
    inputs = fingerprint(fetched.file, fetched.content_hash, source, ref_digest)
    last = last_fingerprint(settings, source.name)
    if last is None or last[1] != inputs:
        return None
    return record_skip(settings, batch, last[0], fetched.content_hash, inputs)


def load_source(
    settings: Settings,
    batch: Batch,
    prepared: Prepared,
    ref: Reference,
    replayed: list[str] | None = None,
) -> LoadResult:
    """Load a prepared source in one transaction; its staged files are removed either way."""
    try:
        return load_batch(
            settings,
            batch,
            prepared.facts_path,
            prepared.rejected_path,
            rows_read=prepared.rows_read,
            repeated=prepared.repeated,
            dropped=prepared.dropped,
            content_hash=prepared.content_hash,
            ref=ref,
            replayed=replayed,
            # a replay re-runs quarantined rows, not the source: it must not stand for its inputs
            fingerprint=prepared.fingerprint if replayed is None else None,
        )
    finally:
        prepared.discard()


def _no_progress(source: str, stage: str) -> None:
    """Progress sink that shows nothing (the library's default)."""


@dataclass(frozen=True)
class Steps:
    """The stage calls of one source run, in the one sequence `run_source` holds.

    The defaults are the library's stage functions; a Prefect flow passes its tasks (which call
    these same functions) to add retries and run history, so both paths run the same code.
    """

    extract: Callable[[Source, Settings], Fetched] = read_source
    transform: Callable[[Fetched | list[RawTable], Source, Reference, Settings], Prepared] = prepare
    load: Callable[[Settings, Batch, Prepared, Reference, list[str] | None], LoadResult] = (
        load_source
    )
    publish: Callable[[Settings], str | None] = publish_or_defer
    stage: Callable[[str, str], None] = _no_progress


DIRECT = Steps()


HELD_LIST_BYTES = 1 << 20
"""A local list of at most this many bytes is transformed with the warehouse held (it takes
tens of milliseconds; an open of the file costs about as much); a larger one, or a remote
one, lets other processes open the warehouse while it is transformed."""


def run_source(
    source: Source,
    settings: Settings,
    *,
    ref: Reference | None = None,
    flow_run_id: str | None = None,
    force: bool = False,
    steps: Steps = DIRECT,
) -> LoadResult:
    """Run one source end to end under the run lock; a failure is audited, nothing half-loaded.

    An unchanged source is skipped unless `force`. What earlier runs committed but did not
    publish (a crash) is published either way.
    """
    with run_lock(settings, f"source {source.name} (flow run {flow_run_id})"):
        # a local list is read in milliseconds: one connection serves the start, the read and
        # the skip, and, for a small list, everything after; a list fetched over the network
        # is read without holding the warehouse
        local = uri_scheme(source.uri) == "file"
        if not local:
            release(settings)  # held by a run of several lists: not while one is fetched
        with held(settings, verify_file=True) if local else contextlib.nullcontext():
            if not local:
                with held(settings, verify_file=True):
                    batch = start_batch(settings, source, flow_run_id)
            else:
                batch = start_batch(settings, source, flow_run_id)
            fetched: Fetched | None = None
            try:
                steps.stage(source.name, "extract")
                fetched = steps.extract(source, settings)
                result = None
                if not force:
                    digest = ref.digest if ref is not None else reference_digest(settings)
                    with held(settings):
                        result = skip_if_unchanged(settings, batch, fetched, source, digest)
                        if result is not None:  # nothing to load: repair what earlier runs left
                            steps.stage(source.name, "publish")
                            result.publish_pending = steps.publish(settings)
            except Exception as exc:
                if fetched is not None:
                    fetched.close()
                _failed(settings, batch, exc, steps)
                raise
            if result is not None:
                fetched.close()
                steps.stage(source.name, "unchanged: skipped")
                return result
            if sum(f.size for f in fetched.files) > HELD_LIST_BYTES:
                release(settings)  # other processes may open the warehouse while it is transformed
            try:
                reference = ref or Reference.load(settings)
                steps.stage(source.name, "transform")
                try:
                    prepared = steps.transform(fetched, source, reference, settings)
                finally:  # the copies of remote files, once prepared (or failed)
                    fetched.close()
                # the load and the publish after it write one after the other: one connection
                # serves both (each open, checkpoint and check of the file costs tens of ms)
                with held(settings):
                    steps.stage(source.name, "load")
                    result = steps.load(settings, batch, prepared, reference, None)
                    steps.stage(source.name, "publish")
                    # committed is committed: a disk that refuses the Parquet leaves it queued
                    result.publish_pending = steps.publish(settings)
            except Exception as exc:
                # a failed load is audited on a connection of its own, once the one that
                # failed is closed (as after a failure: the next open checks the file again)
                release(settings, failed=True)
                if result is None:  # not committed: the batch failed
                    _failed(settings, batch, exc, steps)
                raise
    steps.stage(source.name, "done")
    return result


def _failed(settings: Settings, batch: Batch, exc: Exception, steps: Steps) -> None:
    """Audit a failed source run; a rejected batch's committed quarantine is published."""
    record_failure(settings, batch, exc)
    steps.stage(batch.source, "failed")
    if isinstance(exc, BatchRejectedError):  # its quarantine rows were committed
        steps.publish(settings)


def replay(
    settings: Settings,
    source: str | None = None,
    *,
    flow_run_id: str | None = None,
    steps: Steps = DIRECT,
) -> list[LoadResult]:
    """Re-run the open quarantine rows of one or every source against today's reference data."""
    results = []
    with run_lock(settings, f"replay-quarantine (flow run {flow_run_id})"):
        ref = Reference.load(settings)
        for name in sources_with_open_rows(settings, source):
            again = prepare_replay(settings, name)
            batch = replace(
                start_batch(settings, again.source, flow_run_id),
                source_uri=f"quarantine replay of {again.source.uri}",
            )
            try:
                prepared = steps.transform(again.tables, again.source, ref, settings)
                result = steps.load(settings, batch, prepared, ref, again.keys)
            except Exception as exc:
                record_failure(settings, batch, exc)
                raise
            result.publish_pending = steps.publish(settings)
            results.append(result)
    return results


@dataclass(frozen=True)
class RunSummary:
    """What a run over every configured source did, source by source."""

    results: list[LoadResult]
    failures: list[str]
    unconfigured: pl.DataFrame
    report: Path | None


def _small_local(source: Source) -> bool:
    """Whether a source is one local file of at most HELD_LIST_BYTES (as far as a stat tells
    before it is fetched; a folder, a pattern or a remote URI is not)."""
    if uri_scheme(source.uri) != "file":
        return False
    try:
        path = resolve_local(source.name, source.uri, source.landing)
        return path is not None and path.is_file() and path.stat().st_size <= HELD_LIST_BYTES
    except (RelationsEtlError, OSError):
        return False  # the run reports it, source by source


def run_sources(
    settings: Settings,
    sources: Sequence[Source],
    run_one: Callable[[Source], LoadResult],
    *,
    what: str = "nightly",
) -> RunSummary:
    """Every source, one after the other; one failing source does not stop the rest.

    `run_one` runs one source (`run_source`, or a flow that calls it); sources that loaded
    before and are no longer configured are listed, their rows kept.
    """
    check_report_settings(settings)  # a report that cannot be written fails before any load
    results: list[LoadResult] = []
    failures: list[str] = []
    with run_lock(settings, what):
        # small local lists take a second or so in all: one connection serves them all (a
        # source that fails, or grew, lets it go: see `run_source`)
        small = all(_small_local(source) for source in sources)
        with held(settings, verify_file=True) if small else contextlib.nullcontext():
            for source in sources:
                try:
                    results.append(run_one(source))
                except Exception as exc:
                    failures.append(f"{source.name}: {exc}")
            gone = unconfigured_sources(settings, [s.name for s in sources])
        report = write_configured_report(settings)  # read-only: once the writer is closed
    return RunSummary(results, failures, gone, report)


def prepare_ahead(
    source: Source, settings: Settings, last: str | None
) -> tuple[Fetched, Prepared | None, bool]:
    """Extract and transform one source away from the warehouse (on a Dask worker): reads the
    lists and the reference files, never DuckDB or the run lock. Returns the source's files,
    its prepared batch, and whether its files are to be transformed apart (`source_parts`:
    then they are only hashed here, by `stage_part` tasks after). The batch is left out (None)
    when the inputs match `last`, the fingerprint of the source's last successful batch, since
    `run_source` will skip it; `run_source` then commits the result in its turn.

    The Fetched returned holds hashes and paths, no bytes, and is closed: the copies of remote
    files made here (valid on this machine only) are removed before it goes back, and whoever
    parses them later fetches them again (`extract.refetch`); local files are named by their
    path, which another process can read only on the same machine or a shared disk."""
    with read_source(source, settings) as fetched:
        digest = reference_digest(settings)
        if (
            last is not None
            and fingerprint(fetched.file, fetched.content_hash, source, digest) == last
        ):
            return fetched, None, False
        if source_parts(fetched) is not None:
            return fetched, None, True
        return fetched, prepare(fetched, source, Reference.load(settings), settings), False


def staging_folder(settings: Settings) -> Path:
    """A new folder for one source's staged Parquet, under RELATIONS_ETL_STAGING_DIR (else
    the system's temporary folder)."""
    root = settings.staging_dir
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="relations-etl-staging-", dir=root))


PART_SEQ = 1 << 48
"""The staged rows of file k of a source split by file have `_seq` from k * PART_SEQ on: in the
order one process numbers them whatever the other files hold (the split uses only their order
and their being distinct)."""
_READ_TOGETHER = ("xml", "hsg-visits-xml")
"""Formats whose files are parsed together (their records may span files)."""


@dataclass(frozen=True)
class StagedPart:
    """One file of a several-file source, transformed and staged by `stage_part`."""

    index: int
    columns: tuple[str, ...] | None
    """The file's columns (None when it yielded no table or failed alone): the files of a
    source are combined into one table of all their columns, so that files of other columns
    are prepared together."""
    rows_read: int
    dropped: dict[str, int]


def may_split(source: Source) -> bool:
    """Whether a source may be prepared file by file, as far as its entry tells: an
    object-storage URI (a prefix is several files) of a format whose files are parsed apart
    (not XML), without an unpivot (its cells are numbered across files)."""
    return (
        uri_scheme(source.uri) in OBJECT_STORES
        and source.resolved_format not in _READ_TOGETHER
        and source.mapping.unpivot is None
    )


def source_parts(fetched: Fetched) -> list[Fetched] | None:
    """Each file of a source of several files as a Fetched of its own, to be transformed apart
    (`stage_part`, on several workers); None for one file, or when `may_split` says no."""
    if len(fetched.files) < 2 or not may_split(fetched.source):
        return None
    return [replace(fetched, files=(entry,)) for entry in fetched.files]


def stage_part(
    part: Fetched, index: int, folder: Path, settings: Settings, ref: Reference | None = None
) -> StagedPart:
    """Transform file `index` of a source (a Fetched of `source_parts`) and stage its chunks in
    the source's staging `folder`, numbered and ordered as `prepare` numbers the file's rows in
    the source's combined table, so that `finish_parts` gives the result of one process. The
    reference data is loaded here unless given (a worker has none loaded)."""
    source = part.source
    ref = ref or Reference.load(settings)
    prefix = f"people-{index:06d}-"
    dropped: dict[str, int] = {}
    columns: list[tuple[str, ...]] = []

    def with_ids(chunks: Iterator[RawTable]) -> Iterator[RawTable]:
        for chunk in chunks:
            columns.append(chunk.columns)
            if not source.mapping.record_id:
                # ids by row as of a table of several files (`record_expr` is asked about two
                # files): `finish_parts` checks that the source has rows in two files
                several = replace(chunk, frame=pl.DataFrame({FILE: ["1", "2"]}))
                chunk = replace(chunk, frame=chunk.frame.with_columns(record_expr(several, source)))
            yield chunk

    def stage(chunks: Iterator[RawTable]) -> int:
        return _stage_all(
            with_ids(chunks),
            folder,
            source,
            ref,
            settings,
            None,
            dropped,
            prefix=prefix,
            offset=index * PART_SEQ,
        )

    def clear() -> None:
        for path in folder.glob(f"{prefix}*.parquet"):
            path.unlink()
        dropped.clear()
        columns.clear()

    try:
        part = refetch(part, settings)  # its copy was made, and removed, by another task
        pieces = parse_pieces(part, settings, settings.batch_rows)
        try:
            rows_read = stage(pieces) if pieces is not None else None
        except ReadWhole:  # as in `prepare`: read whole after all
            rows_read = None
        if rows_read is None:
            clear()
            rows_read = stage(_chunks(parse(part, settings), source, settings.batch_rows))
    except RelationsEtlError:
        # a file may fail alone where the source's combined table does not (a column that
        # only other files have): `finish_parts` prepares the source in one piece, and
        # raises the error if it is one
        clear()
        return StagedPart(index, None, 0, {})
    finally:
        part.close()
    return StagedPart(index, columns[0] if columns else None, rows_read, dropped)


def finish_parts(
    fetched: Fetched,
    parts: Sequence[StagedPart],
    folder: Path,
    settings: Settings,
    ref: Reference | None = None,
) -> Prepared:
    """The checks across rows and the split over every staged file of a source split by file
    (`stage_part`), as `prepare` makes them in one process. Files that one process would not
    have staged alike (other columns; rows in one file only, where ids are plain row numbers)
    are prepared again here in one piece."""
    source = fetched.source
    try:
        ref = ref or Reference.load(settings)
        ordered = sorted(parts, key=lambda p: p.index)
        alike = (
            [p.index for p in ordered] == list(range(len(fetched.files)))
            and ordered[0].columns is not None
            and all(p.columns == ordered[0].columns for p in ordered)
            and (bool(source.mapping.record_id) or sum(p.rows_read > 0 for p in ordered) > 1)
        )
        if not alike:
            shutil.rmtree(folder, ignore_errors=True)
            with refetch(fetched, settings) as whole:
                return _prepare_whole(whole, source, ref, settings)
        dropped: dict[str, int] = {}
        for part in ordered:  # in the order one process meets them
            for reason, count in part.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + count
        rows_read = sum(p.rows_read for p in ordered)
        facts, rejected, repeated, rows_rejected = _split_staged(
            folder, source, settings, rows_read
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Prepared(
        facts,
        rejected,
        rows_read,
        repeated,
        fetched.content_hash,
        fingerprint(fetched.file, fetched.content_hash, source, ref.digest),
        rows_rejected,
        dropped,
    )
