"""Real Prefect flow runs (prefect_test_harness): the nightly flow, artifacts, failures, replays."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from relations_etl_flows.ingest import ingest_source, nightly, replay_quarantine

from relations_etl.config import Kind, Source, load_sources
from relations_etl.errors import SourcesFailedError
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO

SAMPLES = REPO / "examples" / "sources.yaml"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _counts(settings: Settings) -> dict[str, int]:
    return {
        table: int(run_query(settings, f"SELECT count(*) FROM {table}").item())
        for table in ("visits", "memberships", "relations", "rejected_rows", "countries")
    }


def test_nightly_loads_every_sample_source(settings: Settings) -> None:
    results = nightly(config=str(SAMPLES), home=str(settings.home))
    assert [r.source for r in results] == [s.name for s in load_sources(SAMPLES)]
    for r in results:
        assert r.rows_read == r.rows_loaded + r.rows_rejected + r.rows_deduplicated
        assert r.rows_rejected > 0, "every sample list carries deliberately bad rows"
    batches = run_query(settings, "SELECT flow_run_id, status FROM load_batches")
    assert batches.get_column("status").to_list() == ["succeeded"] * len(results)
    flow_run_ids = set(batches.get_column("flow_run_id"))
    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            assert client.read_flow_run(flow_run_id).name, "audit points at a real flow run"
    artifact = Artifact.get("batch-kz-visits-2023")
    assert artifact is not None and "First rejected rows" in str(artifact.data)
    assert "Atlantis" in str(artifact.data)
    summary = Artifact.get("nightly-summary")
    assert summary is not None and "kz-memberships" in str(summary.data)


def test_a_missing_source_fails_alone_and_is_audited(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    shutil.copytree(REPO / "examples" / "data", tmp_path / "data")
    config.write_text(
        SAMPLES.read_text().replace("data/kz_relations.csv", "data/missing.csv"), encoding="utf-8"
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
    assert _counts(settings)["visits"] > 0, "what loaded before the failure is kept"


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


def test_replay_loads_rows_fixed_by_new_reference_data(settings: Settings) -> None:
    nightly(config=str(SAMPLES), home=str(settings.home))
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


def test_nightly_artifacts_count_every_source_and_link_the_report(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_REPORT_COUNTRY", "kaz")
    results = nightly(config=str(SAMPLES), home=str(settings.home))
    counts = Artifact.get("nightly-counts")
    assert counts is not None
    rows = json.loads(str(counts.data))
    assert [(r["source"], r["read"], r["loaded"], r["rejected"]) for r in rows] == [
        (r.source, r.rows_read, r.rows_loaded, r.rows_rejected) for r in results
    ]
    link = Artifact.get("nightly-report")
    assert link is not None
    uri = re.fullmatch(r"\[Annual report KAZ-2023\]\((file:.*)\)", str(link.data))
    assert uri is not None, link.data
    report = Path(urlparse(uri.group(1)).path)
    # the latest year with facts for KAZ in the sample lists is the briefing's year
    assert report == settings.reports_dir / "KAZ-2023.html"
    assert "Kazakhstan" in report.read_text(encoding="utf-8")
    summary = Artifact.get("nightly-summary")
    assert summary is not None and str(report) in str(summary.data)


def test_a_publish_the_disk_refuses_is_pending_not_failed(settings: Settings) -> None:
    # parquet/ is a file: every Parquet write fails, as on a full or read-only disk
    settings.home.mkdir(parents=True)
    (settings.home / "parquet").write_text("not a folder\n", encoding="utf-8")
    results = nightly(config=str(SAMPLES), home=str(settings.home))
    assert results and all(r.publish_pending for r in results)
    assert all("could not be read or written" in str(r.publish_pending) for r in results)
    statuses = run_query(settings, "SELECT DISTINCT status FROM load_batches").rows()
    assert statuses == [("succeeded",)], "one word for one state: the batches are committed"
    summary = Artifact.get("nightly-summary")
    assert summary is not None
    assert "## Publish pending" in str(summary.data)
    assert "Failed sources" not in str(summary.data)
    counts = Artifact.get("nightly-counts")
    assert counts is not None
    rows = json.loads(str(counts.data))
    # the audit's word for the batch's state, and the publish's own column
    assert {(r["status"], r["publish"]) for r in rows} == {("succeeded", "pending")}
    assert run_query(settings, "SELECT count(*) FROM publish_queue").item() > 0

    (settings.home / "parquet").unlink()  # the disk is fixed: the next run publishes what waited
    again = nightly(config=str(SAMPLES), home=str(settings.home))
    assert all(r.unchanged_since and not r.publish_pending for r in again)
    assert run_query(settings, "SELECT count(*) FROM publish_queue").item() == 0
    assert list((settings.home / "parquet" / "visits").glob("year=*/data.parquet"))
