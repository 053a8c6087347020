"""Flows: one source end to end (ingest_source) and every configured source (nightly)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from relations_etl.config import Source, load_sources
from relations_etl.errors import RelationsEtlError, SourcesFailedError
from relations_etl.extract import RawTable, extract
from relations_etl.load import Batch, LoadResult, record_failure, unconfigured_sources
from relations_etl.lock import run_lock
from relations_etl.pipeline import (
    Prepared,
    load_source,
    prepare,
    skip_if_unchanged,
    start_batch,
)
from relations_etl.publish import publish_or_defer
from relations_etl.quarantine import prepare_replay, sources_with_open_rows
from relations_etl.reference import Reference
from relations_etl.report import batch_markdown, markdown_table, write_configured_report
from relations_etl.settings import Settings
from relations_etl_flows import progress


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
def extract_source(source: Source, settings: Settings) -> list[RawTable]:
    """Read every file of the source (I/O: retried when the failure is transient)."""
    return list(extract(source, settings))


@task(cache_policy=NO_CACHE)
def transform_source(
    tables: list[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """map, normalize, validate and split the raw tables."""
    return prepare(tables, source, ref, settings)


@task(cache_policy=NO_CACHE)
def load_prepared(
    settings: Settings,
    batch: Batch,
    prepared: Prepared,
    ref: Reference,
    replayed: list[str] | None = None,
) -> LoadResult:
    """Load in one transaction with the audit row; a failure is audited, never retried."""
    return load_source(settings, batch, prepared, ref, replayed)


@task(cache_policy=NO_CACHE)
def publish(settings: Settings) -> str | None:
    """Write the Parquet years committed and not yet published; a disk that refuses them leaves
    them queued for the next run and says why (the batch itself is committed)."""
    return publish_or_defer(settings)


def _settings(home: str | None) -> Settings:
    return Settings(home=Path(home)) if home else Settings()


def _run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


@flow(name="ingest-source", log_prints=True)
def ingest_source(source: Source, home: str | None = None, force: bool = False) -> LoadResult:
    """Run one raw list through extract, transform, load and publish; skip it when unchanged."""
    settings = _settings(home)
    with run_lock(settings, f"ingest-source {source.name} (flow run {_run_id()})"):
        batch = start_batch(settings, source, _run_id())
        try:
            ref = Reference.load(settings)
            progress.stage(source.name, "extract")
            tables = extract_source.with_options(
                retries=len(settings.retry_delays), retry_delay_seconds=settings.retry_delays
            )(source, settings)
            skipped = None if force else skip_if_unchanged(settings, batch, tables, source, ref)
            if skipped is None:
                progress.stage(source.name, "transform")
                prepared = transform_source(tables, source, ref, settings)
                progress.stage(source.name, "load")
                result = load_prepared(settings, batch, prepared, ref)
        except Exception as exc:
            record_failure(settings, batch, exc)
            progress.stage(source.name, "failed")
            raise
        progress.stage(source.name, "publish")
        pending = publish(settings)
    progress.stage(source.name, "unchanged: skipped" if skipped else "done")
    (skipped or result).publish_pending = pending
    if skipped is not None:
        get_run_logger().info(
            "%s: unchanged since batch %s, skipped", source.name, skipped.unchanged_since
        )
        return skipped
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
    results = []
    with run_lock(settings, f"replay-quarantine (flow run {_run_id()})"):
        ref = Reference.load(settings)
        for name in sources_with_open_rows(settings, source):
            replay = prepare_replay(settings, name)
            batch = replace(
                start_batch(settings, replay.source, _run_id()),
                source_uri=f"quarantine replay of {replay.source.uri}",
            )
            try:
                prepared = transform_source(replay.tables, replay.source, ref, settings)
                result = load_prepared(settings, batch, prepared, ref, replay.keys)
            except Exception as exc:
                record_failure(settings, batch, exc)
                raise
            result.publish_pending = publish(settings)
            _report(settings, replay.source, result, prepared)
            results.append(result)
    return results


def _status(result: LoadResult) -> str:
    """One word per state, the audit's: a committed batch is loaded even when its Parquet waits."""
    status = "skipped (unchanged)" if result.unchanged_since else "loaded"
    return f"{status}, publish pending" if result.publish_pending else status


@flow(name="nightly", log_prints=True)
def nightly(
    config: str | None = None, home: str | None = None, force: bool = False
) -> list[LoadResult]:
    """Every configured source, one after the other; one failing source does not stop the rest.

    Sources whose inputs are unchanged since their last successful batch are skipped unless
    `force`; sources that loaded before and are no longer configured are reported, rows kept.
    """
    settings = _settings(home)
    sources = load_sources(Path(config) if config else settings.config, settings)
    results: list[LoadResult] = []
    failures: list[str] = []
    with run_lock(settings, f"nightly (flow run {_run_id()})"):
        for source in sources:
            state = ingest_source(source, home=home, force=force, return_state=True)
            if state.is_completed():
                results.append(state.result())
            else:
                failures.append(f"{source.name}: {state.message}")
        gone = unconfigured_sources(settings, [s.name for s in sources])
        report = write_configured_report(settings)
    summary = pl.DataFrame(
        [
            {
                "source": r.source,
                "kind": r.kind.value,
                "status": _status(r),
                "read": r.rows_read,
                "loaded": r.rows_loaded,
                "rejected": r.rows_rejected,
                "deduplicated": r.rows_deduplicated,
            }
            for r in results
        ]
    )
    markdown = "# Nightly run\n\n" + markdown_table(summary)
    if failures:
        markdown += "\n\n## Failed sources\n\n" + "\n".join(f"- {f}" for f in failures)
    if gone.height:
        markdown += "\n\n## Sources no longer configured (their rows stay)\n\n"
        markdown += markdown_table(gone)
        get_run_logger().warning(
            "no longer configured, rows kept: %s", ", ".join(gone["source"].to_list())
        )
    if report is not None:
        markdown += f"\n\n## Report\n\n[{report.name}]({report.as_uri()}) (`{report}`)"
        create_link_artifact(
            key="nightly-report", link=report.as_uri(), link_text=f"Annual report {report.stem}"
        )
    create_table_artifact(
        key="nightly-counts", table=summary.to_dicts(), description="Rows per source, this run"
    )
    create_markdown_artifact(key="nightly-summary", markdown=markdown)
    if failures:
        raise SourcesFailedError(f"{len(failures)} source(s) failed: " + "; ".join(failures))
    return results
