"""The stages composed for one source: what a flow orchestrates, callable without Prefect."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from relations_etl.config import Kind, Source
from relations_etl.extract import RawTable, extract
from relations_etl.load import Batch, LoadResult, load_batch, record_failure
from relations_etl.mapping import apply_mapping
from relations_etl.normalize import normalize
from relations_etl.periods import collapse_years
from relations_etl.publish import publish_years
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from relations_etl.split import REJECTED_SCHEMA, Split, split
from relations_etl.validate import validate


@dataclass(frozen=True)
class Prepared:
    """A whole source transformed and ready to load."""

    facts: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    repeated: int
    content_hash: str


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


def transform(
    raw: RawTable, source: Source, ref: Reference, settings: Settings, *, many_files: bool = False
) -> Split:
    """map -> normalize -> validate -> split, for one raw table."""
    mapped = apply_mapping(raw, source, ref, many_files=many_files)
    normalized = normalize(mapped, source, ref, default_order=settings.date_order)
    validated = validate(normalized, source.kind)
    return split(validated, source.kind, source.name)


def prepare(
    tables: Iterable[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """Transform every raw table of a source and gather facts, rejects and counts."""
    tables = list(tables)
    many = len(tables) > 1
    parts = [transform(t, source, ref, settings, many_files=many) for t in tables]
    facts = pl.concat([p.facts for p in parts]) if parts else pl.DataFrame()
    rejected = (
        pl.concat([p.rejected for p in parts]) if parts else pl.DataFrame(schema=REJECTED_SCHEMA)
    )
    if source.kind is Kind.MEMBERSHIPS and source.mapping.periods == "yearly":
        facts = collapse_years(facts)
    digest = hashlib.sha256("".join(t.content_hash for t in tables).encode()).hexdigest()
    return Prepared(
        facts,
        rejected,
        sum(t.frame.height for t in tables),
        sum(p.repeated for p in parts),
        tables[0].content_hash if len(tables) == 1 else digest,
    )


def run_source(
    source: Source,
    settings: Settings,
    *,
    ref: Reference | None = None,
    flow_run_id: str | None = None,
) -> LoadResult:
    """Run one source end to end; a failure is audited and re-raised, nothing half-loaded."""
    batch = new_batch(source, flow_run_id)
    try:
        reference = ref or Reference.load(settings)
        prepared = prepare(extract(source), source, reference, settings)
        result = load_source(settings, batch, prepared, reference)
    except Exception as exc:
        record_failure(settings, batch, exc)
        raise
    publish_years(settings, result.years)
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
    )
