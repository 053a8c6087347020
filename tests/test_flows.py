"""Real Prefect flow runs (prefect_test_harness): the nightly flow, artifacts, failures, replays."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from prefect.client.orchestration import get_client
from relations_etl_flows.ingest import ingest_source, nightly, replay_quarantine

from relations_etl.config import Kind, Source, load_sources
from relations_etl.errors import SourcesFailedError
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import DEMO, REPO, NightlyRun
from tests.runs import artifact, run_flow
from tests.state import (
    DEMO_REJECTED,
    DEMO_ROWS,
    parquet_digests,
    rejected_records,
    row_counts,
    table_digests,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_nightly_loads_every_sample_source_and_reports_it(
    demo_nightly: NightlyRun, demo_template: Settings
) -> None:
    # RELATIONS_ETL_REPORT_COUNTRY=kaz: the run also writes and links the report
    nightly_id, results, settings = (
        demo_nightly.flow_run_id,
        demo_nightly.results,
        demo_nightly.settings,
    )
    assert [r.source for r in results] == [s.name for s in load_sources(DEMO)]
    assert [
        (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_deduplicated) for r in results
    ] == [
        (11, 8, 3, 0),
        (10, 8, 2, 0),
        (6, 5, 1, 0),
        (4, 3, 1, 0),
    ]
    # the rows themselves: the flow loads and publishes what the library does, row for row
    assert row_counts(settings) == DEMO_ROWS
    assert rejected_records(settings) == DEMO_REJECTED
    assert table_digests(settings, across_runs=True) == table_digests(
        demo_template, across_runs=True
    )
    assert parquet_digests(settings, across_runs=True) == parquet_digests(
        demo_template, across_runs=True
    )
    heads = run_query(
        settings,
        "SELECT visitor_country, visitor_name, visitor_role FROM visits "
        "WHERE host_country = 'KAZ' AND visitor_role LIKE 'head_of_%' ORDER BY source_record",
    ).rows()
    assert heads == [
        ("ALB", "Bajram Begaj", "head_of_state"),
        ("DEU", "Frank-Walter Steinmeier", "head_of_state"),
        ("FRA", "Emmanuel Macron", "head_of_state"),
        ("HUN", "Viktor Orbán", "head_of_government"),
        ("CZE", "Petr Fiala", "head_of_government"),
    ]

    batches = run_query(settings, "SELECT source, flow_run_id, status FROM load_batches").rows()
    assert [status for _, _, status in batches] == ["succeeded"] * len(results)
    with get_client(sync_client=True) as client:
        for _, flow_run_id, _ in batches:
            run = client.read_flow_run(flow_run_id)  # the audit points at a real flow run ...
            assert run.parent_task_run_id is not None  # ... a subflow of this nightly run
            parent = client.read_task_run(run.parent_task_run_id)
            assert parent.flow_run_id == nightly_id
    # each artifact read is this run's (Artifact.get(key) is the latest of the whole API)
    ingest_of = {source: flow_run_id for source, flow_run_id, _ in batches}
    batch = artifact("batch-kz-visits-2023", ingest_of["kz-visits-2023"])
    assert "First rejected rows" in batch and "Atlantis" in batch
    counts = json.loads(artifact("nightly-counts", nightly_id))
    assert [(r["source"], r["read"], r["loaded"], r["rejected"]) for r in counts] == [
        (r.source, r.rows_read, r.rows_loaded, r.rows_rejected) for r in results
    ]
    link = artifact("nightly-report", nightly_id)
    uri = re.fullmatch(r"\[Annual report KAZ-2023\]\((file:.*)\)", link)
    assert uri is not None, link
    report = Path(urlparse(uri.group(1)).path)
    # the latest year with facts for KAZ in the sample lists is the briefing's year
    assert report == settings.reports_dir / "KAZ-2023.html"
    assert "Kazakhstan" in report.read_text(encoding="utf-8")
    summary = artifact("nightly-summary", nightly_id)
    assert "kz-memberships" in summary and str(report) in summary


def test_a_missing_source_fails_alone_and_is_audited(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    shutil.copytree(REPO / "examples" / "data", tmp_path / "data")
    config.write_text(
        DEMO.read_text().replace("data/kz_relations.csv", "data/missing.csv"), encoding="utf-8"
    )
    with pytest.raises(SourcesFailedError, match="kz-relations"):
        nightly(config=str(config), home=str(settings.home))
    batches = {
        source: (status, error)
        for source, status, error in run_query(
            settings, "SELECT source, status, error FROM load_batches"
        ).rows()
    }
    assert batches["kz-relations"][0] == "failed"
    assert "missing.csv" in batches["kz-relations"][1]
    assert batches["kz-visits-2023"][0] == batches["kz-memberships"][0] == "succeeded"
    # what loaded before and after the failure is kept, every row of it
    assert row_counts(settings) == {**DEMO_ROWS, "relations": 0, "rejected_rows": 6}
    assert rejected_records(settings) == [r for r in DEMO_REJECTED if r[0] != "kz-relations"]


def test_bad_data_is_not_retried(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b'a,b\n1,"a quote never closed\n')
    source = Source(name="broken", kind=Kind.RELATIONS, uri=str(broken), format="csv")
    state = ingest_source(source, home=str(settings.home), return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
        extract_runs = [
            r
            for r in runs
            if r.flow_run_id == state.state_details.flow_run_id
            and r.name.startswith("extract_source")
        ]
    assert len(extract_runs) == 1 and extract_runs[0].run_count == 1


def test_replay_loads_rows_fixed_by_new_reference_data(demo_warehouse: Settings) -> None:
    settings = demo_warehouse  # the demo lists loaded, their bad rows in the quarantine
    assert replay_quarantine(home=str(settings.home))[0].rows_loaded == 0
    user = settings.user_reference_dir
    user.mkdir(parents=True)
    (user / "country_aliases.csv").write_text(
        "alias,code,valid_from,valid_to,note\nAtlantis,GRC,,,steward's fix\n", encoding="utf-8"
    )
    (user / "titles.csv").write_text(
        "title,role,country,note\nGrand Vizier,head_of_government,,steward's fix\n",
        encoding="utf-8",
    )
    results = {
        r.source: r for r in replay_quarantine(source="kz-visits-2023", home=str(settings.home))
    }
    visits = results["kz-visits-2023"]
    assert (visits.rows_read, visits.rows_loaded, visits.rows_rejected) == (3, 2, 1)
    loaded = run_query(
        settings,
        "SELECT visitor_country, visitor_title FROM visits "
        "WHERE source_record LIKE 'bad-%' ORDER BY 1",
    ).rows()
    assert loaded == [("GRC", "President"), ("ITA", "Grand Vizier")]
    still = run_query(
        settings,
        "SELECT source_record FROM rejected_rows WHERE source = "
        "'kz-visits-2023' AND resolved_batch_id IS NULL",
    ).rows()
    assert still == [("bad-03",)]
    audit = run_query(
        settings,
        "SELECT bool_and(rows_read = rows_loaded + rows_rejected + "
        "rows_deduplicated) FROM load_batches",
    ).item()
    assert audit is True


def test_a_mapping_that_names_a_missing_column_is_audited(
    settings: Settings, tmp_path: Path
) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("Country,Year\nFrance,2020\n", encoding="utf-8")
    source = Source(
        name="wrong-mapping",
        kind=Kind.MEMBERSHIPS,
        uri=str(listing),
        mapping={"columns": {"Nation": "country", "Year": "year"}},
    )
    state = ingest_source(source, home=str(settings.home), return_state=True)
    assert state.is_failed()
    (row,) = run_query(settings, "SELECT status, rows_read, error FROM load_batches").rows()
    assert row[:2] == ("failed", 0)
    assert "['Nation']" in row[2] and "['Country', 'Year']" in row[2]


def test_a_publish_the_disk_refuses_is_pending_not_failed(
    settings: Settings, demo_template: Settings
) -> None:
    # parquet/ is a file: every Parquet write fails, as on a full or read-only disk
    settings.home.mkdir(parents=True)
    (settings.home / "parquet").write_text("not a folder\n", encoding="utf-8")
    nightly_id, state = run_flow(nightly, config=str(DEMO), home=str(settings.home))
    results = state.result()
    assert results and all(r.publish_pending for r in results)
    assert all("could not be read or written" in str(r.publish_pending) for r in results)
    statuses = run_query(settings, "SELECT DISTINCT status FROM load_batches").rows()
    assert statuses == [("succeeded",)], "one word for one state: the batches are committed"
    assert row_counts(settings) == DEMO_ROWS
    summary = artifact("nightly-summary", nightly_id)
    assert "## Publish pending" in summary
    assert "Failed sources" not in summary
    counts = json.loads(artifact("nightly-counts", nightly_id))
    # the audit's word for the batch's state, and the publish's own column
    assert {(r["status"], r["publish"]) for r in counts} == {("succeeded", "pending")}
    queued = run_query(settings, "SELECT DISTINCT table_name FROM publish_queue ORDER BY 1")
    assert queued.rows() == [(t,) for t in sorted(DEMO_ROWS)]

    (settings.home / "parquet").unlink()  # the disk is fixed: the next run publishes what waited
    again = nightly(config=str(DEMO), home=str(settings.home))
    assert all(r.unchanged_since and not r.publish_pending for r in again)
    assert run_query(settings, "SELECT count(*) FROM publish_queue").item() == 0
    # what waited is what a run with a working disk publishes
    assert parquet_digests(settings, across_runs=True) == parquet_digests(
        demo_template, across_runs=True
    )
