"""Publish: the years written side by side give the bytes of one at a time, and years sorted in
several groups those of one group; a failed year."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from relations_etl import publish as publishing
from relations_etl.db import connect
from relations_etl.pipeline import run_source
from relations_etl.publish import publish, publish_pending, year_groups
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import trips_source
from tests.state import parquet_digests

YEARS = range(1985, 2025)
VISITORS = (
    ("France", "Emmanuel Macron", "President"),
    ("Italy", "Sergio Mattarella", "President"),
    ("Japan", "Fumio Kishida", "Prime Minister"),
)


def _many_years(tmp_path: Path) -> Path:
    """A visits list of 40 years, several visits a year."""
    lines = ["record,host,visitor_country,visitor,title,date"]
    for year in YEARS:
        for n, (country, name, title) in enumerate(VISITORS):
            for day in range(1 + year % 4):
                lines.append(
                    f"r{year}-{n}-{day},Kazakhstan,{country},{name},{title},"
                    f"{year}-{n + 1:02d}-{day + 10}"
                )
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _files(settings: Settings) -> dict[str, str]:
    """SHA-256 of every published visits file, by its path under the Parquet folder."""
    return {
        str(p.relative_to(settings.parquet_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((settings.parquet_dir / "visits").rglob("*"))
        if p.is_file()
    }


def _republish(settings: Settings, threads: int) -> dict[str, str]:
    """Every year of visits written again with DuckDB on `threads` threads."""
    for path in (settings.parquet_dir / "visits").rglob("data.parquet"):
        path.unlink()
    conn = connect(settings)
    try:
        conn.execute(f"SET threads = {threads}")
        written = publish(conn, settings, "visits", set(YEARS))
        assert len(written) == len(YEARS)
    finally:
        conn.close()
    return _files(settings)


def test_years_written_side_by_side_are_the_files_written_one_at_a_time(
    settings: Settings, tmp_path: Path
) -> None:
    run_source(trips_source(_many_years(tmp_path)), settings)
    assert len(_files(settings)) == len(YEARS)
    one_at_a_time = _republish(settings, 1)
    side_by_side = _republish(settings, 4)
    assert side_by_side == one_at_a_time
    # and each file holds its year's rows, in the published order, recorded as written
    for year in (YEARS[0], YEARS[-1]):
        path = settings.parquet_dir / "visits" / f"year={year}" / "data.parquet"
        published = duckdb.sql(
            f"SELECT visit_id FROM read_parquet('{path}', hive_partitioning = false)"
        ).fetchall()
        expected = run_query(
            settings,
            f"SELECT visit_id FROM visits WHERE year(start_date) = {year} ORDER BY ALL",
        ).rows()
        assert published == expected and len(published) == 3 * (1 + year % 4)
    records = run_query(
        settings,
        "SELECT year, rows, bytes, sha256 FROM published_files WHERE table_name = 'visits'",
    ).rows()
    assert {(f"visits/year={y}/data.parquet", sha) for y, _, _, sha in records} == set(
        side_by_side.items()
    )
    # no database of the publish is left attached
    conn = connect(settings)
    try:
        names = {
            n for (n,) in conn.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        }
        assert "_publishing" not in names
    finally:
        conn.close()


def test_a_year_that_cannot_be_put_in_place_fails_the_publish_and_the_next_one_writes_it(
    settings: Settings, tmp_path: Path
) -> None:
    clean = Settings(home=tmp_path / "clean")
    source = trips_source(_many_years(tmp_path))
    run_source(source, clean)
    # a folder where one year's file belongs: putting it there fails while later years are
    # being written
    blocked = settings.parquet_dir / "visits" / "year=2005" / "data.parquet"
    (blocked / "inside").mkdir(parents=True)
    result = run_source(source, settings)
    assert result.publish_pending is not None and "could not be" in result.publish_pending
    queued = run_query(
        settings, "SELECT count(*) FROM publish_queue WHERE table_name = 'visits'"
    ).item()
    assert queued == len(YEARS)  # nothing dequeued: every year is written by the next publish
    assert list(settings.parquet_dir.rglob(".*")) == []  # written but not put: removed
    put = {p.split("/")[1] for p in _files(settings)}
    assert put == {f"year={y}" for y in YEARS if y < 2005}  # in year order, up to the failure
    (blocked / "inside").rmdir()
    blocked.rmdir()
    publish_pending(settings)
    # the rows of a clean run (its lineage, batch and time, differ)
    assert parquet_digests(settings, across_runs=True) == parquet_digests(clean, across_runs=True)
    assert run_query(settings, "SELECT count(*) FROM publish_queue").item() == 0


def test_years_are_grouped_in_order_up_to_the_rows_of_a_group() -> None:
    counts = {2001: 4, 1999: 3, 2000: 0, 2002: 9, 2003: 2, 2004: 2, 2005: 1}
    groups = year_groups(counts, limit=5)
    assert groups == [[1999, 2000], [2001], [2002], [2003, 2004, 2005]]
    assert year_groups({}, limit=5) == []
    assert year_groups(counts, limit=100) == [sorted(counts)]


def test_years_sorted_in_several_groups_are_the_files_of_one_group(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_source(trips_source(_many_years(tmp_path)), settings)
    one_group = _republish(settings, 2)
    monkeypatch.setattr(publishing, "GROUP_ROWS", 20)  # two years a group
    counts = run_query(
        settings, "SELECT year(start_date), count(*) FROM visits GROUP BY ALL"
    ).rows()
    assert len(year_groups(dict(counts), 20)) == 20
    several = _republish(settings, 2)
    assert several == one_group
    records = run_query(
        settings, "SELECT year, sha256 FROM published_files WHERE table_name = 'visits'"
    ).rows()
    assert {(f"visits/year={y}/data.parquet", sha) for y, sha in records} == set(several.items())
