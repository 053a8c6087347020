"""What the CLI prints: result tables fitted to the terminal, CSV and JSON, one line per batch."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from typing import TextIO

import polars as pl
from rich import box
from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from relations_etl.audit import LoadResult
from relations_etl_flows.formats import Format

# a table is for reading: past this many rows it shows the first ones and says how to get all
TABLE_ROWS = 500
# a long value wraps in a column this wide before the table gives way to one block per row
WRAP_AT = 24
# width of a table written to a pipe or a file, unless COLUMNS says otherwise
PIPE_WIDTH = 120

# a spreadsheet runs a cell that starts with one of these as a formula (CSV injection)
_FORMULA_START = r"^[=+\-@\t\r]"


def neutralize(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix text values that a spreadsheet would run as a formula with a single quote."""
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.concat_str(pl.lit("'"), pl.col(name)))
        .otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )


def width() -> int:
    """Columns to fill: the terminal's (or COLUMNS), else PIPE_WIDTH."""
    return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns


def console(file: TextIO | None = None) -> Console:
    """A console that prints text as it is: no markup, emoji or highlighting of the data."""
    out = file or sys.stdout
    return Console(
        file=out,
        width=width(),
        markup=False,
        emoji=False,
        highlight=False,
        color_system="auto" if out.isatty() else None,
    )


def nested_as_json_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists, arrays, structs and maps as JSON text, each value as `--format json` prints it."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if not nested:
        return frame
    # polars' own JSON writer, so a cell holds what the json format prints (dates as ISO text)
    rows = [json.loads(line) for line in frame.select(nested).write_ndjson().splitlines()]
    return frame.with_columns(
        pl.Series(
            name,
            [None if r[name] is None else json.dumps(r[name], ensure_ascii=False) for r in rows],
            dtype=pl.String,
        )
        for name in nested
    )


