"""Content digests of a warehouse: every table and every Parquet file, as tests compare them."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from relations_etl.config import load_sources
from relations_etl.pipeline import run_source
from relations_etl.settings import Settings
from tests.conftest import REPO

TABLES = (
    "visits",
    "memberships",
    "relations",
    "reported_totals",
    "rejected_rows",
    "countries",
    "organizations",
)
# annual_summary of Kazakhstan in 2023 from the demo lists, counted by hand from examples/
DEMO_KAZ_2023 = {
    "relations_count": 5,
    "head_visits": 5,
    "foreign_minister_visits": 1,
    "organization_head_visits": 0,
    "outbound_head_visits": 2,
    "chairmanships": 2,
    "elected_seats": 1,
    "outbound_foreign_minister_visits": 0,
    "memberships": 4,
}
# the rows the demo lists (examples/sources.yaml) leave in the fact tables and the quarantine
DEMO_ROWS = {
    "visits": 8,
    "memberships": 8,
    "relations": 5,
    "reported_totals": 3,
    "rejected_rows": 7,
}
# the demo's deliberately bad rows, by source and record (row number where a list has no ids)
DEMO_REJECTED = [
    ("kz-memberships", "10"),
    ("kz-memberships", "9"),
    ("kz-relations", "6"),
    ("kz-reported-totals", "bad-01"),
    ("kz-visits-2023", "bad-01"),
    ("kz-visits-2023", "bad-02"),
    ("kz-visits-2023", "bad-03"),
]
# lineage that differs between two warehouses fed the same lists (ids and clocks of their runs)
RUN_COLUMNS = ("batch_id", "loaded_at", "rejected_at", "resolved_batch_id")


def _digest(conn: duckdb.DuckDBPyConnection, relation: str, across_runs: bool) -> str:
    columns = [row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    keep = [c for c in columns if not (across_runs and c in RUN_COLUMNS)]
    selected = ", ".join(f'"{c}"' for c in keep)
    row = conn.execute(
        f"SELECT count(*) || ':' || coalesce(md5(string_agg(CAST(t AS VARCHAR), chr(10) "
        f"ORDER BY CAST(t AS VARCHAR))), '') FROM (SELECT {selected} FROM {relation}) AS t"
    ).fetchone()
    assert row is not None
    return f"{','.join(keep)}|{row[0]}"


def table_digests(settings: Settings, *, across_runs: bool = False) -> dict[str, str]:
    """Digest of each table's rows (all columns; without run lineage when `across_runs`)."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return {t: _digest(conn, t, across_runs) for t in TABLES}
    finally:
        conn.close()


def row_counts(settings: Settings, tables: tuple[str, ...] = tuple(DEMO_ROWS)) -> dict[str, int]:
    """The number of rows of each of `tables`."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return {t: _count(conn, t) for t in tables}
    finally:
        conn.close()


def _count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def rejected_records(settings: Settings) -> list[tuple[str, str]]:
    """(source, record) of every row in the quarantine, sorted."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        rows = conn.execute("SELECT source, source_record FROM rejected_rows ORDER BY ALL")
        return [(str(source), str(record)) for source, record in rows.fetchall()]
    finally:
        conn.close()


def parquet_digests(settings: Settings, *, across_runs: bool = False) -> dict[str, str]:
    """Digest of the rows of every published Parquet file, by path under the warehouse home."""
    conn = duckdb.connect()
    try:
        return {
            str(path.relative_to(settings.home)): _digest(
                conn, f"read_parquet('{path}', hive_partitioning = false)", across_runs
            )
            for path in sorted(settings.parquet_dir.rglob("*.parquet"))
        }
    finally:
        conn.close()


def sample_lists(folder: Path) -> Path:
    """A private copy of the demo lists and their sources file; returns the sources file."""
    shutil.copytree(REPO / "examples" / "data", folder / "data")
    config = folder / "sources.yaml"
    shutil.copy(REPO / "examples" / "sources.yaml", config)
    return config


def edit_relations(config: Path) -> None:
    """Change one relation's year, add one in another year: a new version of one list."""
    path = config.parent / "data" / "kz_relations.csv"
    text = path.read_text(encoding="utf-8").replace(
        "Germany,established,1992,", "Germany,established,1992-02-11,"
    )
    added = "Kazakhstan,Japan,established,1992-01-26,\nKazakhstan,South Sudan,established,2011,\n"
    path.write_text(text + added, encoding="utf-8")


def run_all(config: Path, settings: Settings) -> None:
    """Every source of a sources file through the library, as the nightly flow runs them."""
    for source in load_sources(config):
        run_source(source, settings)
