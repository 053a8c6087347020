"""The reporting layer and the annual report: views behind each figure of the briefing, the
reconciliation with published totals, and text, markdown and HTML that show the same figures."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import polars as pl
import pytest
from relations_etl_flows.cli import main

from relations_etl.config import Kind, load_sources, source_for
from relations_etl.db import connect
from relations_etl.errors import BatchRejectedError, ConfigError
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.report import (
    check_report_settings,
    resolve_report_country,
    write_configured_report,
)
from relations_etl.report.data import ReportData, gather, tables
from relations_etl.report.html import render_html
from relations_etl.report.text import render_markdown, render_text
from relations_etl.settings import Settings
from tests.conftest import DEMO, copy_warehouse, shared
from tests.state import DEMO_KAZ_2023


def _load(settings: Settings, config: Path) -> None:
    for source in load_sources(config):
        run_source(source, settings)


@pytest.fixture(scope="module")
def demo(demo_template: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo warehouse for this module's tests that read it (one writes its report)."""
    return copy_warehouse(demo_template, tmp_path_factory.mktemp("demo") / "warehouse")


def _list(folder: Path, name: str, kind: str, text: str, columns: dict[str, str]) -> Path:
    """A small raw list with its sources file, as a steward would add one."""
    (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    mapping = ", ".join(f"{k}: {v}" for k, v in columns.items())
    config = folder / f"{name}.yaml"
    config.write_text(
        f"sources:\n  - {{name: {name}, kind: {kind}, uri: {name}.csv, "
        f"mapping: {{columns: {{{mapping}}}}}}}\n",
        encoding="utf-8",
    )
    return config


def _data(settings: Settings, country: str, year: int) -> ReportData:
    """The report data of `country` (a code or a name) in `year`, read from the warehouse."""
    conn = connect(settings, read_only=True)
    try:
        return gather(conn, resolve_report_country(settings, country, year, conn), year)
    finally:
        conn.close()


def _reconciliation(settings: Settings, country: str, year: int) -> dict[str, dict[str, object]]:
    frame = run_query(
        settings,
        f"SELECT * FROM reconciliation WHERE country = '{country}' AND year = {year}",
    )
    return {row["metric"]: row for row in frame.rows(named=True)}


def test_reconciliation_sets_the_briefing_beside_the_detail_rows(demo: Settings) -> None:
    rows = _reconciliation(demo, "KAZ", 2023)
    assert set(rows) == {"relations_count", "head_visits", "foreign_minister_visits"}
    # what the detail rows hold, counted from the fact tables themselves
    relations = run_query(
        demo, "SELECT count(*) FROM relations_in_force(DATE '2023-12-31') WHERE country = 'KAZ'"
    ).item()
    heads, ministers = run_query(
        demo,
        """SELECT count(*) FILTER (WHERE visitor_role IN ('head_of_state', 'head_of_government')),
                  count(*) FILTER (WHERE visitor_role = 'foreign_minister')
           FROM visits WHERE host_country = 'KAZ' AND year(start_date) = 2023""",
    ).row(0)
    # the briefing names five heads (Albania, Germany, France, Hungary, Czechia) and Blinken
    assert (relations, heads, ministers) == (5, 5, 1)
    for metric, reported, recorded in (
        ("relations_count", 186, relations),
        ("head_visits", 32, heads),
        ("foreign_minister_visits", 24, ministers),
    ):
        row = rows[metric]
        assert (row["reported"], row["recorded"]) == (reported, recorded), metric
        assert row["difference"] == recorded - reported
        assert row["coverage"] == f"{recorded} of {reported}"
        assert row["detail_exceeds_reported"] is False
        assert row["status"] == "partial"
        assert row["publisher"] == "Ministry of Foreign Affairs of Kazakhstan"
        assert row["published_on"] == dt.date(2023, 12, 25)
        assert row["source"] == "kz-reported-totals"


def test_reported_totals_load_quarantine_and_publish_like_every_kind(demo: Settings) -> None:
    batch = run_query(
        demo,
        "SELECT rows_read, rows_loaded, rows_rejected, rows_deduplicated FROM load_batches "
        "WHERE source = 'kz-reported-totals'",
    )
    assert batch.rows() == [(4, 3, 1, 0)]
    reasons = run_query(
        demo,
        "SELECT column_name, check_name, values FROM rejections_by_reason "
        "WHERE source = 'kz-reported-totals'",
    )
    assert reasons.rows() == [("value", "whole_number", "several")]
    published = pl.scan_parquet(
        demo.parquet_dir / "reported_totals" / "**" / "*.parquet", hive_partitioning=True
    ).collect()
    assert published.height == 3
    assert set(published.get_column("year")) == {2023}
    assert sorted(published.get_column("value")) == [24, 32, 186]


def test_a_rerun_of_the_totals_changes_nothing(settings: Settings) -> None:
    (totals,) = [s for s in load_sources(DEMO) if s.kind is Kind.REPORTED_TOTALS]
    run_source(totals, settings)
    before = run_query(settings, "SELECT * FROM reported_totals ORDER BY ALL")
    assert run_source(totals, settings).unchanged_since is not None
    again = run_source(totals, settings, force=True)
    assert (again.rows_loaded, again.rows_rejected, again.rows_deduplicated) == (0, 1, 3)
    assert run_query(settings, "SELECT * FROM reported_totals ORDER BY ALL").equals(before)


def test_detail_exceeding_the_published_figure_is_flagged(
    demo_warehouse: Settings, tmp_path: Path
) -> None:
    settings = demo_warehouse
    # the memberships list holds two chairs in 2023 (SCO, CICA) and one elected seat (WHC)
    config = _list(
        tmp_path,
        "other-totals",
        "reported_totals",
        "country,year,metric,value,by,date\n"
        "KAZ,2023,chairmanships,1,A yearbook,2024-02\n"
        "KAZ,2023,elected_seats,1,A yearbook,2024-02\n"
        'Kazakhstan,2024,head visits,"1,234",A yearbook,2025\n',
        {
            "country": "country",
            "year": "year",
            "metric": "metric",
            "value": "value",
            "by": "publisher",
            "date": "published_on",
        },
    )
    _load(settings, config)
    rows = _reconciliation(settings, "KAZ", 2023)
    assert rows["chairmanships"]["detail_exceeds_reported"] is True
    assert rows["chairmanships"]["status"] == "detail exceeds reported"
    assert (rows["chairmanships"]["difference"], rows["chairmanships"]["coverage"]) == (1, "2 of 1")
    assert rows["elected_seats"]["detail_exceeds_reported"] is False
    assert rows["elected_seats"]["status"] == "complete"
    assert rows["relations_count"]["detail_exceeds_reported"] is False
    later = _reconciliation(settings, "KAZ", 2024)
    # a year with no detail rows at all is still reconciled: nothing recorded of 1,234
    assert (later["head_visits"]["reported"], later["head_visits"]["recorded"]) == (1234, 0)
    assert later["head_visits"]["published_precision"] == "year"
    data = _data(settings, "KAZ", 2023)
    page = render_html(data)
    assert page.count('class="row exceeds"') == 1
    (summary,) = [t for t in tables(data) if t.key == "summary"]
    shown = {row[0]: row[1:] for row in summary.rows}
    assert shown["Chairmanships held"][:2] == ["2, above the 1 published", "exceeds published"]
    assert shown["Elected seats held"][:2] == ["1 of 1 published", "complete"]
    # two publishers: each published total names its own
    assert summary.columns == ["figure", "recorded", "status", "published by"]
    assert shown["Elected seats held"][2] == "A yearbook, 2024-02"


def test_visits_by_role_and_month_add_up_to_the_annual_summary(demo: Settings) -> None:
    mismatches = run_query(
        demo,
        """WITH cells AS (
               SELECT reporting_country AS country, year,
                      sum(visits) FILTER (WHERE direction = 'inbound'
                          AND visitor_role IN ('head_of_state', 'head_of_government')) AS heads,
                      sum(visits) FILTER (WHERE direction = 'inbound'
                          AND visitor_role = 'foreign_minister') AS ministers,
                      sum(visits) FILTER (WHERE direction = 'inbound'
                          AND visitor_role = 'head_of_organization') AS organizations,
                      sum(visits) FILTER (WHERE direction = 'outbound'
                          AND visitor_role IN ('head_of_state', 'head_of_government')) AS abroad
               FROM visits_by_role_month GROUP BY ALL)
           SELECT * FROM annual_summary AS a LEFT JOIN cells AS c USING (country, year)
           WHERE coalesce(c.heads, 0) <> a.head_visits
              OR coalesce(c.ministers, 0) <> a.foreign_minister_visits
              OR coalesce(c.organizations, 0) <> a.organization_head_visits
              OR coalesce(c.abroad, 0) <> a.outbound_head_visits""",
    )
    assert mismatches.is_empty(), mismatches
    kaz = run_query(
        demo,
        "SELECT direction, month, visitor_role, visits FROM visits_by_role_month "
        "WHERE reporting_country = 'KAZ' AND year = 2023 ORDER BY ALL",
    )
    # the sample knows these visits only by their year: no month is invented
    assert kaz.rows() == [
        ("inbound", None, "foreign_minister", 1),
        ("inbound", None, "head_of_government", 2),
        ("inbound", None, "head_of_state", 3),
        ("outbound", None, "head_of_state", 2),
    ]
    outbound = run_query(
        demo,
        "SELECT counterpart_country, event FROM visits_outbound "
        "WHERE reporting_country = 'KAZ' ORDER BY event",
    )
    assert outbound.rows() == [("ARE", "COP28"), ("USA", "UNGA78")]


@pytest.mark.parametrize("day", ["1991-12-31", "1992-06-30", "2023-12-31"])
@pytest.mark.parametrize("country", ["KAZ", "CHN", "USA", "FRA"])
def test_in_force_for_one_country_equals_the_filtered_macro(
    demo: Settings, country: str, day: str
) -> None:
    for macro in ("relations_in_force", "memberships_in_force"):
        one = run_query(demo, f"SELECT * FROM {macro}('{country}', DATE '{day}') ORDER BY ALL")
        every = run_query(
            demo,
            f"SELECT * FROM {macro}(DATE '{day}') WHERE country = '{country}' ORDER BY ALL",
        )
        assert one.equals(every), (macro, country, day)
    kaz = run_query(demo, "SELECT count(*) FROM relations_in_force('KAZ', DATE '2023-12-31')")
    assert kaz.item() == 5


def test_chairmanships_have_names_and_periods(demo: Settings) -> None:
    chairs = run_query(
        demo,
        "SELECT organization, organization_name, status, first_year, last_year "
        "FROM chairmanships WHERE country = 'KAZ' ORDER BY start_date",
    )
    assert chairs.rows() == [
        (
            "CICA",
            "Conference on Interaction and Confidence-Building Measures in Asia",
            "chair",
            2020,
            2024,
        ),
        ("SCO", "Shanghai Cooperation Organisation", "chair", 2023, 2024),
    ]


def test_notable_visitors_are_heads_received_by_date_with_country_names(
    settings: Settings, tmp_path: Path
) -> None:
    config = _list(
        tmp_path,
        "protocol",
        "visits",
        "host,from,who,when\n"
        "Kazakhstan,France,President Emmanuel Macron,2023-11-02\n"
        "Kazakhstan,United States,Secretary of State Antony Blinken,2023-02-28\n"
        "Kazakhstan,Germany,President Frank-Walter Steinmeier,2023-06-20\n"
        "Kazakhstan,Hungary,Prime Minister Viktor Orbán,2023-10-20\n"
        "Kazakhstan,Albania,President Bajram Begaj,2023-06\n"
        "France,Kazakhstan,President Kassym-Jomart Tokayev,2023-04-05\n",
        {"host": "host_country", "from": "visitor_country", "who": "visitor", "when": "start_date"},
    )
    _load(settings, config)
    notable = run_query(
        settings,
        "SELECT start_date, visitor_name, visitor_country, visitor_country_name, visitor_role "
        "FROM notable_visitors WHERE reporting_country = 'KAZ' AND year = 2023 "
        "ORDER BY start_date, visitor_country_name, visitor_name",
    )
    assert notable.rows() == [
        (dt.date(2023, 6, 1), "Bajram Begaj", "ALB", "Albania", "head_of_state"),
        (dt.date(2023, 6, 20), "Frank-Walter Steinmeier", "DEU", "Germany", "head_of_state"),
        (dt.date(2023, 10, 20), "Viktor Orbán", "HUN", "Hungary", "head_of_government"),
        (dt.date(2023, 11, 2), "Emmanuel Macron", "FRA", "France", "head_of_state"),
    ]
    data = _data(settings, "KAZ", 2023)
    # month known for every visit: Feb, Jun (twice), Oct, Nov received; Apr abroad
    assert data.by_month["received"] == [0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 1, 0, 0]
    assert data.by_month["abroad"] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    shown = {t.key: t for t in tables(data)}
    assert [row[1] for row in shown["visits"].rows if row[0] == "received"] == [
        "2023-02-28",
        "2023-06",
        "2023-06-20",
        "2023-10-20",
        "2023-11-02",
    ]
    # five months hold visits: a chart says more than a sentence
    assert shown["by-month"].chart
    assert shown["by-month"].rows == [
        ["Feb", "1", "0"],
        ["Apr", "0", "1"],
        ["Jun", "2", "0"],
        ["Oct", "1", "0"],
        ["Nov", "1", "0"],
    ]
    # five countries with one visit each: a sentence, not five identical bars
    assert not shown["visiting-countries"].chart and not shown["visiting-countries"].rows
    assert shown["visiting-countries"].note == (
        "One visit each from Albania, France, Germany, Hungary and United States."
    )
    page = render_html(data)
    assert 'id="chart-by-month"' in page and 'id="chart-visiting-countries"' not in page


def _cells(data_tables: list[list[str]]) -> set[str]:
    return {cell for row in data_tables for cell in row if cell}


def test_text_markdown_and_html_show_the_same_figures(demo: Settings) -> None:
    data = _data(demo, "kaz", 2023)
    text = render_text(data, width=400)
    markdown = render_markdown(data)
    page = render_html(data)
    assert text.startswith("Kazakhstan (KAZ), 2023")
    assert markdown.startswith("# Kazakhstan (KAZ), 2023")
    for table in tables(data):
        for row in table.rows:
            for cell in row:
                assert cell in text, (table.key, cell)
                assert cell.replace("|", "\\|") in markdown, (table.key, cell)
                assert html.escape(cell) in page, (table.key, cell)
    figures = {metric: value for metric, _, value in data.figures()}
    assert figures == DEMO_KAZ_2023
    for shown in (text, markdown, page):
        for coverage in ("5 of 186 published", "5 of 32 published", "1 of 24 published"):
            # each figure once, beside its published total
            assert shown.count(coverage) == 1, coverage
        assert shown.count("Countries with diplomatic relations at year end") == 1
        assert "Ministry of Foreign Affairs of Kazakhstan, 2023-12-25" in shown
    # every date of the sample is year-only: a sentence says so instead of a chart of months
    month_note = "The lists give only the year of all 8 visits (6 received and 2 abroad)"
    for shown in (text, markdown, page):
        assert month_note in shown
        assert "One visit each from Albania, Czechia, France, Germany, Hungary" in shown
    assert 'id="chart-by-month"' not in page and 'id="chart-visiting-countries"' not in page
    # memberships without an end are marked ongoing, in the chart and in the tables
    assert "1992-03-02 – ongoing" in page
    assert page.count('class="ongoing"') == 4


def test_html_is_self_contained_and_escapes_every_value(settings: Settings, tmp_path: Path) -> None:
    config = _list(
        tmp_path,
        "hostile",
        "visits",
        "host,from,who,when,event\n"
        'Kazakhstan,France,"President <script>alert(1)</script> & Co",2023-05-02,'
        '"<img src=x onerror=alert(2)>"\n',
        {
            "host": "host_country",
            "from": "visitor_country",
            "who": "visitor",
            "when": "start_date",
            "event": "event",
        },
    )
    with pytest.raises(BatchRejectedError):  # its one row goes to quarantine, which the page shows
        _load(settings, config)
    page = render_html(_data(settings, "KAZ", 2023))
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_report_command_writes_html_and_prints_markdown(
    demo: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(demo.home))
    target = tmp_path / "kaz.html"
    assert (
        main(
            [
                "report",
                "--country",
                "KAZ",
                "--year",
                "2023",
                "--html",
                str(target),
                "--format",
                "md",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert out.out.startswith("# Kazakhstan (KAZ), 2023")
    assert "| Heads of state or government received | 5 of 32 published | partial |" in out.out
    assert f"wrote {target}" in out.err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'id="chart-memberships"' in page
    assert not list(tmp_path.glob(".*.tmp"))
    assert (
        main(
            [
                "report",
                "--country",
                "KAZ",
                "--year",
                "2023",
                "--html",
                str(tmp_path / "missing" / "kaz.html"),
            ]
        )
        == 73
    )
    assert "Give a path in a folder that exists" in capsys.readouterr().err


def test_a_year_without_facts_says_so(demo: Settings) -> None:
    data = _data(demo, "KAZ", 1850)
    assert data.summary is None and data.empty
    # only the rows that may be why: the open rejected rows naming Kazakhstan (of any year)
    assert [t.key for t in tables(data)] == ["batches", "rejections"]
    note = (
        "No facts recorded for Kazakhstan in 1850. The warehouse holds figures for Kazakhstan "
        f"for 1991–{data.today.year}."
    )
    assert data.notes() == [note]
    assert note in render_text(data, width=400)
    assert f'<p class="lead note">{note}</p>' in render_html(data)
    assert 'id="summary"' not in render_html(data)


@pytest.mark.shared_data
def test_public_visits_list_through_the_reporting_views(tmp_path: Path) -> None:
    """The Office of the Historian's list: 80 visits began in 2023 (81 people), 80 heads."""
    settings = Settings(home=tmp_path / "hsg")
    run_source(source_for(Kind.VISITS, str(shared("hsg-visits")), "hsg-visits-xml", None), settings)
    inbound = run_query(
        settings,
        "SELECT count(*) AS people, count(DISTINCT split_part(visit_id, '#', 1)) AS visits, "
        "count(*) FILTER (WHERE is_head) AS heads, count(month) AS with_month "
        "FROM visits_inbound WHERE reporting_country = 'USA' AND year = 2023",
    ).row(0, named=True)
    assert inbound == {"people": 81, "visits": 80, "heads": 80, "with_month": 81}
    summary = run_query(
        settings, "SELECT head_visits FROM annual_summary WHERE country = 'USA' AND year = 2023"
    ).item()
    assert summary == 80
    months = run_query(
        settings,
        "SELECT month, sum(visits) AS n FROM visits_by_role_month "
        "WHERE reporting_country = 'USA' AND year = 2023 AND direction = 'inbound' "
        "GROUP BY month ORDER BY month",
    )
    assert months.get_column("n").sum() == 81
    assert None not in months.get_column("month").to_list()
    notable = run_query(
        settings,
        "SELECT start_date, visitor_role, visitor_country_name FROM notable_visitors "
        "WHERE reporting_country = 'USA' AND year = 2023 ORDER BY start_date",
    )
    assert notable.height == 80
    assert notable.get_column("start_date").is_sorted()
    assert set(notable.get_column("visitor_role")) == {"head_of_state", "head_of_government"}
    assert notable.get_column("visitor_country_name").null_count() == 0
    data = _data(settings, "USA", 2023)
    assert sum(data.by_month["received"]) == 81 and data.by_month["received"][12] == 0
    assert {m: v for m, _, v in data.figures()}["head_visits"] == 80


def _report(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """`relations-etl report ...` in-process: exit code, stdout, stderr."""
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(home))
    code = main(["report", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_unknown_country_is_a_usage_error_naming_the_closest_known(
    demo: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _report(demo.home, monkeypatch, capsys, "--country", "XYZ", "--year", "2023")
    assert (code, out) == (64, "")
    # nothing is spelled like XYZ: the countries this warehouse holds most about are offered
    assert "country 'XYZ' is unknown; no known code or name is spelled like it" in err
    assert "countries in this warehouse: KAZ (Kazakhstan), USA (United States)" in err
    assert "ISO 3166 alpha-3 code" in err  # the hint says what to give
    code, out, err = _report(
        demo.home, monkeypatch, capsys, "--country", "Kazakstan", "--year", "2023"
    )
    assert (code, out) == (64, "")
    assert "country 'Kazakstan' is unknown; the closest known: KAZ (Kazakhstan)" in err
    code, _, err = _report(demo.home, monkeypatch, capsys, "--country", "Korea", "--year", "2023")
    assert code == 64 and "ambiguous" in err and "KOR or PRK" in err
    code, _, err = _report(
        demo.home, monkeypatch, capsys, "--country", "U.S.S.R.", "--year", "2023"
    )
    assert code == 64 and "SUN (Union of Soviet Socialist Republics), which did not exist" in err


def test_a_country_name_resolves_like_a_lists_label(
    demo: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, by_code, _ = _report(demo.home, monkeypatch, capsys, "--country", "KAZ", "--year", "2023")
    assert code == 0 and by_code.startswith("Kazakhstan (KAZ), 2023")
    for label in ("Kazakhstan", "kz", " kazakhstan ", "Republic of Kazakhstan"):
        code, out, err = _report(
            demo.home, monkeypatch, capsys, "--country", label, "--year", "2023"
        )
        assert (code, err) == (0, ""), label
        assert out == by_code, label
    # an alias of the reference data (dated: "China, Republic of" is TWN after 1949-10-01)
    assert resolve_report_country(demo, "China, Republic of", 1990).code == "TWN"
    assert resolve_report_country(demo, "China, Republic of", 1930).code == "CHN"
    assert resolve_report_country(demo, "Czech Republic").code == "CZE"


def test_every_year_has_one_definition_and_a_year_after_today_says_so(demo: Settings) -> None:
    this_year = dt.date.today().year
    years = run_query(
        demo,
        "SELECT year, relations_count FROM annual_summary WHERE country = 'KAZ' ORDER BY year",
    ).rows()
    assert [y for y, _ in years] == list(range(1991, this_year + 1))
    conn = connect(demo, read_only=True)  # one connection for the 30-odd years
    try:
        for year, relations in years:
            # the count at year end is the in-force macro on the last day of that year, every year
            in_force = conn.execute(
                "SELECT count(*) FROM relations_in_force('KAZ', ?::DATE)", [f"{year}-12-31"]
            ).fetchone()
            assert (relations,) == in_force, year
    finally:
        conn.close()
    # a seat that runs to 2027 is counted up to this year, never ahead of it
    seats = run_query(
        demo,
        "SELECT max(year) FROM annual_summary WHERE country = 'KAZ' AND elected_seats > 0",
    ).item()
    assert seats == this_year
    later = [_data(demo, "KAZ", year) for year in (this_year + 1, this_year + 2, 2030)]
    for data in later:
        assert data.empty and data.summary is None and tables(data) == []
        note = (
            f"{data.year} is after the current year ({this_year}): the lists record what has "
            f"happened, so there are no figures for {data.year} yet. The warehouse holds figures "
            f"for Kazakhstan for 1991–{this_year}."
        )
        assert data.notes() == [note]
        for shown in (render_text(data, width=400), render_markdown(data), render_html(data)):
            assert note in shown
            assert "5 of 186" not in shown and "Countries with diplomatic relations" not in shown
    # a year the lists hold no visits for says why its visit figures are 0
    current = _data(demo, "KAZ", this_year)
    assert {m: v for m, _, v in current.figures()}["relations_count"] == 5
    assert any(note.startswith(f"{this_year} is not over") for note in current.notes())
    assert any("no visits of Kazakhstan after 2023" in note for note in current.notes())


def test_data_quality_is_scoped_to_the_country_and_year(
    demo_warehouse: Settings, tmp_path: Path
) -> None:
    settings = demo_warehouse
    other = _list(
        tmp_path,
        "fr-visits",
        "visits",
        "host,from,who,when\n"
        "France,Germany,President Frank-Walter Steinmeier,2023-03-01\n"
        "France,Atlantis,President Nobody,2023-04-01\n",
        {"host": "host_country", "from": "visitor_country", "who": "visitor", "when": "start_date"},
    )
    kz = _list(
        tmp_path,
        "kz-extra",
        "visits",
        "host,from,who,when\n"
        "Kazakhstan,Italy,Prime Minister Giorgia Meloni,2023-05-01\n"
        "Kazakstan,Spain,Prime Minister Pedro Sánchez,2023-05-02\n",
        {"host": "host_country", "from": "visitor_country", "who": "visitor", "when": "start_date"},
    )
    _load(settings, other)
    _load(settings, kz)
    data = _data(settings, "KAZ", 2023)
    assert data.batches.get_column("source").to_list() == [
        "kz-extra",
        "kz-memberships",
        "kz-relations",
        "kz-reported-totals",
        "kz-visits-2023",
    ]
    assert "fr-visits" not in data.rejections.get_column("source").to_list()
    assert data.rejections.get_column("rows").sum() == 7
    # the typo "Kazakstan" names no country: counted, not shown as Kazakhstan's
    assert data.rejected_elsewhere == 1
    (rejections,) = [t for t in tables(data) if t.key == "rejections"]
    assert "hold 1 other open rejected row(s) with no cell that names Kazakhstan" in rejections.note
    france = _data(settings, "France", 2023)
    assert france.batches.get_column("source").to_list() == ["fr-visits", "kz-visits-2023"]
    assert france.rejections.rows() == [
        ("fr-visits", "visits", "visitor_country", "country_known", 1, "Atlantis")
    ]


def test_the_configured_report_country_is_resolved_and_checked(
    demo: Settings, tmp_path: Path
) -> None:
    named = demo.model_copy(update={"report_country": "Kazakhstan", "report_year": 2023})
    assert check_report_settings(named) == resolve_report_country(demo, "KAZ")
    written = write_configured_report(named)
    assert written is not None and written.name == "KAZ-2023.html"
    assert check_report_settings(demo.model_copy(update={"report_country": None})) is None
    with pytest.raises(ConfigError) as failed:
        check_report_settings(demo.model_copy(update={"report_country": "Kazakstan"}))
    assert failed.value.exit_code == 78
    assert str(failed.value).startswith(
        "RELATIONS_ETL_REPORT_COUNTRY: country 'Kazakstan' is unknown; the closest known: "
        "KAZ (Kazakhstan)"
    )
    assert "nothing was loaded" in str(failed.value)


@pytest.mark.usefixtures("prefect_server")
def test_nightly_refuses_a_bad_report_country_before_loading_anything(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relations_etl_flows.ingest import nightly

    monkeypatch.setenv("RELATIONS_ETL_REPORT_COUNTRY", "Atlantis")
    with pytest.raises(ConfigError) as failed:
        nightly(config=str(DEMO), home=str(settings.home))
    assert failed.value.exit_code == 78
    assert "RELATIONS_ETL_REPORT_COUNTRY: country 'Atlantis' is unknown" in str(failed.value)
    # not one source was read: the warehouse was never even created
    assert not settings.db_path.exists()