def _json_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimals as JSON numbers where no digit is lost (sum() of integers is a DECIMAL(38,0))."""
    casts = []
    for name, dtype in frame.schema.items():
        if not isinstance(dtype, pl.Decimal):
            continue
        if dtype.scale == 0:
            try:
                frame.get_column(name).cast(pl.Int64)
            except pl.exceptions.InvalidOperationError:
                continue  # past 64 bits: the digits stay text
            casts.append(pl.col(name).cast(pl.Int64))
        elif (dtype.precision or 38) <= 15:  # a double holds 15 significant digits exactly
            casts.append(pl.col(name).cast(pl.Float64))
    return frame.with_columns(casts) if casts else frame


def _cells(frame: pl.DataFrame) -> list[tuple[str | None, ...]]:
    """The first TABLE_ROWS rows as text, nested values as JSON text, NULL as None."""
    return nested_as_json_text(frame.head(TABLE_ROWS)).select(pl.all().cast(pl.String)).rows()


def _cell(value: str | None) -> Text:
    return Text("NULL", style="dim") if value is None else Text(value)


def _min_width(name: str, values: list[str | None]) -> int:
    """Narrowest a column may get: its header whole, its values unwrapped up to WRAP_AT."""
    longest = max((len(line) for v in values for line in (v or "NULL").splitlines()), default=0)
    return max(len(name), min(longest, WRAP_AT))


def _table(frame: pl.DataFrame, rows: list[tuple[str | None, ...]]) -> Table | None:
    """The rows as a table, or None when even its narrowest columns are wider than the console."""
    minimums = [_min_width(name, [row[i] for row in rows]) for i, name in enumerate(frame.columns)]
    # SIMPLE_HEAD puts one space of padding each side of a column and one between columns
    if sum(minimums) + 3 * len(minimums) + 1 > width():
        return None
    shown = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False)
    for (name, dtype), least in zip(frame.schema.items(), minimums, strict=True):
        shown.add_column(
            Text(name),
            justify="right" if dtype.is_numeric() else "left",
            min_width=least,
            overflow="fold",  # only a word longer than its column is broken
        )
    for row in rows:
        shown.add_row(*(_cell(v) for v in row))
    return shown


def _records(frame: pl.DataFrame, rows: list[tuple[str | None, ...]]) -> list[RenderableType]:
    """Rows too wide for a table, one block each: column name, then its value (psql's \\x)."""
    blocks: list[RenderableType] = []
    for number, row in enumerate(rows, start=1):
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for name, value in zip(frame.columns, row, strict=True):
            block.add_row(Text(name), _cell(value))
        blocks += [Rule(f"row {number}", align="left", characters="-"), block]
    return blocks


def print_frame(frame: pl.DataFrame, fmt: Format, file: TextIO | None = None) -> None:
    """Print a result as a table fitted to the terminal (one block per row when too wide), as
    CSV (formula-like text neutralized, nested values as JSON text) or as one JSON array of
    objects (nested values as JSON, dates as ISO text)."""
    out = file or sys.stdout
    if fmt == "csv":
        out.write(neutralize(nested_as_json_text(frame)).write_csv())
    elif fmt == "json":
        out.write(_json_numbers(frame).write_json())
        out.write("\n")
    else:
        rows = _cells(frame)
        as_table = _table(frame, rows)
        shown: list[RenderableType] = [as_table] if as_table is not None else _records(frame, rows)
        if frame.height == 0:
            shown.append(Text("(no rows)", style="dim"))
        elif frame.height > TABLE_ROWS:
            shown.append(
                Text(
                    f"{frame.height} rows, the first {TABLE_ROWS} shown: `--format csv` or "
                    "`--format json` prints them all.",
                    style="dim",
                )
            )
        _emit(out, shown)
    out.flush()


def _emit(out: TextIO, renderables: list[RenderableType]) -> None:
    """Print to a terminal as rich does; to a pipe or file without the padding at line ends."""
    shown = console(out)
    if out.isatty():
        for renderable in renderables:
            shown.print(renderable)
        return
    with shown.capture() as captured:
        for renderable in renderables:
            shown.print(renderable)
    out.write("\n".join(line.rstrip() for line in captured.get().split("\n")))


def print_more(shown: int, total: int, noun: str, fmt: Format) -> None:
    """Say how many of `total` rows a limit left out, and how to see them: under a table on
    stdout, on stderr for CSV and JSON (whose stdout stays the data alone). Nothing when none."""
    if shown >= total:
        return
    rest = total - shown
    line = (
        f"{shown} of {total} {noun}s shown; {rest} more {noun}{'s' if rest != 1 else ''}: "
        "`--limit 0` shows all, `--limit N` the first N"
    )
    out = sys.stdout if fmt == "table" else sys.stderr
    print(line, file=out, flush=True)


def print_paragraphs(lines: list[str], indent: int = 0, file: TextIO | None = None) -> None:
    """Lines of prose, wrapped at word boundaries to the terminal's width, each indented."""
    _emit(file or sys.stdout, [Padding(Text(line), (0, 0, 0, indent)) for line in lines])


def error_paragraph(text: str, stream: TextIO) -> str:
    """An error for `stream`: wrapped at words for a terminal, one line per line for a log."""
    if not stream.isatty() or "\n" in text:
        return text  # a log keeps one line; DuckDB's caret under a query keeps its place
    return "\n".join(
        textwrap.fill(line, width(), subsequent_indent="  ", break_long_words=False)
        for line in text.splitlines()
    )


def print_results(results: list[LoadResult]) -> None:
    """One line per batch: its counts, or that it was skipped as unchanged."""
    for r in results:
        # the batch is committed; its Parquet waits for the next run (a full disk, say)
        pending = f"; publish pending: {r.publish_pending}" if r.publish_pending else ""
        if r.unchanged_since:
            print(f"{r.source}: unchanged since batch {r.unchanged_since}, skipped{pending}")
            continue
        # dropped by the mapping's own rules: shown when there are any, so the counts add up
        dropped = f", dropped {r.rows_dropped}" if r.rows_dropped else ""
        print(
            f"{r.source}: read {r.rows_read}, loaded {r.rows_loaded}, "
            f"rejected {r.rows_rejected}, deduplicated {r.rows_deduplicated}{dropped}"
            f"{f', retired {r.rows_retired}' if r.rows_retired else ''}{pending}"
        )
