"""Report as terminal text (rich tables) and as markdown, from the same report tables."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from relations_etl.report.data import NUMERIC_COLUMNS, ReportData, Table, tables


def renderables(data: ReportData) -> RenderableType:
    """The report as rich renderables: the title, then one table per section."""
    parts: list[RenderableType] = [Text(data.title, style="bold")]
    parts += [Text(note) for note in data.notes()]
    for table in tables(data):
        if not table.rows:
            parts.append(Text(f"\n{table.title}: {table.note}"))
            continue
        shown = RichTable(
            title=table.title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            min_width=len(table.title),
        )
        for column in table.columns:
            shown.add_column(column, justify="right" if column in NUMERIC_COLUMNS else "left")
        for row in table.rows:
            shown.add_row(*row)
        parts.append(shown)
        if table.note:
            parts.append(Text(table.note, style="italic"))
    return Group(*parts)


def render_text(data: ReportData, width: int = 120) -> str:
    """The report as plain text of at most `width` columns (no colour codes)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(
        renderables(data)
    )
    return buffer.getvalue()


def _cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if not table.rows:
        return [*lines, table.note, ""]
    lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return [*lines, ""]


def render_markdown(data: ReportData) -> str:
    """The report as markdown: a heading, then one table per section."""
    lines = [f"# {data.title}", ""]
    lines += [line for note in data.notes() for line in (f"> {note}", "")]
    for table in tables(data):
        lines += _markdown(table)
    return "\n".join(lines)
