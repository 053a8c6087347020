"""Load: one transaction per batch, a failed batch leaves nothing behind, locked warehouses."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from relations_etl_flows.ingest import replay_quarantine

from relations_etl import db, pipeline
from relations_etl.config import Kind, load_sources, source_for
from relations_etl.db import apply_sql
from relations_etl.errors import BatchRejectedError, WarehouseError
from relations_etl.extract import extract
from relations_etl.load import load_batch
from relations_etl.pipeline import new_batch, prepare, replay, run_source, run_sources
from relations_etl.publish import publish_pending
from relations_etl.query import run_query
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from tests.conftest import REPO, Cli, shared, trips_source
from tests.state import sample_lists, table_digests


def test_a_batch_that_fails_to_load_leaves_no_trace(settings: Settings) -> None:
    visits, memberships, *_ = load_sources(REPO / "examples" / "sources.yaml")
    run_source(memberships, settings)
    before = {
        t: run_query(settings, f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("memberships", "rejected_rows", "load_batches")
    }
    ref = Reference.load(settings)
    prepared = prepare(extract(visits), visits, ref, settings)
    with pytest.raises(WarehouseError, match="conservation broken"):
        load_batch(
            settings,
            new_batch(visits),
            prepared.facts,
            prepared.rejected,
            rows_read=prepared.rows_read + 1,
            repeated=0,
            content_hash=None,
            ref=ref,
        )
    assert run_query(settings, "SELECT count(*) FROM visits").item() == 0
    for table, frame in before.items():
        assert run_query(settings, f"SELECT * FROM {table} ORDER BY ALL").equals(frame), table


def test_a_locked_warehouse_is_a_clear_error(settings: Settings) -> None:
    _, memberships, *_ = load_sources(REPO / "examples" / "sources.yaml")
    run_source(memberships, settings)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(60)",
            str(settings.db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        impatient = Settings(home=settings.home, lock_timeout=0.5)
        with pytest.raises(WarehouseError, match="another process has it open"):
            run_query(impatient, "SELECT 1")
    finally:
        holder.kill()
        holder.wait()


_READER = (
    "import duckdb, sys\n"
    "try:\n"
    "    duckdb.connect(sys.argv[1], read_only=True).execute('SELECT 1')\n"
    "except duckdb.IOException:\n"
    "    sys.exit(1)\n"
)


def test_a_small_list_runs_on_one_open_and_a_large_one_lets_readers_in(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small local list is started, read, transformed, loaded and published on one open of
    the warehouse (each open costs tens of ms); past HELD_LIST_BYTES the warehouse is let go
    while the list is transformed, so that another process can read it meanwhile."""
    _, memberships, relations, *_ = load_sources(REPO / "examples" / "sources.yaml")
    opens: list[bool] = []  # the writer opens (a file not yet verified is checked read-only)
    real_open = db._open
    monkeypatch.setattr(
        db,
        "_open",
        lambda path, read_only, *a: opens.append(not read_only) or real_open(path, read_only, *a),
    )
    readers: list[int] = []  # whether another process could open the file, while transforming

    def transform(*args: Any) -> Any:
        reader = [sys.executable, "-c", _READER, str(settings.db_path)]
        readers.append(subprocess.run(reader, timeout=120).returncode)
        return prepare(*args)

    steps = dataclasses.replace(pipeline.DIRECT, transform=transform)
    run_source(memberships, settings, steps=steps)
    assert (sum(opens), readers) == (1, [1])  # held throughout: the reader was refused
    opens.clear()
    monkeypatch.setattr(pipeline, "HELD_LIST_BYTES", 0)
    result = run_source(relations, settings, steps=steps)
    assert (sum(opens), readers) == (2, [1, 0])  # let go while transforming, then again
    assert result.rows_loaded > 0


