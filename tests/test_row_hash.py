"""The row hash: stable across processes, and a warehouse hashed otherwise keeps its facts."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from relations_etl.config import Kind, load_sources
from relations_etl.db import connect
from relations_etl.facts import ROW_HASH_PROBE, TABLE, content_columns, row_hash_sql
from relations_etl.pipeline import run_source
from relations_etl.settings import Settings
from tests.conftest import REPO

FACTS = sorted(TABLE.values())


def _old_md5_sql(kind: Kind) -> str:
    """The row hash of the versions before DuckDB's hash: md5 of the values as text."""
    parts = ", ".join(f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in content_columns(kind))
    return f"md5(concat_ws(chr(31), {parts}))"


def _facts(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in FACTS}
    finally:
        conn.close()


def _load_examples(settings: Settings) -> list[int]:
    """Load (again) every example list; returns the facts each wrote."""
    return [
        run_source(s, settings, force=True).facts_written
        for s in load_sources(REPO / "examples" / "sources.yaml")
    ]


def test_the_row_hash_is_the_same_in_another_process() -> None:
    query = (
        "SELECT " + row_hash_sql(Kind.VISITS) + ", " + ROW_HASH_PROBE + " FROM (SELECT "
        "'KAZ' AS host_country, NULL AS visitor_country, NULL AS visitor_organization, "
        "'Emmanuel Macron' AS visitor_name, 'President' AS visitor_title, "
        "'head_of_state' AS visitor_role, NULL AS visit_type, DATE '2023-11-01' AS start_date, "
        "'day' AS start_precision, NULL AS end_date, NULL AS end_precision, 'Astana' AS city, "
        "NULL AS event, '' AS notes)"
    )
    here = duckdb.connect().execute(query).fetchall()
    program = f"import duckdb; print(duckdb.connect().execute({query!r}).fetchall())"
    there = subprocess.run(
        [sys.executable, "-c", program],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert there == str(here)
    # '' and NULL, and a value moved to the next column, are other facts
    empty = duckdb.connect().execute(query.replace("'' AS notes", "NULL AS notes")).fetchall()
    moved = (
        duckdb.connect()
        .execute(
            query.replace("'Astana' AS city, NULL AS event", "NULL AS city, 'Astana' AS event")
        )
        .fetchall()
    )
    assert len({here[0][0], empty[0][0], moved[0][0]}) == 3


@pytest.mark.parametrize("made_by", ["md5 text", "another DuckDB"])
def test_a_warehouse_hashed_otherwise_is_hashed_again_and_its_facts_kept(
    settings: Settings, made_by: str
) -> None:
    assert all(_load_examples(settings))
    loaded = _facts(settings)
    # the warehouse as an earlier version left it
    old = duckdb.connect(str(settings.db_path))
    try:
        for kind, table in TABLE.items():
            if made_by == "md5 text":
                old.execute(
                    f"ALTER TABLE {table} ALTER row_hash SET DATA TYPE VARCHAR "
                    f"USING {_old_md5_sql(kind)}"
                )
            else:  # hashes no DuckDB of today gives
                old.execute(f"UPDATE {table} SET row_hash = row_hash // 2")
        if made_by == "md5 text":  # before the probe was recorded
            old.execute("CREATE OR REPLACE TABLE schema_applied AS SELECT 'old' AS digest")
        else:
            old.execute("UPDATE schema_applied SET row_hash_probe = row_hash_probe // 2")
        hashed = old.execute("SELECT row_hash FROM visits LIMIT 1").fetchall()[0][0]
        assert isinstance(hashed, str if made_by == "md5 text" else int)
    finally:
        old.close()

    connect(settings).close()  # the first writer to open it hashes again
    assert _facts(settings) == loaded  # every column of every fact as a fresh load made it
    # so loading the same lists again writes nothing: no fact looks changed
    assert _load_examples(settings) == [0, 0, 0, 0]
    assert _facts(settings) == loaded
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        types = conn.execute(
            "SELECT DISTINCT data_type FROM duckdb_columns() WHERE column_name = 'row_hash'"
        ).fetchall()
        probe = conn.execute(f"SELECT row_hash_probe = {ROW_HASH_PROBE} FROM schema_applied")
        assert (types, probe.fetchall()) == ([("UBIGINT",)], [(True,)])
    finally:
        conn.close()


def test_a_changed_fact_is_still_found_after_the_warehouse_is_hashed_again(
    settings: Settings,
) -> None:
    assert all(_load_examples(settings))
    old = duckdb.connect(str(settings.db_path))
    try:
        old.execute("UPDATE schema_applied SET row_hash_probe = row_hash_probe // 2")
        # a fact that differs from its list in one column: its next load must replace it
        old.execute(
            "UPDATE visits SET city = 'Nowhere' WHERE visit_id = (SELECT min(visit_id) FROM visits)"
        )
    finally:
        old.close()
    written = _load_examples(settings)
    assert written == [1, 0, 0, 0]
    assert "Nowhere" not in {row[12] for row in _facts(settings)["visits"]}
