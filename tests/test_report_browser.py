"""The HTML report opened in headless Chromium at a desktop's and a phone's width: the charts
render and scale, the tables have rows, nothing overflows sideways, each colour means one thing,
the page logs no error and asks for nothing over the network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relations_etl.config import Kind, source_for
from relations_etl.db import connect
from relations_etl.pipeline import run_source
from relations_etl.report import resolve_report_country, write_html
from relations_etl.report.svg import ABROAD, RECEIVED
from relations_etl.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("RELATIONS_ETL_REQUIRE_SHARED_DATA"))


def _chromium() -> Path:
    """Debian's Chromium: installed here when we are root, else skipped (a failure in CI)."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
            subprocess.run(install, capture_output=True, env=env, check=False)
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} is missing and cannot be installed here (not root, or apt-get failed); "
            "install Debian's chromium package to run this test"
        )
        if _required():
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


# visits to Kazakhstan in 2024 known to the day: several months, one country twice
VISITS_2024 = """host,from,who,when
Kazakhstan,China,President Xi Jinping,2024-07-02
Kazakhstan,Russia,President Vladimir Putin,2024-07-03
Kazakhstan,Turkey,President Recep Tayyip Erdogan,2024-07-03
Kazakhstan,Azerbaijan,President Ilham Aliyev,2024-07-03
Kazakhstan,Pakistan,Prime Minister Shehbaz Sharif,2024-07-03
Kazakhstan,Germany,Chancellor Olaf Scholz,2024-09-16
Kazakhstan,Russia,President Vladimir Putin,2024-11-27
Azerbaijan,Kazakhstan,President Kassym-Jomart Tokayev,2024-11-12
"""
WIDTHS = (1280, 420)
# the smallest size, in CSS pixels, at which a chart's text is still read without zooming
READABLE_PX = 10


def _measure(page: Any) -> dict[str, Any]:
    """What the test checks on one page at one width, read from the rendered document."""
    return page.evaluate(
        """() => {
        const charts = {};
        for (const svg of document.querySelectorAll('svg.chart')) {
            const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            const sizes = [...svg.querySelectorAll('text')].map(
                t => parseFloat(getComputedStyle(t).fontSize) * scale);
            const bars = [...svg.querySelectorAll('rect.bar')];
            charts[svg.id] = {
                drawn: bars.filter(b => {
                    const r = b.getBoundingClientRect(); return r.width > 0 && r.height > 0;
                }).length,
                labelled: bars.every(b => (b.dataset.label + b.dataset.value).trim() !== ''),
                fills: bars.map(b => [b.dataset.label, b.getAttribute('fill')]),
                smallest_text: Math.min(...sizes),
                right: svg.getBoundingClientRect().right,
            };
        }
        const rows = {};
        for (const table of document.querySelectorAll('table')) {
            rows[table.id.replace('table-', '')] = table.querySelectorAll('tbody tr').length;
        }
        return {
            scroll_width: document.documentElement.scrollWidth,
            inner_width: window.innerWidth,
            charts, rows,
            recorded: [...document.querySelectorAll('#table-summary td.num')].map(
                td => td.innerText),
            exceeds: document.querySelectorAll('#table-summary tr.exceeds').length,
            ongoing: document.querySelectorAll('svg#chart-memberships path.ongoing').length,
            title: document.title,
        };
    }"""
    )


def test_the_html_report_renders_in_chromium(demo_warehouse: Settings, tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    settings = demo_warehouse  # the demo sources file loaded, then one more list
    extra = tmp_path / "kz-visits-2024.csv"
    extra.write_text(VISITS_2024, encoding="utf-8")
    mapping = tmp_path / "kz-visits-2024.yaml"
    mapping.write_text(
        "columns: {host: host_country, from: visitor_country, who: visitor, when: start_date}\n",
        encoding="utf-8",
    )
    run_source(source_for(Kind.VISITS, str(extra), None, mapping), settings)
    conn = connect(settings, read_only=True)
    try:
        pages = {
            year: write_html(
                conn,
                resolve_report_country(settings, "KAZ", year, conn),
                year,
                tmp_path / f"kaz-{year}.html",
            )
            for year in (2023, 2024)
        }
    finally:
        conn.close()
    profile = tmp_path / "profile"
    profile.mkdir()
    errors: list[str] = []
    requests: list[str] = []
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=FLAGS,
            viewport={"width": WIDTHS[0], "height": 900},
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            for year, page_file in pages.items():
                for width in WIDTHS:
                    page.set_viewport_size({"width": width, "height": 900})
                    page.goto(page_file.as_uri())
                    screenshot = tmp_path / f"kaz-{year}-{width}.png"
                    page.screenshot(path=str(screenshot), full_page=True)
                    assert screenshot.stat().st_size > 10_000
                    seen[year, width] = _measure(page)
        finally:
            browser.close()
    for (year, width), shown in seen.items():
        where = f"KAZ {year} at {width} px"
        # nothing wider than the window: tables wrap or stack, charts scale to their box
        assert shown["scroll_width"] <= shown["inner_width"] == width, where
        for chart, drawn in shown["charts"].items():
            assert drawn["labelled"], (where, chart)
            assert drawn["right"] <= width, (where, chart)
            assert drawn["smallest_text"] >= READABLE_PX, (where, chart, drawn["smallest_text"])
    desk = seen[2023, 1280]
    assert desk["title"] == "Kazakhstan (KAZ), 2023"
    # every date of the sample is year-only and each country came once: sentences, no chart;
    # the 8 memberships, seats and chairs on a timeline, 4 of them ongoing
    assert {c: d["drawn"] for c, d in desk["charts"].items()} == {"chart-memberships": 8}
    assert desk["ongoing"] == 4
    assert desk["rows"] == {
        # one row per annual_summary figure, the foreign minister abroad and memberships among them
        "summary": 9,
        "by-role": 3,
        "visits": 8,
        "seats": 3,
        # the four sample lists; the 2024 list holds nothing of 2023
        "batches": 4,
        "rejections": 7,
    }
    assert desk["recorded"] == [
        "5 of 186 published",
        "5 of 32 published",
        "1 of 24 published",
        "0",
        "2",
        "2",
        "1",
        "0",  # the foreign minister abroad: none in the sample lists
        "4",  # full memberships on 31 December (the 8 on the timeline include seats and chairs)
    ]
    assert desk["exceeds"] == 0
    charts = seen[2024, 1280]["charts"]
    # 7 received in July (5), September and November; 1 abroad in November; Russia twice
    assert {c: d["drawn"] for c, d in charts.items()} == {
        "chart-by-month": 4,
        "chart-visiting-countries": 6,
        "chart-memberships": 8,
    }
    # one meaning per colour: received blue and abroad orange wherever they are drawn; the
    # memberships chart uses neither
    months = dict(charts["chart-by-month"]["fills"])
    assert months == {
        "Jul received": RECEIVED,
        "Sep received": RECEIVED,
        "Nov received": RECEIVED,
        "Nov abroad": ABROAD,
    }
    assert {fill for _, fill in charts["chart-visiting-countries"]["fills"]} == {RECEIVED}
    assert not {fill for _, fill in charts["chart-memberships"]["fills"]} & {RECEIVED, ABROAD}
    assert errors == []
    assert set(requests) == {p.as_uri() for p in pages.values()}, "pages fetch nothing else"
