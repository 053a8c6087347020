"""The stages composed for one source: what a flow orchestrates, callable without Prefect."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

import relations_etl
from relations_etl.config import Kind, Source, uri_scheme
from relations_etl.errors import BatchRejectedError
from relations_etl.extract import Fetched, RawTable, combine, fetch, parse
from relations_etl.load import (
    Batch,
    LoadResult,
    begin_batch,
    held,
    last_fingerprint,
    load_batch,
    record_failure,
    record_skip,
    unconfigured_sources,
)
from relations_etl.lock import run_lock
from relations_etl.mapping import apply_mapping
from relations_etl.normalize import normalize
from relations_etl.periods import collapse_years
from relations_etl.publish import publish_or_defer
from relations_etl.quarantine import prepare_replay, sources_with_open_rows
from relations_etl.reference import Reference
from relations_etl.report import check_report_settings, write_configured_report
from relations_etl.settings import Settings
from relations_etl.split import Split, split
from relations_etl.validate import validate


@dataclass(frozen=True)
class Prepared:
    """A whole source transformed and ready to load."""

    facts: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    repeated: int
    content_hash: str
    fingerprint: str | None = None


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
    """Read every file of a source as bytes, unparsed (parsing waits for `prepare`)."""
    return fetch(source, settings)


def transform(raw: RawTable, source: Source, ref: Reference, settings: Settings) -> Split:
    """map -> normalize -> validate -> split, for one raw table."""
    mapped = apply_mapping(raw, source, ref)
    normalized = normalize(mapped, source, ref, default_order=settings.date_order)
    validated = validate(normalized, source.kind)
    return split(validated, source.kind, source.name)


def prepare(
    inputs: Fetched | Iterable[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """Parse (fetched bytes) and transform the raw tables of a source as one table and gather
    facts, rejects and counts."""
    if isinstance(inputs, Fetched):
        raw = parse(inputs, settings)
    else:
        raw = combine(list(inputs), source.uri)
    part = transform(raw, source, ref, settings)
    facts = part.facts
    if source.kind is Kind.MEMBERSHIPS and source.mapping.periods == "yearly":
        facts = collapse_years(facts)
    return Prepared(
        facts,
        part.rejected,
        raw.frame.height,
        part.repeated,
        raw.content_hash,
        fingerprint(raw.file, raw.content_hash, source, ref),
    )


def fingerprint(file: str, content_hash: str, source: Source, ref: Reference) -> str:
    """Everything a batch's result depends on: files, source entry, reference data, code."""
    digest = hashlib.sha256()
    for part in (
        relations_etl.__version__,
        source.model_dump_json(by_alias=True),
        ref.digest,
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
    settings: Settings, batch: Batch, fetched: Fetched, source: Source, ref: Reference
) -> LoadResult | None:
    """Audit and return a skipped batch when the inputs equal the last successful batch's.

    Decided on the files' bytes (their hashes), the source entry, the reference data and the
    code version: nothing is parsed.
    """
    inputs = fingerprint(fetched.file, fetched.content_hash, source, ref)
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
    """Load a prepared source in one transaction."""
    return load_batch(
        settings,
        batch,
        prepared.facts,
        prepared.rejected,
        rows_read=prepared.rows_read,
        repeated=prepared.repeated,
        content_hash=prepared.content_hash,
        ref=ref,
        replayed=replayed,
        # a replay re-runs quarantined rows, not the source: it must not stand for its inputs
        fingerprint=prepared.fingerprint if replayed is None else None,
    )


def _no_progress(source: str, stage: str) -> None:
    """Progress sink that shows nothing (the library's default)."""


@dataclass(frozen=True)
class Steps:
    """The stage calls of one source run, in the one sequence `run_source` holds.

    The defaults are the library's stage functions; a Prefect flow passes its tasks (which call
    these same functions) to add retries and run history, so both paths run the same code.
    """

    extract: Callable[[Source, Settings], Fetched] = read_source
    transform: Callable[[Fetched | list[RawTable], Source, Reference, Settings], Prepared] = (
        prepare
    )
    load: Callable[[Settings, Batch, Prepared, Reference, list[str] | None], LoadResult] = (
        load_source
    )
    publish: Callable[[Settings], str | None] = publish_or_defer
    stage: Callable[[str, str], None] = _no_progress


DIRECT = Steps()


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
        # the skip; a list fetched over the network is read without holding the warehouse
        local = uri_scheme(source.uri) == "file"
        with held(settings, verify_file=True) if local else contextlib.nullcontext():
            if not local:
                with held(settings, verify_file=True):
                    batch = start_batch(settings, source, flow_run_id)
            else:
                batch = start_batch(settings, source, flow_run_id)
            try:
                reference = ref or Reference.load(settings)
                steps.stage(source.name, "extract")
                fetched = steps.extract(source, settings)
                result = None
                if not force:
                    with held(settings):
                        result = skip_if_unchanged(settings, batch, fetched, source, reference)
                        if result is not None:  # nothing to load: repair what earlier runs left
                            steps.stage(source.name, "publish")
                            result.publish_pending = steps.publish(settings)
            except Exception as exc:
                _failed(settings, batch, exc, steps)
                raise
        try:
            if result is None:
                steps.stage(source.name, "transform")
                prepared = steps.transform(fetched, source, reference, settings)
                steps.stage(source.name, "load")
                result = steps.load(settings, batch, prepared, reference, None)
        except Exception as exc:
            _failed(settings, batch, exc, steps)
            raise
        if not result.unchanged_since:
            steps.stage(source.name, "publish")
            # committed is committed: a disk that refuses the Parquet leaves it queued, not failed
            result.publish_pending = steps.publish(settings)
    steps.stage(source.name, "unchanged: skipped" if result.unchanged_since else "done")
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
        for source in sources:
            try:
                results.append(run_one(source))
            except Exception as exc:
                failures.append(f"{source.name}: {exc}")
        gone = unconfigured_sources(settings, [s.name for s in sources])
        report = write_configured_report(settings)
    return RunSummary(results, failures, gone, report)
