"""Load: one transaction per batch, a failed batch leaves nothing behind, locked warehouses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relations_etl.config import load_sources
from relations_etl.errors import BatchRejectedError, WarehouseError
from relations_etl.extract import extract
from relations_etl.load import load_batch
from relations_etl.pipeline import new_batch, prepare, run_source
from relations_etl.query import run_query
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from tests.conftest import REPO


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
