"""The two public-domain lists through the library: hand-counted facts, conservation, reruns."""

from __future__ import annotations

from pathlib import Path

import pytest

from relations_etl.audit import LoadResult
from relations_etl.config import Kind, source_for
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO, NoListingHandler, Serve, shared

pytestmark = pytest.mark.shared_data


def _scalar(settings: Settings, query: str) -> object:
    return run_query(settings, query).item()


@pytest.fixture(scope="module")
def hsg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, LoadResult]:
    settings = Settings(home=tmp_path_factory.mktemp("hsg"))
    source = source_for(Kind.VISITS, str(shared("hsg-visits")), "hsg-visits-xml", None)
    return settings, run_source(source, settings)


@pytest.fixture(scope="module")
def unsc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, LoadResult]:
    settings = Settings(home=tmp_path_factory.mktemp("unsc"))
    csv = shared("unsc-elected/security_council_non_permanent.csv")
    source = source_for(
        Kind.MEMBERSHIPS, str(csv), None, REPO / "examples" / "mappings" / "unsc-elected.yaml"
    )
    return settings, run_source(source, settings)


def test_hsg_every_record_is_accounted_for(hsg: tuple[Settings, LoadResult]) -> None:
    settings, result = hsg
    assert result.rows_read == 3264
    assert result.rows_read == result.rows_loaded + result.rows_rejected + result.rows_deduplicated
    assert result.rows_rejected == 0, run_query(settings, "SELECT * FROM quarantine_summary")
    assert _scalar(settings, "SELECT count(DISTINCT source_record) FROM visits") == 3264


def test_hsg_2023_records_people_and_heads(hsg: tuple[Settings, LoadResult]) -> None:
    settings, _ = hsg
    row = run_query(
        settings,
        """SELECT count(DISTINCT source_record) AS records, count(*) AS people,
                  count(*) FILTER (WHERE visitor_role IN ('head_of_state', 'head_of_government'))
                  AS heads
           FROM visits WHERE year(start_date) = 2023""",
    ).row(0, named=True)
    assert row == {"records": 80, "people": 81, "heads": 80}
    two = run_query(
        settings,
        "SELECT visitor_title, visitor_role FROM visits "
        "WHERE source_record = (SELECT source_record FROM visits "
        "WHERE visitor_title = 'Crown Prince' AND year(start_date) = 2023) "
        "ORDER BY visit_id",
    )
    assert two.rows() == [("King", "head_of_state"), ("Crown Prince", "other")]


def test_hsg_2022_soviet_and_spain(hsg: tuple[Settings, LoadResult]) -> None:
    settings, _ = hsg
    assert (
        _scalar(
            settings,
            "SELECT count(DISTINCT source_record) FROM visits WHERE year(start_date) = 2022",
        )
        == 100
    )
    soviet = run_query(settings, "SELECT start_date FROM visits WHERE visitor_country = 'SUN'")
    assert soviet.height == 6
    assert all(d.year < 1992 for d in soviet.to_series())
    assert (
        _scalar(
            settings,
            "SELECT DISTINCT visitor_role FROM visits "
            "WHERE visitor_name = 'Pedro Sánchez' AND year(start_date) = 2023",
        )
        == "head_of_government"
    )


def test_hsg_rerun_changes_nothing(hsg: tuple[Settings, LoadResult]) -> None:
    settings, first = hsg
    before = run_query(settings, "SELECT * FROM visits ORDER BY visit_id")
    source = source_for(Kind.VISITS, str(shared("hsg-visits")), "hsg-visits-xml", None)
    skipped = run_source(source, settings)
    assert skipped.unchanged_since == first.batch_id and skipped.rows_read == 0
    forced = run_source(source, settings, force=True)
    assert (forced.rows_loaded, forced.rows_rejected, forced.rows_deduplicated) == (0, 0, 3264)
    assert run_query(settings, "SELECT * FROM visits ORDER BY visit_id").equals(before)
    assert run_query(
        settings,
        "SELECT status, count(*) FROM load_batches "
        "WHERE rows_read = rows_loaded + rows_rejected + rows_deduplicated GROUP BY ALL ORDER BY 1",
    ).rows() == [("skipped", 1), ("succeeded", 2)]


def test_unsc_seats_in_force(unsc: tuple[Settings, LoadResult]) -> None:
    settings, result = unsc
    assert result.rows_read == 660
    assert result.rows_loaded == 660 and result.rows_rejected == 0
    on = "SELECT count(*) FROM memberships_in_force(DATE '{}') WHERE body = 'UNSC'"
    assert _scalar(settings, on.format("1950-06-30")) == 6
    assert _scalar(settings, on.format("2019-06-30")) == 10


def test_unsc_kazakhstan_one_period(unsc: tuple[Settings, LoadResult]) -> None:
    settings, _ = unsc
    rows = run_query(
        settings, "SELECT start_date, end_date, status FROM memberships WHERE country = 'KAZ'"
    ).rows()
    assert [(s.isoformat(), e.isoformat(), st) for s, e, st in rows] == [
        ("2017-01-01", "2018-12-31", "elected_member")
    ]


def test_unsc_every_year_has_ten_elected_seats_from_1966(unsc: tuple[Settings, LoadResult]) -> None:
    settings, _ = unsc
    seats = run_query(
        settings,
        """SELECT y.year, count(m.membership_id) AS seats
           FROM range(1966, 2020) AS y(year)
           LEFT JOIN memberships AS m
             ON year(m.start_date) <= y.year AND year(m.end_date) >= y.year
           GROUP BY y.year""",
    )
    assert set(seats.get_column("seats")) == {10}
    country_years = _scalar(
        settings, "SELECT sum(year(end_date) - year(start_date) + 1) FROM memberships"
    )
    assert country_years == 660


def test_published_parquet_matches_the_warehouse(hsg: tuple[Settings, LoadResult]) -> None:
    import duckdb

    settings, _ = hsg
    pattern = Path(settings.parquet_dir) / "visits" / "*" / "*.parquet"
    conn = duckdb.connect()
    published = conn.execute(
        "SELECT count(*), count(DISTINCT year) "
        f"FROM read_parquet('{pattern}', hive_partitioning=true)"
    ).fetchone()
    assert published is not None
    assert published[0] == _scalar(settings, "SELECT count(*) FROM visits")
    assert published[1] == _scalar(settings, "SELECT count(DISTINCT year(start_date)) FROM visits")


def test_hsg_over_http_with_no_mapping(settings: Settings, serve: Serve) -> None:
    """The real folder served on 127.0.0.1 like a repository host that cannot list folders."""
    url, requested = serve(shared("hsg-visits"), NoListingHandler)
    result = run_source(source_for(Kind.VISITS, url, "hsg-visits-xml", None), settings)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3264, 3264, 0)
    assert "/2020.xml" in requested
    uri = _scalar(settings, "SELECT source_uri FROM load_batches")
    assert uri == url
    assert _scalar(settings, "SELECT count(*) FROM visits WHERE year(start_date) = 2023") == 81
