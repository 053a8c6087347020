"""Flows: one source end to end (ingest_source), every configured source (nightly), replays.

The stage sequence lives in `relations_etl.pipeline`; these flows hand it Prefect tasks that
call the same stage functions, adding retries on I/O, run history and artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

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
from prefect.utilities.annotations import opaque

from relations_etl import pipeline
from relations_etl.audit import Batch, LoadResult
from relations_etl.config import Source, load_sources
from relations_etl.errors import RelationsEtlError, SourcesFailedError
from relations_etl.extract import Fetched
from relations_etl.pipeline import Prepared, Steps
from relations_etl.publish import publish_or_defer
from relations_etl.rawtable import RawTable
from relations_etl.reference import Reference
from relations_etl.report import batch_markdown, markdown_table
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
def extract_source(source: Source, settings: Settings) -> Fetched:
    """Hash every file of the source, unparsed (I/O: retried when the failure is transient)."""
    return pipeline.read_source(source, settings)


@task(cache_policy=NO_CACHE)
def transform_source(
    tables: Fetched | list[RawTable], source: Source, ref: Reference, settings: Settings
) -> Prepared:
    """Parse, map, normalize, validate and split the raw tables."""
    return pipeline.prepare(tables, source, ref, settings)


@task(cache_policy=NO_CACHE)
def load_prepared(
    settings: Settings,
    batch: Batch,
    prepared: Prepared,
    ref: Reference,
    replayed: list[str] | None = None,
) -> LoadResult:
    """Load in one transaction with the audit row; a failure is audited, never retried."""
    preview = prepared.rejected_preview(settings.preview_rows)  # the load removes the files
    result = pipeline.load_source(settings, batch, prepared, ref, replayed)
    _report(result, preview)
    return result


@task(cache_policy=NO_CACHE)
def publish(settings: Settings) -> str | None:
    """Write the Parquet years committed and not yet published; a disk that refuses them leaves
    them queued for the next run and says why (the batch itself is committed)."""
    return publish_or_defer(settings)


def _unwalked(ref: Reference) -> Reference:
    """The reference data as a task argument Prefect hands over without walking into it.

    It holds some 27,000 dicts, sets and tuples and no future: Prefect would otherwise visit
    every one of them twice per task run (its inputs, then their results), 0.2-0.4 s of CPU a
    task, more than the task's own work on a small list."""
    return cast(Reference, opaque(ref))


def _steps(settings: Settings) -> Steps:
    """The pipeline's steps as this flow's tasks, with the retry delays of the settings."""
    return Steps(
        extract=extract_source.with_options(
            retries=len(settings.retry_delays), retry_delay_seconds=settings.retry_delays
        ),
        # the reference data unwalked; the other arguments are Prefect's to follow
        transform=lambda tables, source, ref, settings: transform_source(
            tables, source, _unwalked(ref), settings
        ),
        load=lambda settings, batch, prepared, ref, replayed: load_prepared(
            settings, batch, prepared, _unwalked(ref), replayed
        ),
        publish=publish,
        stage=progress.stage,
    )


def _settings(home: str | None) -> Settings:
    return Settings(home=Path(home)) if home else Settings()


def _run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


@flow(name="ingest-source", log_prints=True)
def ingest_source(source: Source, home: str | None = None, force: bool = False) -> LoadResult:
    """Run one raw list through extract, transform, load and publish; skip it when unchanged."""
    settings = _settings(home)
    result = pipeline.run_source(
        source, settings, flow_run_id=_run_id(), force=force, steps=_steps(settings)
    )
    if result.unchanged_since:
        get_run_logger().info(
            "%s: unchanged since batch %s, skipped", source.name, result.unchanged_since
        )
    return result


def _report(result: LoadResult, preview: pl.DataFrame) -> None:
    create_markdown_artifact(
        key=f"batch-{''.join(c if c.isalnum() else '-' for c in result.source.lower())}",
        markdown=batch_markdown(result, preview),
        description=f"Batch {result.batch_id} of {result.source}",
    )
    get_run_logger().info(
        "%s: read %d, loaded %d, rejected %d, deduplicated %d",
        result.source,
        result.rows_read,
        result.rows_loaded,
        result.rows_rejected,
        result.rows_deduplicated,
    )


