"""The published contract: schemas/ in sync with the code, Parquet readable without this package,
SQL views and macros answering the questions of the source document, deployments that resolve."""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
import yaml

from relations_etl.config import Kind, load_sources
from relations_etl.contract import export
from relations_etl.facts import fact_columns
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO


def test_schemas_folder_is_in_sync_with_the_code(tmp_path: Path) -> None:
    for generated in export(tmp_path):
        committed = REPO / "schemas" / generated.name
        assert committed.is_file(), f"{committed} missing: run `make schemas`"
        assert committed.read_text(encoding="utf-8") == generated.read_text(encoding="utf-8"), (
            f"{committed} is stale: run `make schemas`"
        )


@pytest.fixture
def demo(settings: Settings) -> Settings:
    for source in load_sources(REPO / "examples" / "sources.yaml"):
        run_source(source, settings)
    return settings


def test_parquet_is_readable_by_other_tools(demo: Settings) -> None:
    root = demo.parquet_dir
    for kind, table in (
        (Kind.VISITS, "visits"),
        (Kind.MEMBERSHIPS, "memberships"),
        (Kind.RELATIONS, "relations"),
        (Kind.REPORTED_TOTALS, "reported_totals"),
    ):
        expected = run_query(demo, f"SELECT count(*) FROM {table}").item()
        by_polars = pl.scan_parquet(root / table / "**" / "*.parquet", hive_partitioning=True)
        assert by_polars.select(pl.len()).collect().item() == expected
        # the hive partition adds `year`, unless the table has a year column of its own
        partition = [] if "year" in fact_columns(kind) else ["year"]
        assert by_polars.collect_schema().names() == [*fact_columns(kind), *partition]
        by_arrow = ds.dataset(root / table, format="parquet", partitioning="hive")
        assert by_arrow.count_rows() == expected
        years = duckdb.sql(
            f"SELECT DISTINCT year FROM read_parquet('{root / table}/*/*.parquet', "
            "hive_partitioning=true) ORDER BY year"
        ).fetchall()
        assert years, table
    rejected = pl.read_parquet(root / "rejected_rows" / "**" / "*.parquet")
    assert rejected.height == 7
    assert rejected.schema["errors"] == pl.List(
        pl.Struct(
            {"column": pl.String, "check": pl.String, "value": pl.String, "message": pl.String}
        )
    )
    assert not list(root.rglob("*.tmp")), "no temporary files are left behind"


def test_relations_in_force_on_a_date_is_one_query(demo: Settings) -> None:
    count = "SELECT count(*) FROM relations_in_force(DATE '{}') WHERE country = '{}'"
    assert run_query(demo, count.format("1991-06-30", "KAZ")).item() == 0
    # USA (1991-12) and China (1992-01), plus Germany and Turkey, known only as "1992": a date
    # known to the month or year counts from the first day of that month or year
    assert run_query(demo, count.format("1992-01-31", "KAZ")).item() == 4
    assert run_query(demo, count.format("1991-12-31", "KAZ")).item() == 1
    assert run_query(demo, count.format("2023-12-31", "KAZ")).item() == 5
    assert run_query(demo, count.format("2023-12-31", "CHN")).item() == 1, "relations are mutual"


def test_relations_end_when_severed_and_resume_when_restored(
    settings: Settings, tmp_path: Path
) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        "country,counterpart,event,date\n"
        "Kazakhstan,Israel,established,1992-04-10\n"
        "Israel,Kazakhstan,severed,2000-05\n"
        "Kazakhstan,Israel,restored,2001\n",
        encoding="utf-8",
    )
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  - {name: r, kind: relations, uri: relations.csv, mapping: {columns: "
        "{country: country, counterpart: counterpart, event: event, date: event_date}}}\n",
        encoding="utf-8",
    )
    (source,) = load_sources(config)
    run_source(source, settings)
    at = "SELECT count(*) FROM relations_in_force(DATE '{}') WHERE country = 'KAZ'"
    assert [
        run_query(settings, at.format(d)).item() for d in ("1992-06-01", "2000-12-31", "2001-01-01")
    ] == [1, 0, 1]
    summary = run_query(
        settings,
        "SELECT year, relations_count FROM annual_summary "
        "WHERE country = 'ISR' AND year IN (1999, 2000, 2001)",
    )
    assert sorted(summary.rows()) == [(1999, 1), (2000, 0), (2001, 1)]


def test_prefect_deployment_points_at_a_real_flow() -> None:
    spec = yaml.safe_load((REPO / "flows" / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = spec["deployments"]
    path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert flow.name == "nightly"
    assert set(deployment["parameters"]) <= set(flow.parameters.properties)
    assert (REPO / deployment["parameters"]["config"]).is_file()
    (schedule,) = deployment["schedules"]
    from prefect.client.schemas.schedules import CronSchedule

    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "15 2 * * *"
