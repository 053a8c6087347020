"""Snapshots and feeds: what a new version of a snapshot list no longer holds is retired, kept in
retired_facts with its batch, counted per batch, and gone from the Parquet; a feed keeps it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from relations_etl_flows.cli import main

from relations_etl.config import Kind, Source, load_sources
from relations_etl.errors import BatchRejectedError
from relations_etl.pipeline import replay, run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO, trips_source

HEADER = "record,host,visitor_country,visitor,title,date\n"
ROWS = {
    "a": "a,Kazakhstan,France,Emmanuel Macron,President,2023-11-01\n",
    "b": "b,Kazakhstan,Germany,Frank-Walter Steinmeier,President,2023-06-20\n",
    "c": "c,Kazakhstan,Japan,Fumio Kishida,Prime Minister,2022-08-28\n",
    "d": "d,Kazakhstan,Albania,Bajram Begaj,President,2023-03-02\n",
}


def _write(path: Path, *records: str, edits: dict[str, str] | None = None) -> None:
    rows = {**ROWS, **(edits or {})}
    path.write_text(HEADER + "".join(rows[r] for r in records), encoding="utf-8")


def _ids(settings: Settings, table: str = "visits") -> list[str]:
    return sorted(run_query(settings, f"SELECT source_record FROM {table}").to_series())


def _published(settings: Settings, table: str = "visits") -> list[str]:
    files = sorted((settings.parquet_dir / table).glob("year=*/data.parquet"))
    if not files:
        return []
    return sorted(pl.concat([pl.read_parquet(f) for f in files]).get_column("source_record"))


def test_a_snapshot_retires_what_its_new_version_dropped(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trips.csv"
    _write(path, "a", "b", "c", "d")
    source = trips_source(path)
    assert source.mode == "snapshot"  # the default: a list is the whole truth
    first = run_source(source, settings)
    assert (first.rows_loaded, first.rows_retired) == (4, 0)
    assert (settings.parquet_dir / "visits" / "year=2022" / "data.parquet").is_file()

    _write(path, "a", "b")  # c (the only visit of 2022) and d were removed from the list
    second = run_source(source, settings)
    assert (second.rows_read, second.rows_loaded, second.rows_deduplicated) == (2, 0, 2)
    assert second.rows_retired == 2
    assert _ids(settings) == ["a", "b"]
    # the Parquet follows: 2023 is written again without d, the emptied 2022 is removed
    assert _published(settings) == ["a", "b"]
    assert not (settings.parquet_dir / "visits" / "year=2022" / "data.parquet").exists()

    audit = run_query(
        settings, "SELECT batch_id, rows_retired FROM load_batches ORDER BY started_at"
    ).rows()
    assert [n for _, n in audit] == [0, 2]
    history = run_query(
        settings,
        "SELECT batch_id, source, kind, fact_id, source_record, year, fact FROM retired_facts "
        "ORDER BY fact_id",
    ).rows()
    assert [(h[0], h[1], h[2], h[3], h[4], h[5]) for h in history] == [
        (second.batch_id, "trips", "visits", "trips:c", "c", 2022),
        (second.batch_id, "trips", "visits", "trips:d", "d", 2023),
    ]
    kept = json.loads(history[0][6])  # the whole fact, with the batch that had loaded it
    assert kept["visitor_name"] == "Fumio Kishida" and kept["host_country"] == "KAZ"
    assert kept["batch_id"] == first.batch_id and kept["start_date"] == "2022-08-28"

    # the same version again retires nothing more (forced through the whole load)
    again = run_source(source, settings, force=True)
    assert again.rows_retired == 0 and _ids(settings) == ["a", "b"]
    # a record back in the list is a fact again; its history stays
    _write(path, "a", "b", "c")
    back = run_source(source, settings)
    assert (back.rows_loaded, back.rows_retired) == (1, 0)
    assert _ids(settings) == ["a", "b", "c"] and _published(settings) == ["a", "b", "c"]
    assert run_query(settings, "SELECT count(*) FROM retired_facts").item() == 2


def test_the_command_line_says_what_a_load_retired(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(settings.home))
    path, mapping = tmp_path / "trips.csv", tmp_path / "trips.yaml"
    mapping.write_text(
        "name: trips\nrecord_id: record\ncolumns: {host: host_country, visitor_country: "
        "visitor_country, visitor: visitor_name, title: visitor_title, date: start_date}\n",
        encoding="utf-8",
    )
    _write(path, "a", "b", "c")
    assert main(["ingest", "visits", str(path), "--mapping", str(mapping)]) == 0
    assert "retired" not in capsys.readouterr().out
    _write(path, "a")
    assert main(["ingest", "visits", str(path), "--mapping", str(mapping)]) == 0
    assert capsys.readouterr().out.strip() == (
        "trips: read 1, loaded 0, rejected 0, deduplicated 1, retired 2"
    )
    _write(path, "d")  # as a feed, a file of new rows retires nothing
    assert main(["ingest", "visits", str(path), "--mapping", str(mapping), "--mode", "append"]) == 0
    assert capsys.readouterr().out.strip() == (
        "trips: read 1, loaded 1, rejected 0, deduplicated 0"
    )
    assert _ids(settings) == ["a", "d"]


def test_a_feed_keeps_what_its_new_version_does_not_repeat(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trips.csv"
    _write(path, "a", "b", "c")
    feed = trips_source(path, mode="append")
    run_source(feed, settings)
    _write(path, "d")  # this month's rows only
    latest = run_source(feed, settings)
    assert (latest.rows_loaded, latest.rows_retired) == (1, 0)
    assert _ids(settings) == ["a", "b", "c", "d"] == _published(settings)
    assert run_query(settings, "SELECT count(*) FROM retired_facts").item() == 0


def test_a_record_rejected_this_time_is_not_retired(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "trips.csv"
    _write(path, "a", "b", "c")
    source = trips_source(path)
    run_source(source, settings)
    # b is still in the list, with a typo: it waits in quarantine, its fact stays
    _write(path, "a", "b", edits={"b": ROWS["b"].replace("Germany", "Germny")})
    edited = run_source(source, settings)
    assert (edited.rows_rejected, edited.rows_retired) == (1, 1)
    assert _ids(settings) == ["a", "b"]
    # a replay holds only the quarantined rows: it never retires the rest of the list
    (replayed,) = replay(settings)
    assert replayed.rows_retired == 0 and _ids(settings) == ["a", "b"]
    # a version with every row rejected fails and loads nothing: it retires nothing either
    _write(path, "b", edits={"b": ROWS["b"].replace("Germany", "Germny")})
    with pytest.raises(BatchRejectedError):
        run_source(source, settings)
    assert _ids(settings) == ["a", "b"]
    assert sorted(run_query(settings, "SELECT source_record FROM retired_facts").to_series()) == [
        "c"
    ]


def test_an_empty_version_retires_nothing(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "trips.csv"
    _write(path, "a", "b")
    source = trips_source(path)
    run_source(source, settings)
    _write(path)  # the header and no row: a failed export, far more often than an empty list
    empty = run_source(source, settings)
    assert (empty.rows_read, empty.rows_retired) == (0, 0)
    assert _ids(settings) == ["a", "b"] == _published(settings)


def _seats(path: Path, years: list[int | str]) -> Source:
    path.write_text("c,y\n" + "".join(f"Kazakhstan,{y}\n" for y in years), encoding="utf-8")
    return Source.model_validate(
        {
            "name": "seats",
            "kind": Kind.MEMBERSHIPS,
            "uri": str(path),
            "mapping": {
                "columns": {"c": "country", "y": "year"},
                "record_id": ["c", "y"],
                "periods": "yearly",
                "constants": {"organization": "UN", "body": "UNSC", "status": "elected_member"},
            },
        }
    )


def test_a_yearly_period_that_lost_its_first_year_replaces_the_old_period(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "seats.csv"
    run_source(_seats(path, [2016, 2017, 2018]), settings)
    assert _ids(settings, "memberships") == ["Kazakhstan|2016..Kazakhstan|2018"]
    # the list is corrected: the seat was 2017-2018 only
    corrected = run_source(_seats(path, [2017, 2018]), settings)
    assert corrected.rows_retired == 1
    periods = run_query(
        settings, "SELECT membership_id, year(start_date), year(end_date) FROM memberships"
    ).rows()
    assert periods == [("seats:Kazakhstan|2017", 2017, 2018)]
    assert run_query(
        settings, "SELECT elected_seats FROM annual_summary WHERE country = 'KAZ' AND year = 2016"
    ).rows() in ([], [(0,)])
    assert _published(settings, "memberships") == ["Kazakhstan|2017..Kazakhstan|2018"]
    assert run_query(settings, "SELECT fact_id, year FROM retired_facts").rows() == [
        ("seats:Kazakhstan|2016", 2016)
    ]


def test_a_yearly_period_with_a_year_rejected_is_rebuilt_not_counted_twice(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "seats.csv"
    source = _seats(path, [])
    source = source.model_copy(
        update={
            "mapping": source.mapping.model_copy(
                update={
                    "columns": {"id": "notes", "c": "country", "y": "year"},
                    "record_id": ["id"],
                }
            )
        }
    )
    path.write_text("id,c,y\ns17,Kazakhstan,2017\ns18,Kazakhstan,2018\n", encoding="utf-8")
    run_source(source, settings)
    assert _ids(settings, "memberships") == ["s17..s18"]
    # the 2017 row is still in the list, with a country that is none: it waits in quarantine
    path.write_text("id,c,y\ns17,Atlantis,2017\ns18,Kazakhstan,2018\n", encoding="utf-8")
    edited = run_source(source, settings)
    assert (edited.rows_rejected, edited.rows_retired) == (1, 1)
    assert _ids(settings, "memberships") == ["s18"]
    seats = run_query(
        settings, "SELECT year, elected_seats FROM annual_summary WHERE country = 'KAZ' ORDER BY 1"
    ).rows()
    assert dict(seats)[2018] == 1  # the 2018 seat once, not in the old period and the new one


def test_a_run_killed_inside_the_retiring_load_retires_nothing(tmp_path: Path) -> None:
    home = tmp_path / "warehouse"
    settings = Settings(home=home)
    path = tmp_path / "trips.csv"
    _write(path, "a", "b", "c", "d")
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  - name: trips\n    kind: visits\n    uri: trips.csv\n    mapping:\n"
        "      record_id: record\n      columns: {host: host_country, visitor_country: "
        "visitor_country, visitor: visitor_name, title: visitor_title, date: start_date}\n",
        encoding="utf-8",
    )
    (source,) = load_sources(config)
    run_source(source, settings)
    before = run_query(settings, "SELECT * FROM visits ORDER BY visit_id")
    _write(path, "a", "b")
    # killed inside the load's transaction: facts retired, audit row next, commit not reached
    killed = subprocess.run(
        [sys.executable, "-m", "tests.faults.driver", "load", "kill", str(config)],
        cwd=REPO,
        env={**os.environ, "RELATIONS_ETL_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert run_query(settings, "SELECT * FROM visits ORDER BY visit_id").equals(before)
    assert run_query(settings, "SELECT count(*) FROM retired_facts").item() == 0
    assert _published(settings) == ["a", "b", "c", "d"]
    # the next run does the retirement whole
    assert run_source(source, settings).rows_retired == 2
    assert _ids(settings) == ["a", "b"] == _published(settings)
