"""Parquet: read in the reader child process (readers/isolated.py), every column as text."""

from __future__ import annotations

import polars as pl

from relations_etl.readers.isolated import run_isolated
from relations_etl.readers.isolated_readers import parquet_text
from relations_etl.settings import Settings


def read_parquet(data: bytes, *, uri: str, source: str, settings: Settings) -> pl.DataFrame:
    """A Parquet file as a text table; a MAP, LIST or STRUCT column becomes JSON text."""
    table = run_isolated(
        parquet_text,
        (data, uri, source, settings.max_columns, settings.max_decompressed_bytes),
        what="Parquet",
        settings=settings,
        source=source,
        file=uri,
    )
    return pl.DataFrame(pl.from_arrow(table))
