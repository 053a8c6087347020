"""Reports of runs as markdown: a batch's counts and first rejected rows (Prefect artifacts)."""

from __future__ import annotations

import polars as pl

from relations_etl.audit import LoadResult


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
