"""Publish: the warehouse tables as hive-partitioned Parquet, each file replaced atomically."""

from __future__ import annotations

import os

import duckdb

from relations_etl.config import Kind
from relations_etl.facts import TABLE, year_sql
from relations_etl.settings import Settings

# what each published table holds, the year it partitions on (SQL), and its stable order
_PUBLISHED = {
    **{TABLE[k]: ("* EXCLUDE (row_hash)", year_sql(k), "ALL") for k in Kind},
    "rejected_rows": ("*", "year(rejected_at)", "rejected_at, source, source_file, source_row"),
}


def publish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, table: str, years: set[int]
) -> list[str]:
    """Rewrite parquet/<table>/year=YYYY/data.parquet per year; an emptied year is removed."""
    written = []
    columns, year_of, order = _PUBLISHED[table]
    for year in sorted(years):
        folder = settings.parquet_dir / table / f"year={year}"
        target = folder / "data.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".data.parquet.{os.getpid()}.tmp"
        copied = conn.execute(
            f"COPY (SELECT {columns} FROM {table} WHERE {year_of} = {int(year)} "
            f"ORDER BY {order}) TO '{temporary}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        if copied and copied[0]:
            os.replace(temporary, target)
            written.append(str(target))
        else:
            temporary.unlink()
            target.unlink(missing_ok=True)
    return written


def publish_years(settings: Settings, years: dict[str, set[int]]) -> list[str]:
    """Publish every (table, years) a batch touched, reading the committed warehouse."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return [path for table, ys in years.items() for path in publish(conn, settings, table, ys)]
    finally:
        conn.close()
