"""Load: one transaction per batch, a failed batch leaves nothing behind, locked warehouses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from relations_etl_flows.ingest import replay_quarantine

from relations_etl.config import Kind, load_sources, source_for
from relations_etl.errors import BatchRejectedError, WarehouseError
from relations_etl.extract import extract
from relations_etl.load import load_batch
from relations_etl.pipeline import new_batch, prepare, run_source
from relations_etl.publish import publish_pending
from relations_etl.query import run_query
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from tests.conftest import REPO, Cli


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
