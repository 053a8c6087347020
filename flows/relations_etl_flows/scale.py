"""Past one process: sources prepared in parallel on a Dask cluster, and a Prefect global
concurrency limit so that two runs on two machines never write one warehouse at once.

What runs where: each source's extract and transform (reading the lists, mapping, resolving,
validating with pandera, splitting off the quarantine) runs as a task on a Dask worker; a source
of several files (an object-storage prefix) is read by one task, then each of its files is
transformed and staged by a task of its own (`pipeline.stage_part`), on any worker. The process
that runs the flow holds the warehouse's run lock and the concurrency slot, runs the checks
across rows and the split of a source staged by file (`pipeline.finish_parts`), and commits the
prepared sources one at a time, in the configured order, through `pipeline.run_source`: the
same skip check, load transaction, conservation check and publish as in one process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed

from relations_etl import pipeline
from relations_etl.audit import last_fingerprint
from relations_etl.config import Source
from relations_etl.errors import ClusterUnavailableError, WarehouseLockedError
from relations_etl.extract import Fetched, refetch
from relations_etl.lock import run_lock
from relations_etl.pipeline import Prepared, RunSummary, StagedPart, Steps
from relations_etl.rawtable import RawTable
from relations_etl.reference import Reference
from relations_etl.report import check_report_settings
from relations_etl.settings import Settings
from relations_etl_flows.ingest import _transient_only

Ahead = tuple[Fetched, Prepared | None, bool]
"""A source read on a worker: its files, its prepared batch (None when unchanged or when it is
to be prepared by file) and whether it is to be prepared by file (`pipeline.source_parts`)."""
CONNECT_TIMEOUT = 10
"""Seconds to reach a running scheduler (RELATIONS_ETL_DASK_ADDRESS) before the run fails."""


@task(
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_transient_only,
    cache_policy=NO_CACHE,
)
def prepare_source(source: Source, settings: Settings, last: str | None) -> Ahead:
    """Extract and transform one source on a worker (I/O retried when transient); a changed
    source of several files is only read, its files are transformed by `stage_part` tasks."""
    return pipeline.prepare_ahead(source, settings, last)


@task(cache_policy=NO_CACHE)
def stage_part(part: Fetched, index: int, folder: Path, settings: Settings) -> StagedPart:
    """Transform one file of a source and stage it in the source's staging folder."""
    return pipeline.stage_part(part, index, folder, settings)


@dataclass(frozen=True)
class _ByFile:
    """A source being prepared file by file: its staging folder and the tasks of its files."""

    folder: Path
    parts: list[PrefectFuture[StagedPart]]

    def prepared(self, fetched: Fetched, settings: Settings) -> Prepared:
        """The files' staged rows checked and split together, once every file is staged; a
        file's failure is raised here, in the source's turn, and the folder removed."""
        try:
            parts = [part.result() for part in self.parts]
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return pipeline.finish_parts(fetched, parts, self.folder, settings)


def dask_runner(settings: Settings) -> Any:
    """prefect-dask's task runner: on the scheduler of RELATIONS_ETL_DASK_ADDRESS, else on a
    temporary local cluster of RELATIONS_ETL_DASK_WORKERS single-threaded processes on
    127.0.0.1 that ends with the run."""
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError as exc:
        from relations_etl.errors import ConfigError

        raise ConfigError(
            "the dask task runner needs prefect-dask, which is not installed",
            hint="Install the extra: pip install 'relations-etl[dask]'; or run without "
            "--task-runner dask.",
        ) from exc
    if settings.dask_address:
        return DaskTaskRunner(
            address=settings.dask_address, client_kwargs={"timeout": CONNECT_TIMEOUT}
        )
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,  # polars and DuckDB use the cores a worker has
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",  # any free port: never taken from another run
            "silence_logs": 40,
        },
    )


