"""The stages composed for one source: what a flow orchestrates, callable without Prefect."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

import relations_etl
from relations_etl.config import Kind, Source
from relations_etl.extract import RawTable, combine, extract
from relations_etl.load import (
    Batch,
    LoadResult,
    begin_batch,
    last_fingerprint,
    load_batch,
    record_failure,
    record_skip,
)
from relations_etl.lock import run_lock
from relations_etl.mapping import apply_mapping
from relations_etl.normalize import normalize
from relations_etl.periods import collapse_years
from relations_etl.publish import publish_or_defer
from relations_etl.reference import Reference
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


def transform(raw: RawTable, source: Source, ref: Reference, settings: Settings) -> Split:
    """map -> normalize -> validate -> split, for one raw table."""
    mapped = apply_mapping(raw, source, ref)
    normalized = normalize(mapped, source, ref, default_order=settings.date_order)
    validated = validate(normalized, source.kind)
    return split(validated, source.kind, source.name)


def prepare(
    tables: Iterable[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """Transform the raw tables of a source as one table and gather facts, rejects and counts."""
    raw = combine(list(tables), source.uri)
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
        fingerprint(raw, source, ref),
    )


def fingerprint(raw: RawTable, source: Source, ref: Reference) -> str:
    """Everything a batch's result depends on: files, source entry, reference data, code."""
    digest = hashlib.sha256()
    for part in (
        relations_etl.__version__,
        source.model_dump_json(by_alias=True),
        ref.digest,
        f"{raw.file}={raw.content_hash}",
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
    settings: Settings, batch: Batch, tables: list[RawTable], source: Source, ref: Reference
) -> LoadResult | None:
    """Audit and return a skipped batch when the inputs equal the last successful batch's."""
    raw = combine(tables, source.uri)
    inputs = fingerprint(raw, source, ref)
    last = last_fingerprint(settings, source.name)
    if last is None or last[1] != inputs:
        return None
    return record_skip(settings, batch, last[0], raw.content_hash, inputs)


def run_source(
    source: Source,
    settings: Settings,
    *,
    ref: Reference | None = None,
    flow_run_id: str | None = None,
    force: bool = False,
) -> LoadResult:
    """Run one source end to end under the run lock; a failure is audited, nothing half-loaded.

    An unchanged source is skipped unless `force`. What earlier runs committed but did not
    publish (a crash) is published either way.
    """
    with run_lock(settings, f"source {source.name}"):
        batch = start_batch(settings, source, flow_run_id)
        try:
            reference = ref or Reference.load(settings)
            tables = list(extract(source, settings))
            skipped = (
                None if force else skip_if_unchanged(settings, batch, tables, source, reference)
            )
            result = skipped or load_source(
                settings, batch, prepare(tables, source, reference, settings), reference
            )
        except Exception as exc:
            record_failure(settings, batch, exc)
            raise
        # committed is committed: a disk that refuses the Parquet leaves it queued, not failed
        result.publish_pending = publish_or_defer(settings)
        return result


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
