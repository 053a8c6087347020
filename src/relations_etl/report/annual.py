"""The annual report of one country and year: text, markdown or one HTML file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb

from relations_etl.db import connect
from relations_etl.errors import OutputError
from relations_etl.report.country import ReportCountry, check_report_settings
from relations_etl.report.data import gather
from relations_etl.report.html import render_html
from relations_etl.report.text import render_markdown, render_text
from relations_etl.settings import Settings


def annual_report(
    conn: duckdb.DuckDBPyConnection, country: ReportCountry, year: int, fmt: str = "text"
) -> str:
    """The annual report of `country` in `year` as text (rich tables), markdown or HTML."""
    data = gather(conn, country, year)
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        return render_html(data)
    return render_text(data)


def write_html(
    conn: duckdb.DuckDBPyConnection, country: ReportCountry, year: int, path: Path
) -> Path:
    """Write the HTML report to `path` (through a temporary file, so no half file is left)."""
    text = annual_report(conn, country, year, "html")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report to {path}: {exc.strerror or exc}") from exc
    return path


def write_configured_report(settings: Settings) -> Path | None:
    """Write the HTML report of `settings.report_country` into the reports folder, if set."""
    country = check_report_settings(settings)
    if country is None:
        return None
    conn = connect(settings, read_only=True)
    try:
        year = settings.report_year
        if year is None:
            (latest,) = conn.execute(
                """SELECT max(year) FROM (
                    SELECT year FROM visits_inbound WHERE reporting_country = $c
                    UNION ALL SELECT year FROM visits_outbound WHERE reporting_country = $c
                    UNION ALL SELECT year FROM reported_totals WHERE country = $c
                ) WHERE year <= $y""",
                {"c": country.code, "y": dt.date.today().year},
            ).fetchall()[0]
            year = int(latest) if latest is not None else dt.date.today().year
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        target = settings.reports_dir.resolve() / f"{country.code}-{year}.html"
        return write_html(conn, country, year, target)
    finally:
        conn.close()
