"""Charts as inline SVG, drawn here so the HTML report needs no script and no network."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

PALETTE = ("#2f6f9f", "#d9822b", "#4c9a2a", "#8e44ad", "#c0392b", "#7f8c8d")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _empty(chart_id: str, title: str, width: int) -> str:
    return (
        f'<svg id="{escape(chart_id)}" class="chart empty" role="img" width="{width}" height="40" '
        f'viewBox="0 0 {width} 40" aria-label="{escape(title)}: nothing recorded">'
        f'<text x="8" y="24" {_FONT} fill="#666">Nothing recorded.</text></svg>'
    )


def bar_chart(chart_id: str, title: str, items: list[tuple[str, int]], width: int = 640) -> str:
    """Horizontal bars, one per (label, value), each with its value written beside it."""
    if not items:
        return _empty(chart_id, title, width)
    label_width, row, top = 230, 24, 8
    height = top * 2 + row * len(items)
    largest = max(value for _, value in items) or 1
    scale = (width - label_width - 50) / largest
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        length = max(value * scale, 1 if value else 0)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" {_FONT}>'
            f"{escape(label)}</text>"
            f'<rect class="bar" x="{label_width}" y="{y + 4}" width="{length:.1f}" height="16" '
            f'fill="{PALETTE[0]}" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text class="value" x="{label_width + length + 6:.1f}" y="{y + 16}" {_FONT}>'
            f"{value}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(
    chart_id: str,
    title: str,
    categories: list[str],
    series: dict[str, list[int]],
    width: int = 760,
) -> str:
    """Grouped vertical columns: one group per category, one colour per series, with a legend."""
    if not any(any(values) for values in series.values()):
        return _empty(chart_id, title, width)
    height, left, bottom, top = 240, 36, 40, 28
    plot_height = height - bottom - top
    group = (width - left - 8) / len(categories)
    bar = (group - 6) / max(len(series), 1)
    largest = max(max(values) for values in series.values()) or 1
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}" '
        'stroke="#999"/>',
    ]
    for s, name in enumerate(series):
        key_x = left + s * 130
        parts.append(
            f'<rect x="{key_x}" y="6" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
            f'<text x="{key_x + 16}" y="16" {_FONT}>{escape(name)}</text>'
        )
    for c, category in enumerate(categories):
        x0 = left + c * group + 3
        label = category if len(category) <= 4 else category.replace("month ", "")
        parts.append(
            f'<text x="{x0 + group / 2 - 3:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f"{_FONT}>{escape(label)}</text>"
        )
        for s, (name, values) in enumerate(series.items()):
            value = values[c]
            if not value:
                continue
            h = value / largest * plot_height
            x = x0 + s * bar
            y = height - bottom - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}" data-label="{escape(category)} {escape(name)}"'
                f' data-value="{value}"><title>{escape(category)}, {escape(name)}: {value}</title>'
                f'</rect><text class="value" x="{x + (bar - 2) / 2:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle" {_FONT}>{value}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Period:
    """One bar of a timeline: a label, a span of dates (end None: still running), a colour key."""

    label: str
    name: str
    start: dt.date
    end: dt.date | None
    kind: str


def timeline(
    chart_id: str, title: str, periods: list[Period], highlight: int, width: int = 760
) -> str:
    """Periods as bars on a time axis in years; the year `highlight` is shaded."""
    if not periods:
        return _empty(chart_id, title, width)
    today = dt.date.today()
    first = min(p.start.year for p in periods)
    last = max([highlight, *((p.end or today).year for p in periods)]) + 1
    label_width, row, top, axis = 170, 22, 24, 24
    height = top + row * len(periods) + axis
    span = width - label_width - 24
    kinds = sorted({p.kind for p in periods})
    colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kinds)}

    def x_of(day: dt.date) -> float:
        fraction = (day - dt.date(first, 1, 1)).days / (
            dt.date(last, 1, 1) - dt.date(first, 1, 1)
        ).days
        return label_width + fraction * span

    band_x = x_of(dt.date(highlight, 1, 1))
    band_w = x_of(dt.date(highlight + 1, 1, 1)) - band_x
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f'<rect x="{band_x:.1f}" y="{top - 4}" width="{band_w:.1f}" '
        f'height="{row * len(periods) + 4}" fill="#f3e3a0"><title>{highlight}</title></rect>',
    ]
    for i, kind in enumerate(kinds):
        key_x = 4 + i * 150
        parts.append(
            f'<rect x="{key_x}" y="4" width="12" height="12" fill="{colour[kind]}"/>'
            f'<text x="{key_x + 16}" y="14" {_FONT}>{escape(kind)}</text>'
        )
    step = max(1, round((last - first) / 8))
    for year in range(first, last + 1, step):
        x = x_of(dt.date(year, 1, 1))
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - axis + 4}" '
            f'stroke="#ddd"/><text x="{x:.1f}" y="{height - 6}" text-anchor="middle" {_FONT}>'
            f"{year}</text>"
        )
    for i, p in enumerate(periods):
        y = top + i * row
        x1 = x_of(p.start)
        x2 = x_of(p.end or today)
        until = p.end.isoformat() if p.end else "current"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end" {_FONT}>'
            f"{escape(p.label)}</text>"
            f'<rect class="bar period" x="{x1:.1f}" y="{y + 3}" width="{max(x2 - x1, 2):.1f}" '
            f'height="14" fill="{colour[p.kind]}" data-label="{escape(p.label)}" '
            f'data-value="{p.start.isoformat()}..{until}"><title>{escape(p.name)}, '
            f"{escape(p.label)}: {p.start.isoformat()} .. {until}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
