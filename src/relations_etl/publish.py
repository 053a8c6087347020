"""Publish: the warehouse tables as hive-partitioned Parquet, each file replaced atomically."""

from __future__ import annotations

import os

import duckdb

from relations_etl.config import Kind
from relations_etl.contract import (
    REJECTED_ROWS,
    kv_metadata_option,
    published_columns,
    sql_literal,
)
from relations_etl.facts import TABLE, year_sql
from relations_etl.load import connect
from relations_etl.settings import Settings

# what each published table holds, the year it partitions on (SQL), and its stable order
_PUBLISHED = {
    **{TABLE[k]: (year_sql(k), "ALL") for k in Kind},
    REJECTED_ROWS: ("year(rejected_at)", "rejected_at, source, source_file, source_row"),
}
TEMPORARY_SUFFIX = ".tmp"


def publish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, table: str, years: set[int]
) -> list[str]:
    """Rewrite parquet/<table>/year=YYYY/data.parquet per year; an emptied year is removed."""
    written = []
    year_of, order = _PUBLISHED[table]
    columns = ", ".join(f'"{c}"' for c in published_columns(table))
    for year in sorted(years):
        folder = settings.parquet_dir / table / f"year={int(year)}"
        target = folder / "data.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        # a reader globbing *.parquet never sees this name, and the rename below is atomic
        temporary = folder / f".data.parquet.{os.getpid()}{TEMPORARY_SUFFIX}"
        copied = conn.execute(
            f"COPY (SELECT {columns} FROM {table} WHERE {year_of} = ? ORDER BY {order}) "
            f"TO {sql_literal(str(temporary))} "
            f"(FORMAT parquet, COMPRESSION zstd, {kv_metadata_option(table)})",
            [int(year)],
        ).fetchone()
        if copied and copied[0]:
            os.replace(temporary, target)
            written.append(str(target))
        else:
            temporary.unlink()
            target.unlink(missing_ok=True)
    return written


def _remove_leftovers(settings: Settings) -> None:
    """Temporary files of a publish that was killed before its rename."""
    if settings.parquet_dir.is_dir():
        for path in settings.parquet_dir.glob(f"*/year=*/.data.parquet.*{TEMPORARY_SUFFIX}"):
            path.unlink(missing_ok=True)


def publish_pending(settings: Settings) -> list[str]:
    """Publish every (table, year) committed since the last publish; call with the run lock."""
    conn = connect(settings)
    try:
        pending = conn.execute("SELECT table_name, year FROM publish_queue").fetchall()
        if not pending:
            return []
        _remove_leftovers(settings)
        by_table: dict[str, set[int]] = {}
        for table, year in pending:
            if table in _PUBLISHED:
                by_table.setdefault(table, set()).add(int(year))
        written = [p for table, ys in by_table.items() for p in publish(conn, settings, table, ys)]
        conn.executemany(
            "DELETE FROM publish_queue WHERE table_name = ? AND year = ?",
            [list(r) for r in pending],
        )
        return written
    finally:
        conn.close()