@flow(name="replay-quarantine", log_prints=True)
def replay_quarantine(source: str | None = None, home: str | None = None) -> list[LoadResult]:
    """Re-run open quarantine rows against today's reference data; passing rows are loaded."""
    settings = _settings(home)
    return pipeline.replay(settings, source, flow_run_id=_run_id(), steps=_steps(settings))


def _status(result: LoadResult) -> str:
    """The batch's state in the audit's own word (load_batches.status): a committed batch has
    succeeded even when its Parquet waits; the publish column says that."""
    return "skipped" if result.unchanged_since else "succeeded"


@flow(name="nightly", log_prints=True)
def nightly(
    config: str | None = None,
    home: str | None = None,
    force: bool = False,
    task_runner: str | None = None,
) -> list[LoadResult]:
    """Every configured source, one after the other; one failing source does not stop the rest.

    Sources whose inputs are unchanged since their last successful batch are skipped unless
    `force`; sources that loaded before and are no longer configured are reported, rows kept.
    `task_runner` (default: RELATIONS_ETL_TASK_RUNNER) `dask` prepares the sources in parallel
    on a Dask cluster; their commits stay one at a time, in order (relations_etl_flows.scale).
    """
    from relations_etl_flows import scale

    settings = _settings(home)
    if task_runner is not None:
        settings = settings.model_copy(update={"task_runner": task_runner})
    sources = load_sources(Path(config) if config else settings.config, settings)
    what = f"nightly (flow run {_run_id()})"
    with scale.warehouse_slot(settings, what):
        if settings.task_runner == "dask":
            run = scale.run_on_dask(
                settings,
                sources,
                _steps(settings),
                force=force,
                flow_run_id=_run_id(),
                what=what,
            )
        else:
            run = pipeline.run_sources(
                settings,
                sources,
                lambda source: ingest_source(source, home=home, force=force),
                what=what,
            )
    summary = pl.DataFrame(
        [
            {
                "source": r.source,
                "kind": r.kind.value,
                "status": _status(r),
                "publish": "pending" if r.publish_pending else "done",
                "read": r.rows_read,
                "loaded": r.rows_loaded,
                "rejected": r.rows_rejected,
                "deduplicated": r.rows_deduplicated,
            }
            for r in run.results
        ]
    )
    markdown = "# Nightly run\n\n" + markdown_table(summary)
    if run.failures:
        markdown += "\n\n## Failed sources\n\n" + "\n".join(f"- {f}" for f in run.failures)
    pending = [f"- {r.source}: {r.publish_pending}" for r in run.results if r.publish_pending]
    if pending:
        markdown += (
            "\n\n## Publish pending (the rows are loaded; the next run writes the Parquet files)"
            "\n\n" + "\n".join(pending)
        )
        get_run_logger().warning("publish pending, the next run writes the files: %s", pending)
    if run.unconfigured.height:
        markdown += "\n\n## Sources no longer configured (their rows stay)\n\n"
        markdown += markdown_table(run.unconfigured)
        get_run_logger().warning(
            "no longer configured, rows kept: %s", ", ".join(run.unconfigured["source"].to_list())
        )
    if run.report is not None:
        # a path, not a file:// link: a browser elsewhere has no such file (the link artifact
        # below carries the URI for a browser on the worker's machine)
        markdown += f"\n\n## Report\n\n`{run.report}` on the machine that ran this flow"
        create_link_artifact(
            key="nightly-report",
            link=run.report.as_uri(),
            link_text=f"Annual report {run.report.stem}",
        )
    create_table_artifact(
        key="nightly-counts", table=summary.to_dicts(), description="Rows per source, this run"
    )
    create_markdown_artifact(key="nightly-summary", markdown=markdown)
    if run.failures:
        raise SourcesFailedError(
            f"{len(run.failures)} source(s) failed: " + "; ".join(run.failures)
        )
    return run.results
