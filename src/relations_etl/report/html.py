"""Report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import datetime as dt
from html import escape

from relations_etl.report.data import (
    COUNTRIES_IN_A_CHART,
    MONTHS,
    NUMERIC_COLUMNS,
    ReportData,
    Table,
    tables,
    until,
    when,
)
from relations_etl.report.svg import (
    DIRECTION_COLOURS,
    RECEIVED,
    Period,
    bar_chart,
    column_chart,
    timeline,
)

_CSS = f"""
* {{ box-sizing: border-box; }}
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: 1.5rem 1rem 3rem;
       max-width: 980px; color: #222; line-height: 1.4; }}
h1 {{ margin: 0 0 0.2rem; font-size: 1.7rem; }}
h2 {{ margin-top: 2.2rem; border-bottom: 1px solid #ccc; }}
h3 {{ margin: 1.4rem 0 0.4rem; font-size: 1.05rem; }}
.meta, .note {{ color: #555; font-size: 0.9rem; }}
.lead {{ background: #f4f6f8; border-left: 4px solid #7f8c8d; padding: 0.5rem 0.8rem; }}
.table-wrap {{ max-width: 100%; overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 0.4rem 0; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #e4e4e4; padding: 0.3rem 0.6rem; text-align: left;
         vertical-align: top; overflow-wrap: break-word; }}
th {{ background: #f4f6f8; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.exceeds td {{ background: #fde2e1; }}
th.received::before, th.abroad::before {{ content: ""; display: inline-block; width: 0.7em;
  height: 0.7em; margin-right: 0.3em; }}
th.received::before {{ background: {DIRECTION_COLOURS["received"]}; }}
th.abroad::before {{ background: {DIRECTION_COLOURS["abroad"]}; }}
td.date {{ white-space: nowrap; }}
svg.chart {{ display: block; width: 100%; max-width: 540px; height: auto; margin: 0.6rem 0; }}
@media (max-width: 600px) {{
  body {{ padding: 1rem 0.75rem 2rem; }} h1 {{ font-size: 1.4rem; }}
  th, td {{ padding: 0.25rem 0.4rem; }}
  /* a wide table becomes one block per row, each cell under its column's name */
  table.stack, table.stack tbody, table.stack tr {{ display: block; }}
  table.stack thead {{ position: absolute; width: 1px; height: 1px; overflow: hidden;
                      clip: rect(0 0 0 0); }}
  table.stack tr {{ border-bottom: 1px solid #ccc; padding: 0.35rem 0; }}
  table.stack td {{ display: grid; grid-template-columns: 7.5rem 1fr; gap: 0.5rem;
                   border: 0; padding: 0.1rem 0.2rem; text-align: left; }}
  table.stack td::before {{ content: attr(data-label); color: #555; }}
  table.stack td:empty {{ display: none; }}
}}
"""
# tables wider than this many columns are stacked on a phone instead of scrolled
_STACK_FROM = 5
_DATE_COLUMNS = frozenset({"date", "from", "until", "finished", "published on"})


def _cell_class(column: str) -> str:
    classes = ["num"] if column in NUMERIC_COLUMNS else []
    classes += [column] if column in DIRECTION_COLOURS else []
    return " ".join([*classes, "date"] if column in _DATE_COLUMNS else classes)


def _cell(tag: str, column: str, text: str) -> str:
    css = _cell_class(column)
    attribute = f' class="{css}"' if css else ""
    if tag == "td":
        attribute += f' data-label="{escape(column)}"'
    return f"<{tag}{attribute}>{escape(text)}</{tag}>"


def _heading(table: Table) -> str:
    # under the HTML's own "Data quality" heading the text formats' prefix would repeat it
    title = table.title.removeprefix("Data quality: ")
    return f"<h3>{escape(title[:1].upper() + title[1:])}</h3>"


def _note(table: Table) -> str:
    return f'<p class="note">{escape(table.note)}</p>' if table.note else ""


def _table(table: Table) -> str:
    """A table under its heading, in a container that scrolls sideways when it must."""
    heading = _heading(table)
    if not table.rows:
        return f'{heading}<p id="table-{escape(table.key)}" class="note">{escape(table.note)}</p>'
    head = "".join(_cell("th", c, c) for c in table.columns)
    stack = ' class="stack"' if len(table.columns) >= _STACK_FROM else ""
    parts = [
        heading,
        f'<div class="table-wrap"><table id="table-{escape(table.key)}"{stack}>'
        f"<thead><tr>{head}</tr></thead><tbody>",
    ]
    status = table.columns.index("status") if "status" in table.columns else None
    for row in table.rows:
        css = ""
        if status is not None and row[status]:
            css = " " + row[status].split()[0]  # partial, complete, exceeds
        cells = "".join(_cell("td", c, v) for c, v in zip(table.columns, row, strict=True))
        parts.append(f'<tr class="row{escape(css)}">{cells}</tr>')
    parts.append("</tbody></table></div>")
    parts.append(_note(table))
    return "".join(parts)


def _periods(data: ReportData) -> list[Period]:
    return [
        Period(
            label=f"{r['body'] or r['organization']} {str(r['status']).replace('_', ' ')}",
            start=r["start_date"],
            end=r["end_date"],
            kind="chair or vice-chair"
            if r["status"] in ("chair", "vice_chair")
            else ("elected seat" if r["status"] == "elected_member" else "membership"),
            span=f"{when(r['start_date'], r['start_precision'])} – "
            f"{until(r['end_date'], r['end_precision'])}",
        )
        for r in data.memberships.rows(named=True)
    ]


def _glossary(data: ReportData) -> str:
    """The names behind the codes the timeline shows, so no name needs a hover to be read."""
    names = dict.fromkeys(
        f"{r['body'] or r['organization']}: {r['name']}" for r in data.memberships.rows(named=True)
    )
    return f'<p class="note">{escape("; ".join(sorted(names)))}.</p>' if names else ""


def _chart(data: ReportData, table: Table) -> str:
    """The chart drawn instead of `table`, under the table's heading, with its note."""
    heading = _heading(table)
    if table.key == "by-month":
        months = data.by_month
        chart = column_chart(
            "chart-by-month",
            table.title,
            MONTHS,
            # a direction with no visit in any month would only add an empty legend entry
            {name: values[:12] for name, values in months.items() if any(values[:12])},
            DIRECTION_COLOURS,
        )
        return heading + chart + _note(table)
    if table.key == "visiting-countries":
        shown = data.visiting_countries[:COUNTRIES_IN_A_CHART]
        rest = data.visiting_countries[COUNTRIES_IN_A_CHART:]
        chart = bar_chart("chart-visiting-countries", table.title, shown, RECEIVED)
        more = (
            '<p class="note">Also: '
            + escape("; ".join(f"{name}: {n}" for name, n in rest))
            + ".</p>"
            if rest
            else ""
        )
        return heading + chart + more + _note(table)
    if table.key == "memberships":
        if not data.memberships.height:
            return _table(table)
        chart = timeline("chart-memberships", table.title, _periods(data), data.year, data.today)
        return heading + chart + _glossary(data) + _note(table)
    raise ValueError(f"no chart for table {table.key}")


_SECTIONS = (
    ("summary", "Summary", ("summary",)),
    ("visits", "Visits", ("by-role", "by-month", "visiting-countries", "visits")),
    ("memberships", "Memberships, seats and chairmanships", ("memberships", "seats")),
    ("data-quality", "Data quality", ("batches", "rejections")),
)


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    by_key = {t.key: t for t in tables(data)}

    def shown(key: str) -> str:
        table = by_key[key]
        return _chart(data, table) if table.chart else _table(table)

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{escape(data.title)}</h1>",
        f'<p class="meta">Annual report from the relations_etl warehouse, generated {generated}.'
        " Dates are as precise as the lists give them (2023 means the year only).</p>",
        *(f'<p class="lead note">{escape(note)}</p>' for note in data.notes()),
    ]
    for section, heading, keys in _SECTIONS:
        present = [k for k in keys if k in by_key]
        if present:
            parts = [shown(k) for k in present]
            if section == "summary":  # the section's heading is the table's
                parts = [p.replace(_heading(by_key["summary"]), "", 1) for p in parts]
            body += [f'<section id="{section}"><h2>{heading}</h2>', *parts, "</section>"]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(data.title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
