"""Charts as inline SVG, drawn here so the HTML report needs no script and no network.

Every chart is drawn on a 480-unit wide canvas and scales to its container (viewBox), so that
on a phone its text stays about as large as the page's small print. Each colour has one meaning
throughout the report: blue received, orange abroad; the memberships chart uses other colours.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from html import escape

WIDTH = 480
RECEIVED = "#2f6f9f"
ABROAD = "#d9822b"
DIRECTION_COLOURS = {"received": RECEIVED, "abroad": ABROAD}
# memberships: neither blue nor orange, so no bar there reads as received or abroad
KIND_COLOURS = {
    "membership": "#8a8a8a",
    "elected seat": "#3f8f5a",
    "chair or vice-chair": "#7a4ea3",
}
YEAR_BAND = "#f3e3a0"
_FONT = 'font-family="system-ui, sans-serif" font-size="14"'
_SMALL = 'font-family="system-ui, sans-serif" font-size="13"'
_CHAR = 7.6  # mean advance of a 14-unit character, to lay out legends and labels


def _open(chart_id: str, title: str, height: float) -> str:
    return (
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} '
        f'{height:.0f}" preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )


def _legend(items: list[tuple[str, str]], y: float) -> tuple[str, float]:
    """Swatches and names in rows that fit the width; returns the SVG and the height used."""
    parts, x, row = [], 0.0, 0
    for name, colour in items:
        width = 22 + len(name) * _CHAR + 16
        if x and x + width > WIDTH:
            x, row = 0.0, row + 1
        top = y + row * 22
        parts.append(
            f'<rect x="{x:.1f}" y="{top:.1f}" width="14" height="14" fill="{colour}"/>'
            f'<text x="{x + 20:.1f}" y="{top + 12:.1f}" {_FONT}>{escape(name)}</text>'
        )
        x += width
    return "".join(parts), (row + 1) * 22


def bar_chart(chart_id: str, title: str, items: list[tuple[str, int]], colour: str) -> str:
    """Horizontal bars, each under its label, with its value written at its end."""
    row, top = 40, 4
    height = top + row * len(items) + 4
    largest = max((value for _, value in items), default=1) or 1
    scale = (WIDTH - 48) / largest
    parts = [_open(chart_id, title, height)]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        length = max(value * scale, 1 if value else 0)
        parts.append(
            f'<text x="0" y="{y + 14}" {_FONT}>{escape(label)}</text>'
            f'<rect class="bar" x="0" y="{y + 20}" width="{length:.1f}" height="14" '
            f'fill="{colour}" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text class="value" x="{length + 6:.1f}" y="{y + 32}" {_FONT}>{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(
    chart_id: str,
    title: str,
    categories: list[str],
    series: dict[str, list[int]],
    colours: dict[str, str],
) -> str:
    """Grouped vertical columns: one group per category, one colour per series, with a legend."""
    legend, legend_height = _legend([(name, colours[name]) for name in series], 0)
    plot_top, plot_height, axis = legend_height + 20, 150, 24
    height = plot_top + plot_height + axis
    base = plot_top + plot_height
    group = WIDTH / len(categories)
    bar = (group - 6) / max(len(series), 1)
    largest = max((max(values) for values in series.values()), default=1) or 1
    parts = [
        _open(chart_id, title, height),
        legend,
        f'<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#999"/>',
    ]
    for c, category in enumerate(categories):
        x0 = c * group + 3
        parts.append(
            f'<text x="{x0 + group / 2 - 3:.1f}" y="{base + 18}" text-anchor="middle" '
            f"{_SMALL}>{escape(category)}</text>"
        )
        for s, (name, values) in enumerate(series.items()):
            value = values[c]
            if not value:
                continue
            h = value / largest * plot_height
            x = x0 + s * bar
            y = base - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                f'fill="{colours[name]}" data-label="{escape(category)} {escape(name)}" '
                f'data-value="{value}"><title>{escape(category)}, {escape(name)}: {value}</title>'
                f'</rect><text class="value" x="{x + (bar - 2) / 2:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle" {_SMALL}>{value}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Period:
    """One bar of a timeline: its label and span (end None: ongoing), and its colour key."""

    label: str
    start: dt.date
    end: dt.date | None
    kind: str
    span: str
    """The span as the source gives it, written beside the label: '1992-03 – ongoing'."""


def _step(years: int) -> int:
    """A round number of years between axis labels, so that at most six fit."""
    for step in (1, 2, 5, 10, 20, 25, 50):
        if years / step <= 6:
            return step
    return int(10 ** math.ceil(math.log10(years / 6)))


def timeline(
    chart_id: str, title: str, periods: list[Period], highlight: int, today: dt.date
) -> str:
    """Periods as bars on a time axis in years, each under its label and span; the year
    `highlight` is shaded; a period with no end runs to today and ends in an arrow."""
    first = min(p.start.year for p in periods)
    last = max([highlight, today.year, *(p.end.year for p in periods if p.end)]) + 1
    kinds = [k for k in KIND_COLOURS if any(p.kind == k for p in periods)]
    legend, legend_height = _legend(
        [*((k, KIND_COLOURS[k]) for k in kinds), (str(highlight), YEAR_BAND)], 0
    )
    row, axis, right = 40, 24, 14
    top = legend_height + 10
    height = top + row * len(periods) + axis
    span = WIDTH - right

    def x_of(day: dt.date) -> float:
        whole = (dt.date(last, 1, 1) - dt.date(first, 1, 1)).days
        return (day - dt.date(first, 1, 1)).days / whole * span

    band_x = x_of(dt.date(highlight, 1, 1))
    band_w = x_of(dt.date(highlight + 1, 1, 1)) - band_x
    parts = [
        _open(chart_id, title, height),
        legend,
        f'<rect x="{band_x:.1f}" y="{top}" width="{band_w:.1f}" height="{row * len(periods)}" '
        f'fill="{YEAR_BAND}"><title>{highlight}</title></rect>',
    ]
    step = _step(last - first)
    for year in range(math.ceil(first / step) * step, last + 1, step):
        x = x_of(dt.date(year, 1, 1))
        anchor = "end" if x > span - 20 else ("start" if x < 20 else "middle")
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - axis + 4}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}" {_SMALL}>{year}</text>'
        )
    for i, p in enumerate(periods):
        y = top + i * row
        x1 = x_of(p.start)
        x2 = x_of(p.end or today)
        colour = KIND_COLOURS[p.kind]
        parts.append(
            f'<text x="0" y="{y + 15}" {_FONT}><tspan font-weight="600">{escape(p.label)}'
            f'</tspan> {escape(p.span)}</text><rect class="bar period" x="{x1:.1f}" '
            f'y="{y + 21}" width="{max(x2 - x1, 2):.1f}" height="13" fill="{colour}" '
            f'data-label="{escape(p.label)}" data-value="{escape(p.span)}">'
            f"<title>{escape(p.label)}: {escape(p.span)}</title></rect>"
        )
        if p.end is None:
            parts.append(
                f'<path class="ongoing" d="M{x2:.1f},{y + 18} l10,9.5 l-10,9.5 z" '
                f'fill="{colour}"><title>ongoing</title></path>'
            )
    parts.append("</svg>")
    return "".join(parts)
