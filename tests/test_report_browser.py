"""The HTML report opened in headless Chromium: the charts render, the tables have rows, the
page logs no error and asks for nothing over the network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from relations_etl.config import load_sources
from relations_etl.load import connect
from relations_etl.pipeline import run_source
from relations_etl.report import write_html
from relations_etl.settings import Settings
from tests.conftest import REPO

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


def test_the_html_report_renders_in_chromium(settings: Settings, tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    for source in load_sources(REPO / "examples" / "sources.yaml"):
        run_source(source, settings)
    conn = connect(settings, read_only=True)
    try:
        page_file = write_html(conn, "KAZ", 2023, tmp_path / "kaz-2023.html")
    finally:
        conn.close()
    profile = tmp_path / "profile"
    profile.mkdir()
    screenshot = tmp_path / "kaz-2023.png"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.screenshot(path=str(screenshot), full_page=True)
            charts = {}
            for chart in (
                "chart-by-month",
                "chart-by-role",
                "chart-visiting-countries",
                "chart-memberships",
            ):
                marks = page.locator(f"svg#{chart} rect.bar")
                boxes = [marks.nth(i).bounding_box() for i in range(marks.count())]
                drawn = [b for b in boxes if b and b["width"] > 0 and b["height"] > 0]
                charts[chart] = len(drawn)
                # every mark carries its data label (a value or a period) for the reader
                labels = marks.evaluate_all(
                    "bars => bars.map(b => b.dataset.label + b.dataset.value)"
                )
                assert all(label.strip() for label in labels), chart
            rows = {
                table: page.locator(f"#table-{table} tbody tr").count()
                for table in (
                    "summary",
                    "reconciliation",
                    "notable-visitors",
                    "visits",
                    "seats",
                    "rejections",
                    "batches",
                )
            }
            flagged = page.locator("#table-reconciliation tr.exceeds").count()
            values = page.locator("svg#chart-by-role text.value").all_text_contents()
            coverage = page.locator("#table-reconciliation td.coverage").all_inner_texts()
            title = page.title()
        finally:
            browser.close()
    assert title == "Kazakhstan (KAZ), 2023"
    # 6 visits received and 2 abroad, all known only by year; 4 roles; 6 visiting countries;
    # 8 memberships, seats and chairs
    assert charts == {
        "chart-by-month": 2,
        "chart-by-role": 4,
        "chart-visiting-countries": 6,
        "chart-memberships": 8,
    }
    assert rows == {
        "summary": 7,
        "reconciliation": 3,
        "notable-visitors": 5,
        "visits": 8,
        "seats": 3,
        "rejections": 7,
        "batches": 4,
    }
    assert values == ["3", "2", "1", "2"]
    assert coverage == ["5 of 186", "5 of 32", "1 of 24"]
    assert flagged == 0
    assert errors == []
    assert requests == [page_file.as_uri()], "the page fetches nothing but itself"
    assert screenshot.stat().st_size > 10_000
