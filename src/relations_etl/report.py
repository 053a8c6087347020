"""Report: the annual report of one country (text, markdown, HTML) and run reports as markdown."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import polars as pl

from relations_etl.errors import OutputError
from relations_etl.load import LoadResult, connect
from relations_etl.report_data import gather
from relations_etl.report_html import render_html
from relations_etl.report_text import render_markdown, render_text
from relations_etl.settings import Settings


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table (cells with | or newlines are flattened)."""
    if frame.is_empty():
        return "(none)"

    def cell(value: object) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def batch_markdown(result: LoadResult, rejected: pl.DataFrame) -> str:
    """The Prefect artifact of one batch: its counts and its first rejected rows."""
    counts = pl.DataFrame(
        {
            "rows read": [result.rows_read],
            "loaded": [result.rows_loaded],
            "rejected": [result.rows_rejected],
            "deduplicated": [result.rows_deduplicated],
            "facts written": [result.facts_written],
        }
    )
    preview = (
        rejected.select(
            "source_row",
            "source_record",
            pl.col("errors")
            .list.eval(
                pl.format(
                    "{}: {}",
                    pl.element().struct.field("column"),
                    pl.element().struct.field("message"),
                )
            )
            .list.join("; ")
            .alias("reasons"),
        )
        if rejected.height
        else rejected
    )
    return (
        f"# {result.source} ({result.kind.value})\n\nBatch `{result.batch_id}`\n\n"
        f"{markdown_table(counts)}\n\n## First rejected rows\n\n{markdown_table(preview)}\n"
    )


def annual_report(
    conn: duckdb.DuckDBPyConnection, country: str, year: int, fmt: str = "text"
) -> str:
    """The annual report of `country` in `year` as text (rich tables), markdown or HTML."""
    data = gather(conn, country, year)
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        return render_html(data)
    return render_text(data)


def write_html(conn: duckdb.DuckDBPyConnection, country: str, year: int, path: Path) -> Path:
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
    if not settings.report_country:
        return None
    country = settings.report_country.upper()
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
                {"c": country, "y": dt.date.today().year},
            ).fetchall()[0]
            year = int(latest) if latest is not None else dt.date.today().year
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        target = settings.reports_dir.resolve() / f"{country}-{year}.html"
        return write_html(conn, country, year, target)
    finally:
        conn.close()
