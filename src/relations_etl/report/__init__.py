"""Reports: a country's annual report (text, markdown, HTML) and the markdown reports of runs."""

from relations_etl.report.annual import annual_report, write_configured_report, write_html
from relations_etl.report.runs import batch_markdown, markdown_table

__all__ = [
    "annual_report",
    "batch_markdown",
    "markdown_table",
    "write_configured_report",
    "write_html",
]
