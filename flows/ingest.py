"""Flows: one source end to end (ingest_source) and every configured source (nightly)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from relations_etl.config import Source, load_sources
from relations_etl.errors import RelationsEtlError, SourcesFailedError
from relations_etl.extract import RawTable, extract
from relations_etl.load import LoadResult, record_failure
from relations_etl.pipeline import Prepared, load_source, new_batch, prepare
from relations_etl.publish import publish_years
from relations_etl.quarantine import prepare_replay, sources_with_open_rows
from relations_etl.reference import Reference
from relations_etl.report import batch_markdown, markdown_table
from relations_etl.settings import Settings


def _transient_only(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry network failures; bad data and bad configuration are terminal."""
    try:
        state.result()
    except RelationsEtlError as exc:
        return exc.transient
    except Exception:
        return False
    return False


@task(
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_transient_only,
    cache_policy=NO_CACHE,
)
def extract_source(source: Source) -> list[RawTable]:
    """Read every file of the source (I/O: retried when the failure is transient)."""
    return list(extract(source))


@task(cache_policy=NO_CACHE)
def transform_source(
    tables: list[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """map, normalize, validate and split the raw tables."""
    return prepare(tables, source, ref, settings)


@task(cache_policy=NO_CACHE)
def load_prepared(
    settings: Settings,
    prepared: Prepared,
    source: Source,
    ref: Reference,
    flow_run_id: str | None,
    replayed: list[str] | None = None,
) -> LoadResult:
    """Load in one transaction with the audit row; a failure is audited, never retried."""
    batch = new_batch(source, flow_run_id)
    if replayed is not None:
        batch = replace(batch, source_uri=f"quarantine replay of {source.uri}")
    try:
        return load_source(settings, batch, prepared, ref, replayed)
    except Exception as exc:
        record_failure(settings, batch, exc)
        raise


@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def publish(settings: Settings, years: dict[str, set[int]]) -> list[str]:
    """Rewrite the Parquet partitions the batch touched (I/O: retried)."""
    return publish_years(settings, years)


def _settings(home: str | None) -> Settings:
    return Settings(home=Path(home)) if home else Settings()


@flow(name="ingest-source", log_prints=True)
def ingest_source(source: Source, home: str | None = None) -> LoadResult:
    """Run one raw list through extract, transform, load and publish."""
    settings = _settings(home)
    ref = Reference.load(settings)
    run_id = str(flow_run.id) if flow_run.id else None
    try:
        tables = extract_source(source)
        prepared = transform_source(tables, source, ref, settings)
    except Exception as exc:  # audited as a failed batch; load_prepared audits its own failures
        record_failure(settings, new_batch(source, run_id), exc)
        raise
    result = load_prepared(settings, prepared, source, ref, run_id)
    publish(settings, result.years)
    _report(settings, source, result, prepared)
    return result


def _report(settings: Settings, source: Source, result: LoadResult, prepared: Prepared) -> None:
    create_markdown_artifact(
        key=f"batch-{''.join(c if c.isalnum() else '-' for c in source.name.lower())}",
        markdown=batch_markdown(result, prepared.rejected.head(settings.preview_rows)),
        description=f"Batch {result.batch_id} of {source.name}",
    )
    get_run_logger().info(
        "%s: read %d, loaded %d, rejected %d, deduplicated %d",
        source.name,
        result.rows_read,
        result.rows_loaded,
        result.rows_rejected,
        result.rows_deduplicated,
    )


@flow(name="replay-quarantine", log_prints=True)
def replay_quarantine(source: str | None = None, home: str | None = None) -> list[LoadResult]:
    """Re-run open quarantine rows against today's reference data; passing rows are loaded."""
    settings = _settings(home)
    ref = Reference.load(settings)
    run_id = str(flow_run.id) if flow_run.id else None
    results = []
    for name in sources_with_open_rows(settings, source):
        replay = prepare_replay(settings, name)
        prepared = transform_source(replay.tables, replay.source, ref, settings)
        result = load_prepared(settings, prepared, replay.source, ref, run_id, replay.keys)
        publish(settings, result.years)
        _report(settings, replay.source, result, prepared)
        results.append(result)
    return results


@flow(name="nightly", log_prints=True)
def nightly(config: str | None = None, home: str | None = None) -> list[LoadResult]:
    """Every configured source, one after the other; one failing source does not stop the rest."""
    settings = _settings(home)
    sources = load_sources(Path(config) if config else settings.config)
    results: list[LoadResult] = []
    failures: list[str] = []
    for source in sources:
        state = ingest_source(source, home=home, return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            failures.append(f"{source.name}: {state.message}")
    summary = pl.DataFrame(
        [
            {
                "source": r.source,
                "kind": r.kind.value,
                "read": r.rows_read,
                "loaded": r.rows_loaded,
                "rejected": r.rows_rejected,
                "deduplicated": r.rows_deduplicated,
            }
            for r in results
        ]
    )
    create_markdown_artifact(
        key="nightly-summary",
        markdown="# Nightly run\n\n"
        + markdown_table(summary)
        + ("\n\n## Failed sources\n\n" + "\n".join(f"- {f}" for f in failures) if failures else ""),
    )
    if failures:
        raise SourcesFailedError(f"{len(failures)} source(s) failed: " + "; ".join(failures))
    return results