def _ahead_steps(
    steps: Steps, ahead: PrefectFuture[Ahead], by_file: _ByFile | None = None
) -> Steps:
    """The flow's steps with extract and transform taken from a worker's result; the worker's
    error, if any, is raised where run_source expects it, so it is audited the same way."""

    def extract(source: Source, settings: Settings) -> Fetched:
        return ahead.result()[0]

    def transform(
        tables: Fetched | list[RawTable], source: Source, ref: Reference, settings: Settings
    ) -> Prepared:
        if by_file is not None:
            return by_file.prepared(ahead.result()[0], settings)
        prepared = ahead.result()[1]
        if prepared is not None:
            return prepared
        # left out by the worker when the inputs matched; run anyway here (force, or a source
        # changed between the worker's read and now), on the lists fetched again here
        if not isinstance(tables, Fetched):
            return steps.transform(tables, source, ref, settings)
        with refetch(tables, settings) as again:
            return steps.transform(again, source, ref, settings)

    return replace(steps, extract=extract, transform=transform)


def run_on_dask(
    settings: Settings,
    sources: Sequence[Source],
    steps: Steps,
    *,
    force: bool,
    flow_run_id: str | None,
    what: str,
) -> RunSummary:
    """Every source prepared in parallel on Dask, committed here one at a time in order."""
    check_report_settings(settings)
    with run_lock(settings, what):
        lasts = {}
        if not force:
            for source in sources:
                last = last_fingerprint(settings, source.name)
                lasts[source.name] = last[1] if last else None
        with ExitStack() as stack:
            try:
                runner = stack.enter_context(dask_runner(settings))
                runner.client  # noqa: B018  (prefect-dask connects at the first submit otherwise)
            except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: no cluster
                where = settings.dask_address or "a local cluster"
                raise ClusterUnavailableError(
                    f"the Dask scheduler ({where}) could not be reached or started: {exc}"
                ) from exc
            ahead = {
                source.name: runner.submit(
                    prepare_source,
                    {"source": source, "settings": settings, "last": lasts.get(source.name)},
                )
                for source in sources
            }
            splits = {s.name: ahead[s.name] for s in sources if pipeline.may_split(s)}
            by_file = _by_file(runner, settings, splits)
            for job in by_file.values():  # a source not committed (the run failed) leaves none
                stack.callback(shutil.rmtree, job.folder, True)

            def run_one(source: Source) -> Any:
                return pipeline.run_source(
                    source,
                    settings,
                    flow_run_id=flow_run_id,
                    force=force,
                    steps=_ahead_steps(steps, ahead[source.name], by_file.get(source.name)),
                )

            return pipeline.run_sources(settings, sources, run_one, what=what)


def _by_file(
    runner: Any, settings: Settings, ahead: dict[str, PrefectFuture[Ahead]]
) -> dict[str, _ByFile]:
    """A `stage_part` task for each file of each of the sources read (`ahead`: those that
    `may_split`) that are to be prepared by file, sent as soon as the source is read; a
    source's files are staged in one folder, under RELATIONS_ETL_STAGING_DIR."""
    names = {future.task_run_id: name for name, future in ahead.items()}
    jobs: dict[str, _ByFile] = {}
    for future in as_completed(list(ahead.values())):
        try:
            fetched, _, split = future.result()
        except Exception:
            continue  # raised again, and audited, in the source's turn
        parts = pipeline.source_parts(fetched) if split else None
        if parts is None:
            continue
        folder = pipeline.staging_folder(settings)
        tasks = [
            runner.submit(
                stage_part, {"part": part, "index": i, "folder": folder, "settings": settings}
            )
            for i, part in enumerate(parts)
        ]
        jobs[names[future.task_run_id]] = _ByFile(folder, tasks)
    return jobs


@contextmanager
def warehouse_slot(settings: Settings, what: str) -> Iterator[None]:
    """Hold the one slot of the Prefect global concurrency limit of the warehouse (created
    with one slot when missing) for the whole run, waiting at most the lock timeout."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = settings.run_concurrency_limit
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=settings.lock_timeout,
                    # a run killed with its slot frees it when the lease ends (the server
                    # looks every 15 s); a live run renews it
                    lease_duration=60,
                    strict=True,
                )
            )
        except TimeoutError as exc:
            raise WarehouseLockedError(
                f"{what}: another run holds the Prefect global concurrency limit {name!r} of "
                f"this warehouse (waited {settings.lock_timeout:g} s)",
                hint="Nothing was changed; a run on another machine reporting to the same "
                "Prefect server is writing. Rerun when it has finished, or raise "
                "RELATIONS_ETL_LOCK_TIMEOUT.",
            ) from exc
        yield
