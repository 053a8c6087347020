"""Publish: the warehouse tables as hive-partitioned Parquet, each file replaced atomically."""

from __future__ import annotations

import os

import duckdb

from relations_etl.settings import Settings

YEAR_EXPR = {
    "visits": "year(start_date)",
    "memberships": "year(start_date)",
    "relations": "year(event_date)",
    "rejected_rows": "year(rejected_at)",
}


def publish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, table: str, years: set[int]
) -> list[str]:
    """Rewrite parquet/<table>/year=YYYY/data.parquet per year; an emptied year is removed."""
    written = []
    year_expr = YEAR_EXPR[table]
    for year in sorted(years):
        folder = settings.parquet_dir / table / f"year={year}"
        target = folder / "data.parquet"
        count = conn.execute(
            f"SELECT count(*) FROM {table} WHERE {year_expr} = ?", [year]
        ).fetchone()
        if not count or count[0] == 0:
            if target.exists():
                target.unlink()
            continue
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".data.parquet.{os.getpid()}.tmp"
        conn.execute(
            f"COPY (SELECT * EXCLUDE (row_hash) FROM {table} WHERE {year_expr} = {int(year)} "
            f"ORDER BY ALL) TO '{temporary}' (FORMAT parquet, COMPRESSION zstd)"
            if table != "rejected_rows"
            else f"COPY (SELECT * FROM {table} WHERE {year_expr} = {int(year)} "
            "ORDER BY rejected_at, "
            f"source, source_file, source_row) TO '{temporary}' (FORMAT parquet, COMPRESSION zstd)"
        )
        os.replace(temporary, target)
        written.append(str(target))
    return written


def publish_years(settings: Settings, years: dict[str, set[int]]) -> list[str]:
    """Publish every (table, years) a batch touched, reading the committed warehouse."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return [path for table, ys in years.items() for path in publish(conn, settings, table, ys)]
    finally:
        conn.close()