def test_a_run_of_small_lists_opens_the_warehouse_once_and_a_failed_load_lets_it_go(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_sources` of small local lists holds the warehouse for the whole run: one writer
    open. A load that fails lets the connection go: its failure is audited on a fresh one, and
    the lists after it load on their own."""
    config = sample_lists(tmp_path / "lists")
    sources = load_sources(config)
    opens: list[bool] = []
    real_open = db._open
    monkeypatch.setattr(
        db,
        "_open",
        lambda path, read_only, *a: opens.append(not read_only) or real_open(path, read_only, *a),
    )
    summary = run_sources(settings, sources, lambda s: run_source(s, settings))
    assert (sum(opens), summary.failures) == (1, [])
    # every row of the relations list (the third of four) rejected: its batch fails in the load
    relations = config.parent / "data" / "kz_relations.csv"
    relations.write_text(
        "country,counterpart,event,date,notes\nKazakhstan,China,established,1992-13-45,\n",
        encoding="utf-8",
    )
    summary = run_sources(settings, load_sources(config), lambda s: run_source(s, settings))
    assert [f.split(":")[0] for f in summary.failures] == ["kz-relations"]
    assert [r.source for r in summary.results] == [
        "kz-visits-2023",
        "kz-memberships",
        "kz-reported-totals",
    ]
    audited = run_query(
        settings,
        # the second run's batches (batch ids of one second sort by their random part)
        "SELECT source, status FROM load_batches "
        "QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at) = 2 ORDER BY source",
    ).rows()
    assert [tuple(r) for r in audited] == [
        ("kz-memberships", "skipped"),
        ("kz-relations", "failed"),
        ("kz-reported-totals", "skipped"),
        ("kz-visits-2023", "skipped"),
    ]
    quarantined = run_query(
        settings,
        "SELECT count(*) FROM rejected_rows WHERE source = 'kz-relations' "
        "AND resolved_batch_id IS NULL AND raw LIKE '%1992-13-45%'",
    ).item()
    assert quarantined == 1  # the failed batch's rejected row is committed


def test_small_lists_share_one_staging_duckdb_and_a_large_one_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources up to SHARED_STAGING_ROWS rows are split on cursors of one staging DuckDB kept
    by the process, a larger one on an instance of its own: the warehouses they leave are the
    same."""
    sources = load_sources(REPO / "examples" / "sources.yaml")
    made: list[Path] = []
    real = pipeline.staging_connection
    monkeypatch.setattr(
        pipeline, "staging_connection", lambda s, folder: made.append(folder) or real(s, folder)
    )
    shared, own = Settings(home=tmp_path / "shared"), Settings(home=tmp_path / "own")
    for source in sources:
        run_source(source, shared)
    assert len(made) <= 1  # none when an earlier test of this process made it
    made.clear()
    monkeypatch.setattr(pipeline, "SHARED_STAGING_ROWS", 0)
    for source in sources:
        run_source(source, own)
    assert len(made) == len(sources)
    assert table_digests(own, across_runs=True) == table_digests(shared, across_runs=True)


@pytest.mark.shared_data
def test_chunks_staged_side_by_side_load_what_one_at_a_time_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks transformed on STAGING_WORKERS threads leave the warehouse one thread leaves:
    rows in the order read, the first of repeated records kept, every rejected row with its
    reasons (the sample lists and the HSG list, in chunks of 200 raw rows; some HSG rows
    name two people, so a chunk stages more rows than it read)."""
    hsg = source_for(Kind.VISITS, str(shared("hsg-visits")), "hsg-visits-xml", None)
    sources = [*load_sources(REPO / "examples" / "sources.yaml"), hsg]
    digests: dict[int, dict[str, str]] = {}
    seen: list[int] = []  # the workers setting at each chunk
    real = pipeline._stage_chunk
    monkeypatch.setattr(
        pipeline,
        "_stage_chunk",
        lambda *a, **k: seen.append(pipeline.STAGING_WORKERS) or real(*a, **k),
    )
    for workers in (1, 2):
        monkeypatch.setattr(pipeline, "STAGING_WORKERS", workers)
        settings = Settings(home=tmp_path / str(workers), batch_rows=200)
        for source in sources:
            run_source(source, settings)
        digests[workers] = table_digests(settings, across_runs=True)
    chunks = {workers: seen.count(workers) for workers in (1, 2)}
    assert chunks[2] == chunks[1] >= 3264 // 200 + len(sources)
    assert digests[2] == digests[1]
    assert (
        run_query(
            Settings(home=tmp_path / "2"), "SELECT count(*) FROM visits WHERE source = 'hsg-visits'"
        ).item()
        == 3271
    )


def test_a_warehouse_written_in_a_failed_hold_is_verified_again(settings: Settings) -> None:
    """A run's held connection marks the file it wrote as verified only when the hold ends
    well: after a failure (a full disk, say) the next open reads the file whole again."""
    _, memberships, *_ = load_sources(REPO / "examples" / "sources.yaml")
    run_source(memberships, settings)
    with db.held(settings, verify_file=True):  # verified as it is opened, then written
        db.connect(settings).execute("CREATE TABLE _written AS SELECT 1 AS x")
    assert db._was_verified(settings.db_path)
    with pytest.raises(RuntimeError), db.held(settings, verify_file=True):
        conn = db.connect(settings)
        conn.execute("CREATE TABLE _written_then_failed AS SELECT 1 AS x")
        conn.execute("CHECKPOINT")
        raise RuntimeError("the run failed after writing")
    assert not db._was_verified(settings.db_path)


def test_a_warehouse_a_load_created_is_not_read_whole_again_by_the_next_process(
    settings: Settings,
) -> None:
    """The first load creates the file and is its only writer: it leaves the file's stamp, so
    the next process (an analyst's query, the next run) trusts it without reading every block,
    as it would after any later load. A file changed since is verified again."""
    _, memberships, *_ = load_sources(REPO / "examples" / "sources.yaml")
    run_source(memberships, settings)
    sidecar = settings.db_path.with_name(settings.db_path.name + db.VERIFIED_SUFFIX)
    assert sidecar.is_file()
    db._verified.clear()  # what another process knows: only the file next to the warehouse
    assert db._was_verified(settings.db_path)
    with duckdb.connect(str(settings.db_path)) as outside:  # written by someone else
        outside.execute("CREATE TABLE _outside AS SELECT 1 AS x")
    assert not db._was_verified(settings.db_path)


def test_quarantine_keeps_one_open_entry_per_row(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "relations.csv"
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  - {name: r, kind: relations, uri: relations.csv, mapping: {columns: "
        "{country: country, counterpart: counterpart, event: event, date: event_date}}}\n",
        encoding="utf-8",
    )
    for bad_date in ("1992-13-01", "1992-13-01", "1992-14-01"):
        listing.write_text(
            f"country,counterpart,event,date\nKazakhstan,China,established,{bad_date}\n",
            encoding="utf-8",
        )
        (source,) = load_sources(config)
        # every row rejected fails the batch, its row still quarantined; a failed batch is
        # never skipped, so each rerun of the same rows runs
        with pytest.raises(BatchRejectedError, match="its one row was rejected"):
            run_source(source, settings)
    entries = run_query(
        settings,
        "SELECT errors[1].value AS value, resolution FROM rejected_rows ORDER BY rejected_at",
    ).rows()
    assert entries == [("1992-13-01", "superseded"), ("1992-14-01", None)]
    listing.write_text(
        "country,counterpart,event,date\nKazakhstan,China,established,1992-01\n", encoding="utf-8"
    )
    assert run_source(source, settings).rows_loaded == 1
    assert run_query(
        settings, "SELECT resolution FROM rejected_rows ORDER BY rejected_at"
    ).to_series().to_list() == ["superseded", "loaded"]


# --- a batch whose rows are (nearly) all rejected fails -----------------------------------------

HEADER = "country,counterpart,event,event_date,notes\n"


def _audit(settings: Settings, batch_id: str) -> tuple[Any, ...]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return (
            conn.execute(
                "SELECT status, rows_read, rows_loaded, rows_rejected, error FROM load_batches "
                "WHERE batch_id = ?",
                [batch_id],
            ).fetchone()
            or ()
        )
    finally:
        conn.close()


def _open_rows(settings: Settings) -> list[tuple[Any, ...]]:
    return run_query(
        settings,
        "SELECT source_row, batch_id FROM rejected_rows WHERE resolved_batch_id IS NULL "
        "ORDER BY source_row",
    ).rows()


def test_a_batch_with_every_row_rejected_fails_and_keeps_what_was_loaded(
    settings: Settings, tmp_path: Path
) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        HEADER + "Kazakhstan,France,established,1992-01-25,\n"
        "Kazakhstan,Japan,established,1992-01-26,\n",
        encoding="utf-8",
    )
    source = source_for(Kind.RELATIONS, str(listing), None, None, name="r")
    assert run_source(source, settings).rows_loaded == 2  # headers that are field names map
    before = run_query(settings, "SELECT * FROM relations ORDER BY ALL")
    listing.write_text(
        HEADER + "Kazakhstan,Atlantis,established,1992-01-25,\n"
        "Kazakhstan,Japan,established,1992-13-26,\n",
        encoding="utf-8",
    )
    with pytest.raises(BatchRejectedError) as info:
        run_source(source, settings)
    error = info.value
    assert (error.exit_code, error.source, error.rows_read, error.rows_rejected) == (65, "r", 2, 2)
    message = str(error)
    assert message.startswith("all 2 rows were rejected; reasons, most frequent first: (1) ")
    assert "counterpart 'Atlantis', 1 row: country 'Atlantis' is unknown" in message
    assert "(2) event_date '1992-13-26', 1 row: '1992-13-26' is not a calendar date" in message
    assert "relations-etl quarantine --source r" in message
    assert run_query(settings, "SELECT * FROM relations ORDER BY ALL").equals(before)
    assert _open_rows(settings) == [(1, error.batch_id), (2, error.batch_id)]
    assert _audit(settings, str(error.batch_id)) == ("failed", 2, 0, 2, message)
    # the quarantine of a failed batch is published by the run that failed it
    assert list((settings.parquet_dir / "rejected_rows").rglob("*.parquet"))
    assert publish_pending(settings) == []
    # a failed batch is never "unchanged": the same list fails again, without copies in quarantine
    with pytest.raises(BatchRejectedError):
        run_source(source, settings)
    assert _open_rows(settings) == [(1, error.batch_id), (2, error.batch_id)]


def test_max_rejected_share_fails_a_batch_earlier(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "relations.csv"
    source = source_for(Kind.RELATIONS, str(listing), None, None, name="r").model_copy(
        update={"max_rejected_share": 0.5}
    )
    good, bad = "Kazakhstan,France,established,1992-01-25,\n", "Kazakhstan,Atlantis,x,1992,\n"
    listing.write_text(HEADER + good + bad + bad.replace("1992", "1993"), encoding="utf-8")
    with pytest.raises(BatchRejectedError) as info:
        run_source(source, settings)
    assert "2 of 3 rows were rejected (67%, more than max_rejected_share 0.5)" in str(info.value)
    assert run_query(settings, "SELECT count(*) FROM relations").item() == 0, "not even the good"
    assert _audit(settings, str(info.value.batch_id))[:4] == ("failed", 3, 0, 2)
    listing.write_text(HEADER + good + good.replace("France", "Japan") + bad, encoding="utf-8")
    result = run_source(source, settings)
    assert (result.rows_loaded, result.rows_rejected) == (2, 1)  # a third is within the share


def test_a_list_with_no_rows_is_a_clean_empty_batch(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(HEADER, encoding="utf-8")
    source = source_for(Kind.RELATIONS, str(listing), None, None).model_copy(
        update={"max_rejected_share": 0.0}
    )
    result = run_source(source, settings)
    assert (result.rows_read, result.rows_rejected) == (0, 0)
    assert _audit(settings, result.batch_id)[:2] == ("succeeded", 0)


@pytest.mark.usefixtures("prefect_server")
def test_a_replay_is_never_failed_by_its_rejected_share(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        HEADER + "Kazakhstan,Atlantis,established,1992-01-25,\n"
        "Kazakhstan,Japan,established,1992-13-26,\n",
        encoding="utf-8",
    )
    source = source_for(Kind.RELATIONS, str(listing), None, None, name="r").model_copy(
        update={"max_rejected_share": 0.0}
    )
    with pytest.raises(BatchRejectedError):
        run_source(source, settings)
    settings.user_reference_dir.mkdir(parents=True)
    (settings.user_reference_dir / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,note\nAtlantis,GRC,,,steward's fix\n", encoding="utf-8"
    )
    # half of the replayed rows still fail, far over the share of 0: the fixed one loads anyway
    (replayed,) = replay_quarantine(home=str(settings.home))
    assert (replayed.rows_read, replayed.rows_loaded, replayed.rows_rejected) == (2, 1, 1)
    assert run_query(settings, "SELECT counterpart FROM relations").rows() == [("GRC",)]
    assert [row for row, _ in _open_rows(settings)] == [2]
    (again,) = replay_quarantine(home=str(settings.home))  # every row failing again: no error
    assert (again.rows_loaded, again.rows_rejected) == (0, 1)
    assert [row for row, _ in _open_rows(settings)] == [2]


def test_cli_loads_a_list_by_its_headers_and_exits_65_when_every_row_is_rejected(
    tmp_path: Path, cli: Cli
) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(HEADER + "Kazakhstan,France,established,1992-01-25,\n", encoding="utf-8")
    done = cli("ingest", "relations", str(listing))
    assert done.code == 0 and "read 1, loaded 1" in done.out
    listing.write_text(HEADER + "Kazakhstan,Atlantis,established,1992-01-25,\n", encoding="utf-8")
    done = cli("ingest", "relations", str(listing))
    assert done.code == 65
    err = done.err.strip()
    assert len(err.splitlines()) == 1
    assert "its one row was rejected; reasons, most frequent first: (1) counterpart" in err
    assert "'Atlantis', 1 row: country 'Atlantis' is unknown" in err
    assert "relations-etl quarantine --source list" in err


# --- the fact tables have no key: one row per id all the same -----------------------------------

TRIPS = "record,host,visitor_country,visitor,title,date\n"
TRIP = {
    "a": "a,Kazakhstan,France,Emmanuel Macron,President,2023-11-01\n",
    "b": "b,Kazakhstan,Germany,Frank-Walter Steinmeier,President,2023-06-20\n",
    "c": "c,Kazakhstan,Japan,Fumio Kishida,Prime Minister,2022-08-28\n",
    "e": "e,Kazakhstan,Frnce,Emmanuel Macron,President,2019-04-01\n",  # a typo: quarantined
}
FACT_TABLES = ("visits", "memberships", "relations", "reported_totals")


def _facts_by_id(settings: Settings) -> dict[str, tuple[str, str]]:
    """visit_id -> (title, batch_id), checked to hold every id once."""
    rows = run_query(
        settings, "SELECT visit_id, visitor_title, batch_id FROM visits ORDER BY visit_id"
    ).rows()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), f"an id twice: {ids}"
    return {row[0]: (row[1], row[2]) for row in rows}


def test_no_reload_replay_or_changed_row_leaves_an_id_twice(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trips.csv"
    path.write_text(TRIPS + TRIP["a"] + TRIP["b"] + TRIP["e"], encoding="utf-8")
    source = trips_source(path)
    first = run_source(source, settings)
    assert (first.rows_loaded, first.rows_rejected) == (2, 1)
    # b changed, c new, a the same: b's row is replaced, a's kept with the batch that loaded it
    path.write_text(
        TRIPS + TRIP["a"] + TRIP["b"].replace("President", "Chancellor") + TRIP["c"] + TRIP["e"],
        encoding="utf-8",
    )
    second = run_source(source, settings)
    assert (second.rows_loaded, second.rows_deduplicated, second.facts_written) == (2, 1, 2)
    assert _facts_by_id(settings) == {
        "trips:a": ("President", first.batch_id),
        "trips:b": ("Chancellor", second.batch_id),
        "trips:c": ("Prime Minister", second.batch_id),
    }
    # the typo fixed by a user alias: the replay loads e beside the others
    settings.user_reference_dir.mkdir(parents=True)
    (settings.user_reference_dir / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,note\nFrnce,FRA,,,a typo seen in the list\n",
        encoding="utf-8",
    )
    (replayed,) = replay(settings)
    assert (replayed.rows_loaded, replayed.rows_rejected) == (1, 0)
    # the whole list again, e now passing in the list itself: every row is the same
    again = run_source(source, settings, force=True)
    assert (again.rows_loaded, again.rows_deduplicated, again.facts_written) == (0, 4, 0)
    assert replay(settings) == []  # nothing left in quarantine
    facts = _facts_by_id(settings)
    assert sorted(facts) == ["trips:a", "trips:b", "trips:c", "trips:e"]
    assert facts["trips:e"] == ("President", replayed.batch_id)
    published = pl.concat(
        [pl.read_parquet(f) for f in (settings.parquet_dir / "visits").rglob("*.parquet")]
    )
    assert sorted(published.get_column("visit_id")) == sorted(facts)


def test_a_batch_holding_one_id_twice_is_refused_and_writes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trips.csv"
    path.write_text(TRIPS + TRIP["a"] + TRIP["b"], encoding="utf-8")
    source = trips_source(path)
    ref = Reference.load(settings)
    prepared = prepare(extract(source), source, ref, settings)
    twice = pl.concat([prepared.facts, prepared.facts.head(1)])
    with pytest.raises(WarehouseError, match="holds 1 fact id more than once") as info:
        load_batch(
            settings,
            new_batch(source),
            twice,
            prepared.rejected,
            rows_read=prepared.rows_read,  # conservation holds: only the check refuses it
            repeated=0,
            content_hash=None,
            ref=ref,
        )
    assert info.value.exit_code == 74 and info.value.source == "trips"
    assert run_query(settings, "SELECT count(*) FROM visits").item() == 0
    assert run_query(settings, "SELECT count(*) FROM load_batches").item() == 0


def _keyed_sql(folder: Path) -> Path:
    """The SQL files as versions before this one shipped them: each fact id a PRIMARY KEY."""
    folder.mkdir()
    for script in sorted(Settings().sql_dir.glob("*.sql")):
        text = script.read_text(encoding="utf-8")
        for ident in ("visit_id", "membership_id", "relation_id", "reported_id"):
            text, found = re.subn(rf"({ident} +VARCHAR) NOT NULL", r"\1 PRIMARY KEY", text)
            assert found == (script.name == "010_tables.sql"), (script.name, ident)
        (folder / script.name).write_text(text, encoding="utf-8")
    return folder


def _primary_keys(settings: Settings) -> set[str]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return {
            table
            for (table,) in conn.execute(
                "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        }
    finally:
        conn.close()


def test_a_warehouse_made_with_the_key_is_rebuilt_without_it_rows_intact(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trips.csv"
    path.write_text(TRIPS + TRIP["a"] + TRIP["b"] + TRIP["e"], encoding="utf-8")
    source = trips_source(path)
    # a warehouse as the previous version left it: its tables made by the keyed DDL, its rows
    # those of a load (made here by this version, then copied in)
    made = Settings(home=tmp_path / "made")
    first = run_source(source, made)
    settings.db_path.parent.mkdir(parents=True)
    old = duckdb.connect(str(settings.db_path))
    try:
        apply_sql(old, _keyed_sql(tmp_path / "sql"))
        old.execute(f"ATTACH '{made.db_path}' AS made (READ_ONLY)")
        for (table,) in old.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'made' "
            "AND table_name <> 'schema_applied'"
        ).fetchall():
            old.execute(f"INSERT INTO {table} BY NAME SELECT * FROM made.{table}")
        before = {
            table: old.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in FACT_TABLES
        }
    finally:
        old.close()
    assert set(FACT_TABLES) <= _primary_keys(settings)
    assert len(before["visits"]) == 2

    # the next load with this version: rebuilt first, then loaded into the rebuilt table
    path.write_text(TRIPS + TRIP["a"] + TRIP["b"] + TRIP["c"] + TRIP["e"], encoding="utf-8")
    second = run_source(source, settings)
    assert (second.rows_loaded, second.rows_deduplicated) == (1, 2)
    keys = _primary_keys(settings)
    assert not keys & set(FACT_TABLES)
    assert {"countries", "load_batches", "publish_queue", "published_files"} <= keys
    facts = _facts_by_id(settings)
    assert facts == {
        "trips:a": ("President", first.batch_id),
        "trips:b": ("President", first.batch_id),
        "trips:c": ("Prime Minister", second.batch_id),
    }
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        tables = {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert not {t for t in tables if t.endswith("_with_primary_key")}
        kept = conn.execute(
            "SELECT * FROM visits WHERE batch_id = ? ORDER BY ALL", [first.batch_id]
        ).fetchall()
        assert kept == before["visits"]  # every column of every old row, as it was
        for table in FACT_TABLES[1:]:
            assert conn.execute(f"SELECT * FROM {table}").fetchall() == before[table] == []
        not_null = conn.execute(
            "SELECT constraint_column_names[1] FROM duckdb_constraints() "
            "WHERE table_name = 'visits' AND constraint_type = 'NOT NULL'"
        ).fetchall()
        assert ("visit_id",) in not_null and ("host_country",) in not_null
    finally:
        conn.close()
    # the views bind to the rebuilt table; a second open changes nothing
    inbound = run_query(settings, "SELECT visit_id FROM visits_inbound ORDER BY visit_id")
    assert inbound.to_series().to_list() == ["trips:a", "trips:b", "trips:c"]
    assert run_query(settings, "SELECT count(*) FROM visits").item() == 3
    assert not _primary_keys(settings) & set(FACT_TABLES)


def _reference_tables(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(settings.db_path), read_only=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY code").fetchall()
            for table in ("countries", "organizations")
        }


def _as_rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return frame.sort("code").rows()


def test_the_reference_tables_hold_the_reference_of_the_last_load(tmp_path: Path) -> None:
    # a load writes countries and organizations only when the reference in use differs from the
    # one they hold: a user's new organization must still reach them, and a removed one leave
    sources = {s.name: s for s in load_sources(sample_lists(tmp_path))}
    settings = Settings(home=tmp_path / "warehouse")
    run_source(sources["kz-relations"], settings)
    shipped = Reference.load(settings)
    assert _reference_tables(settings) == {
        "countries": _as_rows(shipped.countries_frame()),
        "organizations": _as_rows(shipped.organizations_frame()),
    }

    settings.user_reference_dir.mkdir()
    user_file = settings.user_reference_dir / "organizations.csv"
    user_file.write_text(
        "code,name,parent,note\nACME,Association of Coastal Municipalities,,\n", encoding="utf-8"
    )
    run_source(sources["kz-visits-2023"], settings)
    extended = _reference_tables(settings)["organizations"]
    assert ("ACME", "Association of Coastal Municipalities", None, None, None) in extended
    assert len(extended) == len(_as_rows(shipped.organizations_frame())) + 1

    user_file.unlink()
    run_source(sources["kz-memberships"], settings)
    assert _reference_tables(settings)["organizations"] == _as_rows(shipped.organizations_frame())
    with duckdb.connect(str(settings.db_path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM reference_applied").fetchall() == [(1,)]
