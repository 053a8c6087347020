"""Past one process: sources prepared in parallel on a Dask cluster, and a Prefect global
concurrency limit so that two runs on two machines never write one warehouse at once.

What runs where: each source's extract and transform (reading the lists, mapping, resolving,
validating with pandera, splitting off the quarantine) runs as a task on a Dask worker; the
process that runs the flow holds the warehouse's run lock and the concurrency slot, and commits
the prepared sources one at a time, in the configured order, through `pipeline.run_source`:
the same skip check, load transaction, conservation check and publish as in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from relations_etl import pipeline
from relations_etl.audit import last_fingerprint
from relations_etl.config import Source
from relations_etl.errors import ClusterUnavailableError, WarehouseLockedError
from relations_etl.extract import Fetched
from relations_etl.lock import run_lock
from relations_etl.pipeline import Prepared, RunSummary, Steps
from relations_etl.rawtable import RawTable
from relations_etl.reference import Reference
from relations_etl.report import check_report_settings
from relations_etl.settings import Settings
from relations_etl_flows.ingest import _transient_only

Ahead = tuple[Fetched, Prepared | None]
CONNECT_TIMEOUT = 10
"""Seconds to reach a running scheduler (RELATIONS_ETL_DASK_ADDRESS) before the run fails."""


@task(
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_transient_only,
    cache_policy=NO_CACHE,
)
def prepare_source(source: Source, settings: Settings, last: str | None) -> Ahead:
    """Extract and transform one source on a worker (I/O retried when transient)."""
    return pipeline.prepare_ahead(source, settings, last)


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


def _ahead_steps(steps: Steps, ahead: PrefectFuture[Ahead]) -> Steps:
    """The flow's steps with extract and transform taken from a worker's result; the worker's
    error, if any, is raised where run_source expects it, so it is audited the same way."""

    def extract(source: Source, settings: Settings) -> Fetched:
        return ahead.result()[0]

    def transform(
        tables: Fetched | list[RawTable], source: Source, ref: Reference, settings: Settings
    ) -> Prepared:
        prepared = ahead.result()[1]
        # left out by the worker when the inputs matched; run anyway here (force, or a source
        # changed between the worker's read and now)
        return prepared if prepared is not None else steps.transform(tables, source, ref, settings)

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

            def run_one(source: Source) -> Any:
                return pipeline.run_source(
                    source,
                    settings,
                    flow_run_id=flow_run_id,
                    force=force,
                    steps=_ahead_steps(steps, ahead[source.name]),
                )

            return pipeline.run_sources(settings, sources, run_one, what=what)


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
