"""Reports: a country's annual report (text, markdown, HTML) and the markdown reports of runs."""

from relations_etl.report.annual import annual_report, write_configured_report, write_html
from relations_etl.report.country import (
    ReportCountry,
    check_report_settings,
    resolve_report_country,
)
from relations_etl.report.runs import batch_markdown, markdown_table

__all__ = [
    "ReportCountry",
    "annual_report",
    "batch_markdown",
    "check_report_settings",
    "markdown_table",
    "resolve_report_country",
    "write_configured_report",
    "write_html",
]
