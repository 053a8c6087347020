"""Periods: consecutive yearly rows of one country, body and status become one period."""

from __future__ import annotations

import polars as pl

from relations_etl.split import RAW_KEYS

_GROUP = ["country", "organization", "body", "status"]


def collapse_years(facts: pl.DataFrame) -> pl.DataFrame:
    """Merge year-precision memberships whose years follow each other without a gap."""
    if facts.is_empty():
        return facts
    ordered = facts.sort([*_GROUP, "start_date"], nulls_last=True)
    year_start = pl.col("start_date").dt.year()
    previous_end = pl.col("end_date").dt.year().shift(1).over(_GROUP)
    yearly = (pl.col("start_precision") == "year") & (pl.col("end_precision") == "year")
    joins = (
        yearly & yearly.shift(1).over(_GROUP).fill_null(False) & (year_start == previous_end + 1)
    ).fill_null(False)
    ordered = ordered.with_columns((~joins).cum_sum().alias("_period"))
    return (
        ordered.group_by("_period", maintain_order=True)
        .agg(
            pl.first("membership_id"),
            *[pl.first(c) for c in _GROUP],
            pl.first("start_date"),
            pl.first("start_precision"),
            pl.last("end_date"),
            pl.last("end_precision"),
            pl.col("notes").drop_nulls().unique(maintain_order=True).str.join("; ").alias("notes"),
            pl.first("source"),
            pl.when(pl.len() > 1)
            .then(pl.format("{}..{}", pl.first("source_record"), pl.last("source_record")))
            .otherwise(pl.first("source_record"))
            .alias("source_record"),
            pl.col(RAW_KEYS).list.explode(keep_nulls=False, empty_as_null=False).alias(RAW_KEYS),
        )
        .drop("_period")
        .with_columns(
            pl.when(pl.col("notes") == "").then(None).otherwise(pl.col("notes")).alias("notes")
        )
        .select(facts.columns)
    )
