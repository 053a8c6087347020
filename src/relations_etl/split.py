"""Split: rows that passed every check become facts; the rest go to quarantine with every reason."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from relations_etl.config import Kind
from relations_etl.extract import FILE, RAW, ROW
from relations_etl.facts import COLUMNS, ERRORS, ID_COLUMN, content_columns, error_struct
from relations_etl.mapping import ERRORS_COLUMN, PERSON, RECORD

RAW_KEYS = "_raw_keys"
REJECTED_SCHEMA = pl.Schema(
    {
        "source_file": pl.String(),
        "source_row": pl.Int64(),
        "source_record": pl.String(),
        "raw": pl.String(),
        "errors": ERRORS,
    }
)


@dataclass(frozen=True)
class Split:
    """Facts ready to load, rejected raw rows, and raw rows dropped as exact in-list repeats."""

    facts: pl.DataFrame
    rejected: pl.DataFrame
    repeated: int


def _raw_key(file: str = FILE, row: str = ROW) -> pl.Expr:
    """The key of a raw row across files: "<file>#<row>"."""
    return pl.format("{}#{}", pl.col(file), pl.col(row))


def split(frame: pl.DataFrame, kind: Kind, source: str) -> Split:
    """Partition by raw row: a raw row loads only if all of its people passed every check."""
    frame = frame.with_columns(
        pl.col(ERRORS_COLUMN).list.len().gt(0).any().over(FILE, ROW).alias("_bad")
    )
    rejected = (
        frame.filter(pl.col("_bad"))
        .group_by(FILE, ROW, maintain_order=True)
        .agg(
            pl.first(RECORD),
            pl.first(RAW),
            pl.col(ERRORS_COLUMN)
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique(maintain_order=True),
        )
        .select(
            pl.col(FILE).alias("source_file"),
            pl.col(ROW).alias("source_row"),
            pl.col(RECORD).alias("source_record"),
            pl.col(RAW).alias("raw"),
            pl.col(ERRORS_COLUMN).alias("errors"),
        )
    )
    good = frame.filter(~pl.col("_bad"))
    identifier = pl.concat_str(
        [
            pl.lit(source + ":"),
            pl.col(RECORD),
            pl.when(pl.col(PERSON) > 1)
            .then(pl.format("#{}", pl.col(PERSON)))
            .otherwise(pl.lit("")),
        ]
    )
    facts = good.select(
        identifier.alias(ID_COLUMN[kind]),
        *[pl.col(c).cast(COLUMNS[kind][c]) for c in content_columns(kind)],
        pl.lit(source).alias("source"),
        pl.col(RECORD).alias("source_record"),
        pl.concat_list(_raw_key()).alias(RAW_KEYS),
        pl.col(FILE),
        pl.col(ROW),
        pl.col(RAW),
    )
    return _repeats(facts, rejected, kind)


def _repeats(facts: pl.DataFrame, rejected: pl.DataFrame, kind: Kind) -> Split:
    """Drop exact repeats of a record id in one list; reject repeats whose content differs."""
    ident = ID_COLUMN[kind]
    content = content_columns(kind)
    first_key = pl.col(RAW_KEYS).first().over(ident)
    repeat = pl.col(RAW_KEYS) != first_key
    if not facts.select(repeat.any()).item():
        return Split(facts.drop(FILE, ROW, RAW), rejected, 0)
    differs = pl.struct(content).hash() != pl.struct(content).hash().first().over(ident)
    marked = facts.with_columns(
        repeat.alias("_repeat"), differs.alias("_differs"), first_key.list.first().alias("_first")
    )
    conflicts = marked.filter(pl.col("_repeat") & pl.col("_differs")).select(
        pl.col(FILE).alias("source_file"),
        pl.col(ROW).alias("source_row"),
        pl.col("source_record"),
        pl.col(RAW).alias("raw"),
        pl.concat_list(
            error_struct(
                pl.lit("source_record"),
                pl.lit("record_unique"),
                pl.col("source_record"),
                pl.format(
                    "record id {} already used by row {} with other content",
                    pl.col("source_record"),
                    pl.col("_first"),
                ),
            )
        ).alias("errors"),
    )
    conflict_keys = conflicts.select(_raw_key("source_file", "source_row")).to_series()
    in_conflict = pl.col(RAW_KEYS).list.first().is_in(conflict_keys.implode())
    # a raw row is a repeat only if all of it repeats; one conflicting person rejects the row
    repeated = (
        marked.filter(pl.col("_repeat") & ~pl.col("_differs") & ~in_conflict)
        .select(pl.col(RAW_KEYS).list.first())
        .n_unique()
    )
    kept = marked.filter(~pl.col("_repeat") & ~in_conflict).drop(
        "_repeat", "_differs", "_first", FILE, ROW, RAW
    )
    return Split(
        kept, pl.concat([rejected, conflicts.unique(["source_file", "source_row"])]), repeated
    )
