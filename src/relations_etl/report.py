"""Report: the annual summary of one country as text, and run reports as markdown."""

from __future__ import annotations

import duckdb
import polars as pl

from relations_etl.load import LoadResult

_LINES = (
    ("relations_count", "Countries with diplomatic relations at year end"),
    ("head_visits", "Heads of state or government received"),
    ("foreign_minister_visits", "Foreign ministers received"),
    ("organization_head_visits", "Heads of international organizations received"),
    ("outbound_head_visits", "Visits abroad by its head of state or government"),
    ("chairmanships", "Chairmanships held"),
    ("elected_seats", "Elected seats held"),
)


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


def annual_report(conn: duckdb.DuckDBPyConnection, country: str, year: int) -> str:
    """The annual summary of `country` in `year`, with the visits and seats behind the numbers."""
    code = country.upper()
    named = conn.execute("SELECT name FROM countries WHERE code = ?", [code]).fetchone()
    title = f"{named[0] if named else code} ({code}), {year}"
    summary = conn.execute(
        "SELECT * FROM annual_summary WHERE country = ? AND year = ?", [code, year]
    )
    row = summary.fetchone()
    if row is None:
        return f"{title}\n  No facts recorded for this country and year.\n"
    values = dict(zip([d[0] for d in summary.description], row, strict=True))
    width = max(len(label) for _, label in _LINES)
    lines = [title, "=" * len(title)]
    lines += [f"{label:<{width}}  {values[name]:>5}" for name, label in _LINES]
    visits = conn.execute(
        """SELECT CASE WHEN host_country = ? THEN 'received' ELSE 'abroad' END AS way,
                  coalesce(visitor_title || ' ', '') || coalesce(visitor_name, '') AS who,
                  coalesce(visitor_country, visitor_organization) AS origin, host_country,
                  coalesce(event, '') AS event
           FROM stg_visits
           WHERE start_year = ? AND (host_country = ? OR visitor_country = ?)
             AND visitor_role IN ('head_of_state', 'head_of_government', 'foreign_minister',
                                  'head_of_organization')
           ORDER BY way DESC, start_date, who""",
        [code, year, code, code],
    ).fetchall()
    if visits:
        lines += ["", "Visits behind these numbers:"]
        lines += [
            f"  {way:<8} {who} ({origin})"
            if way == "received"
            else f"  {way:<8} {who} to {host}{' - ' + event if event else ''}"
            for way, who, origin, host, event in visits
        ]
    seats = conn.execute(
        """SELECT status, coalesce(body, organization), start_date, end_date FROM memberships
           WHERE country = ? AND status IN ('chair', 'vice_chair', 'elected_member')
             AND year(start_date) <= ? AND (end_date IS NULL OR year(end_date) >= ?)
           ORDER BY 2""",
        [code, year, year],
    ).fetchall()
    if seats:
        lines += ["", "Chairs and seats:"]
        lines += [
            f"  {status:<15} {body} ({start} .. {end or 'current'})"
            for status, body, start, end in seats
        ]
    return "\n".join(lines) + "\n"
