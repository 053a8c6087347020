"""The invariants of the README's "Guarantees": conservation, idempotency, incremental runs,
a read-only `sql`, and no SQL built from input values or names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from relations_etl_flows.ingest import nightly, replay_quarantine

from relations_etl.config import Kind, Source, load_sources, source_for
from relations_etl.errors import (
    BatchRejectedError,
    ConfigError,
    SourceReadError,
    SourcesFailedError,
)
from relations_etl.pipeline import run_source
from relations_etl.publish import publish_pending
from relations_etl.quarantine import open_rejections
from relations_etl.query import run_query
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from tests.conftest import DEMO, REPO, NightlyRun, copy_warehouse
from tests.runs import artifact, run_flow
from tests.state import (
    DEMO_ROWS,
    edit_relations,
    parquet_digests,
    row_counts,
    run_all,
    sample_lists,
    table_digests,
)

COLUMNS = {
    "country": "country",
    "counterpart": "counterpart",
    "event": "event",
    "date": "event_date",
}


def _batches(settings: Settings) -> list[tuple[str, str, int, int, int, int]]:
    return run_query(
        settings,
        "SELECT source, status, rows_read, rows_loaded, rows_rejected, rows_deduplicated "
        "FROM load_batches ORDER BY started_at",
    ).rows()


def test_every_batch_accounts_for_every_row(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        "id,country,counterpart,event,date\n"
        "1,Kazakhstan,China,established,1992-01-03\n"
        "1,Kazakhstan,China,established,1992-01-03\n"  # the same record twice: deduplicated
        "2,Kazakhstan,Japan,established,1992-01-26\n"
        "3,Kazakhstan,Atlantis,established,1992-01-26\n"  # rejected
        "4,Kazakhstan,India,established,1992-02-22\n",
        encoding="utf-8",
    )
    source = Source(
        name="r",
        kind=Kind.RELATIONS,
        uri=str(listing),
        mapping={"columns": COLUMNS, "record_id": "id"},
    )
    first = run_source(source, settings)
    assert (first.rows_read, first.rows_loaded, first.rows_rejected) == (5, 3, 1)
    assert first.rows_deduplicated == 1
    forced = run_source(source, settings, force=True)
    assert (forced.rows_read, forced.rows_loaded, forced.rows_deduplicated) == (5, 0, 4)
    skipped = run_source(source, settings)
    assert skipped.unchanged_since == forced.batch_id
    batches = _batches(settings)
    assert [b[1] for b in batches] == ["succeeded", "succeeded", "skipped"]
    for _, _, read, loaded, rejected, deduplicated in batches:
        assert read == loaded + rejected + deduplicated
    loaded = run_query(settings, "SELECT counterpart, event_date FROM relations ORDER BY 1")
    assert [(c, str(d)) for c, d in loaded.rows()] == [
        ("CHN", "1992-01-03"),
        ("IND", "1992-02-22"),
        ("JPN", "1992-01-26"),
    ]
    assert open_rejections(settings, "r")["source_record"].to_list() == ["3"]


@pytest.mark.usefixtures("prefect_server")
def test_nightly_twice_leaves_every_table_and_parquet_file_the_same(
    demo_nightly: NightlyRun, tmp_path: Path
) -> None:
    config = DEMO
    # after one nightly run of the demo lists (tests/test_flows.py checks its rows)
    settings = copy_warehouse(demo_nightly.settings, tmp_path / "warehouse")
    tables, files = table_digests(settings), parquet_digests(settings)
    assert row_counts(settings) == DEMO_ROWS
    assert {Path(f).parts[1] for f in files} == set(DEMO_ROWS)  # parquet/<table>/year=*/
    again = nightly(config=str(config), home=str(settings.home))
    assert again and all(r.unchanged_since is not None for r in again)
    assert table_digests(settings) == tables
    assert parquet_digests(settings) == files
    # the same holds when every source is forced through the whole pipeline again
    forced = nightly(config=str(config), home=str(settings.home), force=True)
    # every row read again: none loaded, the loaded ones found already there, the bad rejected
    assert [
        (r.source, r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_deduplicated) for r in forced
    ] == [
        ("kz-visits-2023", 11, 0, 3, 8),
        ("kz-memberships", 10, 0, 2, 8),
        ("kz-relations", 6, 0, 1, 5),
        ("kz-reported-totals", 4, 0, 1, 3),
    ]
    assert table_digests(settings) == tables
    assert parquet_digests(settings) == files


def test_an_unchanged_source_does_no_data_work(
    demo_warehouse: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_warehouse  # the demo lists loaded once
    tables = table_digests(settings)
    written = {p: p.stat().st_mtime_ns for p in settings.parquet_dir.rglob("*.parquet")}

    def unread(cls: type[Reference], settings: Settings) -> Reference:
        raise AssertionError("an unchanged source read its reference data")

    # its files' digest decides: the reference tables are not parsed
    monkeypatch.setattr(Reference, "load", classmethod(unread))
    run_all(DEMO, settings)
    assert table_digests(settings) == tables
    assert {p: p.stat().st_mtime_ns for p in settings.parquet_dir.rglob("*.parquet")} == written
    hashes = run_query(
        settings,
        "SELECT source, list(DISTINCT content_hash) AS hashes, list(status ORDER BY started_at) "
        "AS statuses, sum(rows_read) FILTER (WHERE status = 'skipped') AS skipped_reads "
        "FROM load_batches GROUP BY source ORDER BY source",
    ).rows()
    for _, distinct_hashes, statuses, skipped_reads in hashes:
        assert len(distinct_hashes) == 1 and statuses == ["succeeded", "skipped"]
        assert skipped_reads == 0


def test_a_changed_list_mapping_or_reference_is_reloaded(
    settings: Settings, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    run_all(config, settings)
    edit_relations(config)
    relations = load_sources(config)[2]
    changed = run_source(relations, settings)
    assert changed.unchanged_since is None and changed.rows_loaded == 3
    # Germany's row replaced by its new date; Japan and South Sudan added
    now = run_query(settings, "SELECT counterpart, event_date FROM relations ORDER BY 1").rows()
    assert [(c, str(d)) for c, d in now] == [
        ("CHN", "1992-01-01"),
        ("DEU", "1992-02-11"),
        ("JPN", "1992-01-26"),
        ("RUS", "1992-10-01"),
        ("SSD", "2011-01-01"),
        ("TUR", "1992-01-01"),
        ("USA", "1991-12-01"),
    ]
    # a new mapping (here: notes no longer mapped) is a new input
    config.write_text(config.read_text().replace("        notes: notes\n", "", 1))
    visits = load_sources(config)[0]
    assert run_source(visits, settings).unchanged_since is None
    # so is new reference data: rows quarantined for an unknown name may pass now
    (settings.user_reference_dir).mkdir(parents=True)
    (settings.user_reference_dir / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,reason\nAtlantis,GRC,,,test\n", encoding="utf-8"
    )
    assert run_source(visits, settings).unchanged_since is None


@pytest.mark.usefixtures("prefect_server")
def test_a_source_that_disappears_is_reported_and_its_rows_stay(
    settings: Settings, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    run_all(config, settings)  # loaded before (by the library: the flow runs the same stages)
    counts = table_digests(settings)
    (config.parent / "data" / "kz_relations.csv").unlink()
    with pytest.raises(SourcesFailedError, match="kz-relations"):
        nightly(config=str(config), home=str(settings.home))
    assert table_digests(settings)["relations"] == counts["relations"]
    relations = load_sources(config)[2]
    with pytest.raises(SourceReadError, match=r"kz_relations\.csv"):
        run_source(relations, settings)
    # dropped from the configuration: reported by the nightly run, rows kept
    text = config.read_text()
    config.write_text(text[: text.index("  - name: kz-relations")])
    nightly_id, state = run_flow(nightly, config=str(config), home=str(settings.home))
    assert [r.source for r in state.result()] == ["kz-visits-2023", "kz-memberships"]
    summary = artifact("nightly-summary", nightly_id)
    unconfigured = summary[summary.index("## Sources no longer configured") :]
    assert "kz-relations" in unconfigured and "kz-visits-2023" not in unconfigured
    assert table_digests(settings)["relations"] == counts["relations"]


def test_a_refused_query_is_a_usage_error_at_the_command_line(sample_warehouse: Settings) -> None:
    # every refused statement, and that none changes a file: tests/cases/hostile/sql.yaml
    # (in this process); here the console script's exit code
    before = table_digests(sample_warehouse)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "relations-etl"), "sql", "DROP TABLE visits"],
        env={**os.environ, "RELATIONS_ETL_HOME": str(sample_warehouse.home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 64
    assert "read-only: a DROP statement is refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert table_digests(sample_warehouse) == before


def test_hostile_names_and_values_never_become_sql(tmp_path: Path) -> None:
    evil = "x'); DROP TABLE visits; --"
    # every kind loaded and published into a home whose path is SQL: not a copy
    settings = Settings(home=tmp_path / "ware'house; DROP TABLE visits")
    run_all(DEMO, settings)
    visits = table_digests(settings)["visits"]
    assert row_counts(settings) == DEMO_ROWS
    # source names become ids and file names: they are whitelisted, not quoted
    bad_name = tmp_path / "bad-name.yaml"
    bad_name.write_text(
        f'sources:\n  - {{name: "{evil}", kind: relations, uri: x.csv}}\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="name"):
        load_sources(bad_name)
    # column names, record ids and values are data all the way into the warehouse
    listing = tmp_path / "evil.csv"
    listing.write_text(
        f'"{evil}",counterpart,event\'),date\n'
        f'"{evil}",China,established,1992-01-03\n'
        f'"{evil}2",Japan,established,1992-01-26\n',
        encoding="utf-8",
    )
    source = Source(
        name="evil",
        kind=Kind.RELATIONS,
        uri=str(listing),
        mapping={
            "columns": {
                evil: "country",
                "counterpart": "counterpart",
                "event')": "event",
                "date": "event_date",
            },
            "record_id": evil,
        },
    )
    with pytest.raises(BatchRejectedError) as info:  # every row rejected: the batch fails
        run_source(source, settings)
    assert (info.value.rows_read, info.value.rows_rejected) == (2, 2)
    assert evil in str(info.value), "the reasons name the values, as text"
    # the failed batch's quarantine is committed with it; the next publish writes it out
    publish_pending(settings)
    assert table_digests(settings)["visits"] == visits
    rejected = open_rejections(settings, "evil")
    assert sorted(rejected["source_record"].to_list()) == [evil, evil + "2"]
    assert {p.parts[-3] for p in settings.parquet_dir.rglob("*.parquet")} >= {
        "visits",
        "rejected_rows",
    }


@pytest.mark.usefixtures("prefect_server")
def test_a_line_read_wrong_stays_in_quarantine_on_replay(
    settings: Settings, tmp_path: Path
) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        "country,counterpart,event,date\n"
        "Kazakhstan,China,established,1992-01-03\n"
        "Kazakhstan,Japan,established,1992-01-26,an extra field\n",
        encoding="utf-8",
    )
    source = Source(name="r", kind=Kind.RELATIONS, uri=str(listing), mapping={"columns": COLUMNS})
    first = run_source(source, settings)
    assert (first.rows_loaded, first.rows_rejected) == (1, 1)
    (replayed,) = replay_quarantine(home=str(settings.home))
    assert (replayed.rows_loaded, replayed.rows_rejected) == (0, 1)
    checks = run_query(
        settings,
        'SELECT list_transform(errors, lambda e: e."check") FROM rejected_rows '
        "WHERE resolved_batch_id IS NULL",
    ).item()
    assert "field_count" in checks.to_list()
    assert run_query(settings, "SELECT counterpart FROM relations").rows() == [("CHN",)]


@pytest.mark.usefixtures("prefect_server")
def test_a_record_repeated_across_files_stays_a_duplicate_on_replay(settings: Settings) -> None:
    folder = REPO / "tests" / "cases" / "hostile" / "xml_folder"
    source = source_for(Kind.VISITS, str(folder), "hsg-visits-xml", None)
    first = run_source(source, settings)
    assert first.rows_rejected == 2
    (replayed,) = replay_quarantine(home=str(settings.home))
    assert (replayed.rows_loaded, replayed.rows_rejected) == (0, 2)
    still = run_query(
        settings,
        'SELECT source_record, list_transform(errors, lambda e: e."check") AS checks '
        "FROM rejected_rows WHERE resolved_batch_id IS NULL ORDER BY source_file",
    ).rows()
    assert [(record, "duplicate_record" in checks) for record, checks in still] == [
        ("x2", True),
        ("x2", True),
    ]
