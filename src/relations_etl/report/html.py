"""Report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import datetime as dt
from html import escape

from relations_etl.report.data import MONTHS, NUMERIC_COLUMNS, ReportData, Table, tables
from relations_etl.report.svg import Period, bar_chart, column_chart, timeline

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
.meta, .note { color: #666; font-size: 0.9rem; }
.figures { display: flex; flex-wrap: wrap; gap: 0.6rem; margin: 1rem 0; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 0.8rem; min-width: 8rem; }
.figure b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f4f6f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.exceeds td { background: #fde2e1; } tr.partial td.coverage { color: #9a5b00; }
svg.chart { display: block; margin: 0.6rem 0; max-width: 100%; height: auto; }
"""


def _cell_class(column: str) -> str:
    return "num" if column in NUMERIC_COLUMNS else ("coverage" if column == "coverage" else "")


def _table(table: Table, heading: bool = True) -> str:
    parts = [f"<h3>{escape(table.title)}</h3>"] if heading else []
    if table.rows:
        head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
        parts.append(f'<table id="table-{escape(table.key)}"><thead><tr>{head}</tr></thead><tbody>')
        status = table.columns.index("status") if "status" in table.columns else None
        for row in table.rows:
            css = ""
            if status is not None:
                css = " exceeds" if row[status] == "detail exceeds reported" else f" {row[status]}"
            cells = "".join(
                f'<td class="{_cell_class(c)}">{escape(v)}</td>'
                for c, v in zip(table.columns, row, strict=True)
            )
            parts.append(f'<tr class="row{escape(css)}">{cells}</tr>')
        parts.append("</tbody></table>")
    else:
        parts.append(f'<p id="table-{escape(table.key)}" class="note">None.</p>')
    if table.note:
        parts.append(f'<p class="note">{escape(table.note)}</p>')
    return "".join(parts)


def _periods(data: ReportData) -> list[Period]:
    return [
        Period(
            label=f"{r['body'] or r['organization']} {str(r['status']).replace('_', ' ')}",
            name=str(r["name"]),
            start=r["start_date"],
            end=r["end_date"],
            kind="chair or vice-chair"
            if r["status"] in ("chair", "vice_chair")
            else ("elected seat" if r["status"] == "elected_member" else "membership"),
        )
        for r in data.memberships.rows(named=True)
    ]


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    by_key = {t.key: t for t in tables(data)}
    figures = "".join(
        f'<div class="figure" data-metric="{escape(m)}"><b>{v}</b>{escape(label)}</div>'
        for m, label, v in data.figures()
    )
    charts_visits = "".join(
        [
            "<h3>Visits by month</h3>",
            column_chart("chart-by-month", "Visits by month", MONTHS, data.by_month),
            "<h3>Visits by role</h3>",
            bar_chart("chart-by-role", "Visits by role", data.by_role),
            "<h3>Visits received, by visiting country"
            + (
                f" (the first 20 of {len(data.visiting_countries)})"
                if len(data.visiting_countries) > 20
                else ""
            )
            + "</h3>",
            bar_chart(
                "chart-visiting-countries",
                "Visits received by visiting country",
                data.visiting_countries[:20],
            ),
        ]
    )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{escape(data.title)}</h1>",
        f'<p class="meta">Annual report from the relations_etl warehouse, generated {generated}.'
        " Months show only where the source gives them; a visit known only by its year counts"
        " under “month not known”.</p>",
        '<section id="summary"><h2>Summary</h2>',
        f'<div class="figures">{figures}</div>',
        _table(by_key["summary"], heading=False),
        "</section>",
        '<section id="reconciliation"><h2>Published totals and the detail rows</h2>',
        '<p class="note">Each total an authority published, beside the count of the detail rows '
        "that back it: coverage reads “recorded of reported”; a row where the detail exceeds the "
        "published figure is marked.</p>",
        _table(by_key["reconciliation"], heading=False),
        "</section>",
        '<section id="visits"><h2>Visits</h2>',
        _table(by_key["notable-visitors"]),
        charts_visits,
        _table(by_key["visits"]),
        "</section>",
        '<section id="memberships"><h2>Memberships, seats and chairmanships</h2>',
        timeline("chart-memberships", "Memberships timeline", _periods(data), data.year),
        _table(by_key["seats"]),
        "</section>",
        '<section id="data-quality"><h2>Data quality</h2>',
        _table(by_key["rejections"]),
        _table(by_key["batches"]),
        "</section>",
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(data.title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
