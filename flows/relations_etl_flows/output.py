"""What the CLI prints: result tables, CSV for spreadsheets, one line per batch."""

from __future__ import annotations

import sys

import polars as pl

from relations_etl.load import LoadResult

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


def print_frame(frame: pl.DataFrame, as_csv: bool) -> None:
    """Print a result table, or CSV with formula-like values neutralized."""
    if as_csv:
        sys.stdout.write(neutralize(frame).write_csv())
        return
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=80,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print(frame)


def print_results(results: list[LoadResult]) -> None:
    """One line per batch: its counts, or that it was skipped as unchanged."""
    for r in results:
        # the batch is committed; its Parquet waits for the next run (a full disk, say)
        pending = f"; publish pending: {r.publish_pending}" if r.publish_pending else ""
        if r.unchanged_since:
            print(f"{r.source}: unchanged since batch {r.unchanged_since}, skipped{pending}")
            continue
        print(
            f"{r.source}: read {r.rows_read}, loaded {r.rows_loaded}, "
            f"rejected {r.rows_rejected}, deduplicated {r.rows_deduplicated}{pending}"
        )
