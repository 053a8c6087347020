"""Map: rename a raw list's columns to fields, add constants, value maps, and split people."""

from __future__ import annotations

import re

import polars as pl

from relations_etl.config import FIELDS, Kind, Source
from relations_etl.errors import ConfigError
from relations_etl.extract import FILE, RAW, ROW, RawTable
from relations_etl.facts import ERRORS
from relations_etl.reference import Reference
from relations_etl.text import clean, clean_expr

RECORD = "_record"
PERSON = "_person"
ERRORS_COLUMN = "_errors"
LINEAGE_COLUMNS = (ROW, FILE, RAW, RECORD, PERSON)


def _check_columns(raw: RawTable, source: Source) -> None:
    wanted = [*source.mapping.columns, *source.mapping.record_id]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise ConfigError(
            f"the mapping names column(s) {missing} that the list does not have; its columns "
            f"are {list(raw.columns)}",
            source=source.name, file=raw.file,
        )
    mapped = set(source.mapping.columns.values())
    for field, rule in source.mapping.derive.items():
        if rule.source not in mapped and rule.source not in source.mapping.constants:
            raise ConfigError(
                f"derive.{field} reads field {rule.source!r}, which no column or constant fills",
                source=source.name, file=raw.file,
            )


def _record_expr(raw: RawTable, source: Source, many_files: bool) -> pl.Expr:
    if RECORD in raw.frame.columns:  # a replayed quarantine row keeps the record id it had
        return pl.col(RECORD)
    ids = source.mapping.record_id
    if ids:
        return pl.concat_str([pl.col(c).fill_null("") for c in ids], separator="|").alias(RECORD)
    row = pl.col(ROW).cast(pl.String)
    if many_files:
        stem = raw.file.rstrip("/").rsplit("/", 1)[-1]
        return pl.concat_str([pl.lit(stem + ":"), row]).alias(RECORD)
    return row.alias(RECORD)


def _people(text: str | None, separator: str | None, ref: Reference,
            titles: dict[str, str]) -> list[dict[str, str | None]]:
    """Split 'President X and Prime Minister Y' into people, each with title and name."""
    if text is None:
        return [{"title": None, "name": None}]
    parts = [text]
    if separator and len(candidates := [clean(p) or "" for p in re.split(separator, text)]) > 1:
        splits = [ref.split_title(p, titles) for p in candidates]
        if all(title and name for title, name in splits):
            return [{"title": t, "name": n} for t, n in splits]
    title, name = ref.split_title(parts[0], titles)
    return [{"title": title, "name": name}]


def apply_mapping(raw: RawTable, source: Source, ref: Reference, *, many_files: bool = False) -> pl.DataFrame:
    """Turn one raw table into rows of `source.kind` fields (text), one row per person."""
    _check_columns(raw, source)
    mapping = source.mapping
    kind = source.kind
    frame = raw.frame.with_columns(
        [clean_expr(c) for c in {*mapping.columns, *mapping.record_id}]
    )
    selected = [pl.col(column).alias(field) for column, field in mapping.columns.items()]
    frame = frame.select(
        *selected, pl.col(ROW), pl.col(FILE), pl.col(RAW), _record_expr(raw, source, many_files)
    )
    for field, value in mapping.constants.items():
        constant = pl.lit(clean(value), dtype=pl.String)
        frame = frame.with_columns(
            pl.coalesce(pl.col(field), constant).alias(field) if field in frame.columns
            else constant.alias(field)
        )
    frame = _corrections(frame, mapping.corrections)
    for field in FIELDS[kind]:
        if field not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(field))
    for field, table in mapping.values.items():
        keys = {(clean(k) or "").casefold(): v for k, v in table.items()}
        frame = frame.with_columns(
            pl.col(field).str.to_lowercase()
            .replace_strict(list(keys), list(keys.values()), default=pl.col(field),
                            return_dtype=pl.String)
            .alias(field)
        )
    for field, rule in mapping.derive.items():
        derived: pl.Expr | None = None
        chain = None
        for pattern in rule.patterns:
            condition = pl.col(rule.source).str.contains(pattern.match)
            chain = (pl.when(condition) if chain is None else chain.when(condition)).then(
                pl.lit(pattern.value)
            )
        if chain is not None:
            derived = chain.otherwise(pl.lit(rule.default, dtype=pl.String))
        if derived is not None:
            frame = frame.with_columns(pl.coalesce(pl.col(field), derived).alias(field))
    if kind is Kind.VISITS:
        frame = _split_people(frame, mapping.people_separator, ref, mapping.titles)
    else:
        frame = frame.with_columns(pl.lit(1, dtype=pl.Int32).alias(PERSON))
    return frame.with_columns(pl.lit([], dtype=ERRORS).alias(ERRORS_COLUMN))


def _corrections(frame: pl.DataFrame, corrections: dict[str, dict[str, str]]) -> pl.DataFrame:
    """A steward's fixes to named records, kept as data in the mapping ({record: {field: value}})."""
    if not corrections:
        return frame
    fields = sorted({f for fixes in corrections.values() for f in fixes})
    fixes = pl.DataFrame(
        {RECORD: list(corrections),
         **{f"_fix_{f}": [clean(corrections[r].get(f)) for r in corrections] for f in fields}},
        schema={RECORD: pl.String, **{f"_fix_{f}": pl.String for f in fields}},
    )
    for field in fields:
        if field not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(field))
    frame = frame.join(fixes, on=RECORD, how="left", maintain_order="left")
    return frame.with_columns(
        [pl.coalesce(f"_fix_{f}", f).alias(f) for f in fields]
    ).drop([f"_fix_{f}" for f in fields])


def _split_people(frame: pl.DataFrame, separator: str | None, ref: Reference,
                  titles: dict[str, str]) -> pl.DataFrame:
    person = pl.Struct({"title": pl.String, "name": pl.String})
    unique = frame.get_column("visitor").unique().to_list()
    people = pl.DataFrame(
        {"visitor": unique,
         "_people": [_people(v, separator, ref, titles) for v in unique]},
        schema={"visitor": pl.String, "_people": pl.List(person)},
    )
    frame = frame.join(people, on="visitor", how="left", nulls_equal=True, maintain_order="left")
    frame = frame.with_columns(
        pl.int_ranges(1, pl.col("_people").list.len() + 1, dtype=pl.Int32).alias(PERSON)
    ).explode(["_people", PERSON])
    return frame.with_columns(
        pl.coalesce(pl.col("visitor_title"), pl.col("_people").struct.field("title"))
        .alias("visitor_title"),
        pl.coalesce(pl.col("visitor_name"), pl.col("_people").struct.field("name"))
        .alias("visitor_name"),
    ).drop("_people")
