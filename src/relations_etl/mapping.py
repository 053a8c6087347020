"""Map: rename a raw list's columns to fields, add constants, value maps, and split people."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import polars as pl

from relations_etl.config import FIELDS, Kind, Source
from relations_etl.errors import ColumnsMissingError, ConfigError
from relations_etl.extract import FILE, RAW, ROW, ROW_ERRORS, RawTable
from relations_etl.facts import ERRORS, error_struct
from relations_etl.reference import Reference
from relations_etl.text import clean, clean_expr, shown

RECORD = "_record"
PERSON = "_person"
ERRORS_COLUMN = "_errors"
_CONJUNCTION = r"\s+(?:and|&)\s+"
# a value `clean` may change: a character outside printable ASCII (or a backtick), a space at
# either end, two spaces, or nothing at all
_UNCLEAN = r"[^\x20-\x5f\x61-\x7e]|^ | $|  |^$"


def _field_key(header: str) -> str:
    """How a header is compared with field names: case, outer spaces and the spaces or hyphens
    between words do not count ("Event Date", " event-date " and "EVENT_DATE" are event_date)."""
    return re.sub(r"[\s-]+", "_", header.strip()).lower()


def header_columns(headers: Sequence[str], kind: Kind, source: str, file: str) -> dict[str, str]:
    """The columns of a list whose mapping names none: each header that is a field name."""
    fields = set(FIELDS[kind])
    found: dict[str, str] = {}
    for header in headers:
        field = _field_key(header)
        if field not in fields:
            continue
        twin = next((h for h, f in found.items() if f == field), None)
        if twin is not None:
            raise ConfigError(
                f"columns {twin!r} and {header!r} both name field {field}",
                source=source,
                file=file,
                column=header,
                hint="Give a mapping whose columns: says which column fills the field.",
            )
        found[header] = field
    if headers and not found:
        raise ColumnsMissingError(
            f"no column is mapped: the mapping names no columns and no header is a "
            f"{kind.value} field; its columns are {list(headers)}, the fields "
            f"{list(FIELDS[kind])}",
            source=source,
            file=file,
            hint="Give a mapping with columns: (ingest --mapping), or name the headers after "
            "the fields; see the README section 'Sources and mappings'.",
        )
    return found


def mapped_columns(raw: RawTable, source: Source) -> dict[str, str]:
    """Column -> field: the mapping's columns, or when it names none the headers that are
    field names (a mapping that names columns keeps full control)."""
    if source.mapping.columns:
        return source.mapping.columns
    return header_columns(raw.columns, source.kind, source.name, raw.file)


def _check_columns(raw: RawTable, source: Source, columns: dict[str, str]) -> None:
    wanted = [*columns, *source.mapping.record_id]
    have = set(raw.columns)
    missing = [c for c in wanted if c not in have]
    if missing:
        if have & set(wanted):
            # the list's own header, partly matching: worth showing, escaped and cut short
            listed = [shown(c, quoted=False) for c in raw.columns[:30]]
            more = f" and {len(raw.columns) - 30} more" if len(raw.columns) > 30 else ""
            found = f"its columns are {listed}{more}"
        else:
            # nothing matches: maybe not a list at all (/etc/passwd); its first line is not
            # echoed into messages and logs
            found = (
                f"none of its {len(raw.columns)} column(s) is one the mapping names: is it the "
                "right file, and are options.separator, options.skip_rows and options.sheet "
                "right?"
            )
        raise ColumnsMissingError(
            f"the list lacks column(s) {missing} that the mapping needs; {found}",
            column=missing[0],
            source=source.name,
            file=raw.file,
        )
    mapped = set(columns.values())
    for field, rule in source.mapping.derive.items():
        if rule.source not in mapped and rule.source not in source.mapping.constants:
            raise ConfigError(
                f"derive.{field} reads field {rule.source!r}, which no column or constant fills",
                source=source.name,
                file=raw.file,
            )


def record_expr(raw: RawTable, source: Source) -> pl.Expr:
    """The record id of each raw row: the mapping's record_id columns, else its row (and file)."""
    if RECORD in raw.frame.columns:  # a replayed quarantine row keeps the record id it had
        return pl.col(RECORD)
    ids = source.mapping.record_id
    if ids:
        return pl.concat_str([pl.col(c).fill_null("") for c in ids], separator="|").alias(RECORD)
    row = pl.col(ROW).cast(pl.String)
    if raw.frame.get_column(FILE).n_unique() > 1:
        # rows are numbered per file: the file's name keeps the ids of several files apart
        stem = pl.col(FILE).str.extract(r"([^/]*)/*$")
        return pl.concat_str([stem, pl.lit(":"), row]).alias(RECORD)
    return row.alias(RECORD)


def split_on(values: pl.Series, pattern: str) -> list[list[str]]:
    """Each text split where `pattern` matches, on polars' regex engine (linear time: a user's
    `(a+)+b` cannot backtrack for minutes as it does in Python's `re`)."""
    texts = values.fill_null("")
    marker = next(
        (
            m
            for m in ("\x00", "\x1e", "\ufdd0", "\ufdd1")
            if not texts.str.contains(m, literal=True).any()
        ),
        f"\x00{uuid.uuid4().hex}\x00",
    )
    parts: list[list[str]] = texts.str.replace_all(pattern, marker).str.split(marker).to_list()
    return parts


def _people(
    text: str | None, parts: list[str], joined: list[str], ref: Reference
) -> list[tuple[str | None, str | None, str | None]]:
    """Split 'President X and Prime Minister Y' into people: (title, name, problem) each.

    `parts` is the text split on the list's people separator, `joined` split on "and"/"&".
    """
    if text is None:
        return [(None, None, None)]
    problem = None
    if len(candidates := [clean(p) or "" for p in parts]) > 1:
        splits = [ref.split_title(p) for p in candidates]
        if all(title and name for title, name in splits):
            return [(t, n, None) for t, n in splits]
        first_title, first_name = splits[0]
        # After a comma an untitled part is a name suffix ("Aquino, 3rd", "Whipps, Jr."); after
        # "and" it is someone: "President X and Wizard Y" is neither one person nor two we know.
        after_and = [clean(j) or "" for j in joined[1:]]
        untitled = [p for p in after_and if ref.split_title(p)[0] is None]
        if first_title and first_name and untitled:
            problem = (
                f"{text!r} looks like several people but {untitled[0]!r} starts with no known "
                "title; add the title to titles.csv, or set people_separator for this list"
            )
    title, name = ref.split_title(text)
    return [(title, name, problem)]


def clean_columns(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """`clean_expr` on each column; on its distinct values when they are few (a list repeats
    its countries, titles, dates and names: cleaning each once and mapping back costs a
    fraction of cleaning every row)."""
    cleaned = []
    for name in columns:
        column = frame.get_column(name)
        distinct = column.unique()
        if distinct.len() * 4 > column.len():  # mostly distinct (ids): only values it changes
            changed = column.str.contains(_UNCLEAN).arg_true()
            if changed.len():
                fixed = pl.DataFrame({name: column.gather(changed)}).select(clean_expr(name))
                column = column.scatter(changed, fixed.to_series())
            cleaned.append(column)
            continue
        values = pl.DataFrame({name: distinct}).select(clean_expr(name)).to_series()
        cleaned.append(
            column.replace_strict(distinct, values, default=None, return_dtype=pl.String)
        )
    return frame.with_columns(cleaned)


def apply_mapping(raw: RawTable, source: Source, ref: Reference) -> pl.DataFrame:
    """Turn one raw table into rows of `source.kind` fields (text), one row per person."""
    columns = mapped_columns(raw, source)
    _check_columns(raw, source, columns)
    mapping = source.mapping
    kind = source.kind
    frame = clean_columns(raw.frame, sorted({*columns, *mapping.record_id}))
    selected = [pl.col(column).alias(field) for column, field in columns.items()]
    # errors found while reading (a ragged line) travel with the row; a replayed row has none
    read_errors = (
        pl.col(ROW_ERRORS)
        if ROW_ERRORS in raw.frame.columns
        else pl.lit([], dtype=ERRORS).alias(ROW_ERRORS)
    )
    frame = frame.select(
        *selected,
        pl.col(ROW),
        pl.col(FILE),
        pl.col(RAW),
        record_expr(raw, source),
        read_errors,
    )
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.String).alias(field)
        for field in FIELDS[kind]
        if field not in frame.columns
    )
    frame = frame.with_columns(
        pl.coalesce(pl.col(field), pl.lit(clean(value), dtype=pl.String)).alias(field)
        for field, value in mapping.constants.items()
    )
    frame = _corrections(frame, mapping.corrections)
    for field, table in mapping.values.items():
        # str.lower matches polars' to_lowercase (casefold would turn ß into ss)
        keys = {(clean(k) or "").lower(): v for k, v in table.items()}
        frame = frame.with_columns(
            pl.col(field)
            .str.to_lowercase()
            .replace_strict(
                list(keys), list(keys.values()), default=pl.col(field), return_dtype=pl.String
            )
            .alias(field)
        )
    for field, rule in mapping.derive.items():
        # the first pattern that matches wins, as in a chain of when/then
        derived = pl.lit(rule.default, dtype=pl.String)
        for pattern in reversed(rule.patterns):
            derived = (
                pl.when(pl.col(rule.source).str.contains(pattern.match))
                .then(pl.lit(pattern.value))
                .otherwise(derived)
            )
        frame = frame.with_columns(pl.coalesce(pl.col(field), derived).alias(field))
    frame = frame.with_columns(pl.col(ROW_ERRORS).alias(ERRORS_COLUMN)).drop(ROW_ERRORS)
    if kind is Kind.VISITS:
        return _split_people(frame, mapping.people_separator, ref.for_source(mapping))
    return frame.with_columns(pl.lit(1, dtype=pl.Int32).alias(PERSON))


def append_error(
    frame: pl.DataFrame,
    when: pl.Expr,
    column: pl.Expr,
    check: pl.Expr,
    value: pl.Expr,
    message: pl.Expr,
) -> pl.DataFrame:
    """Add one error to the `_errors` list of the rows where `when` holds (row-wise exprs).

    Only those rows are rebuilt: rewriting the list column of every row with when/then cost
    half a second per call on 250,000 rows, the join of a few new lists a millisecond.
    """
    hit = frame.select(when.fill_null(False)).to_series()
    if not hit.any():
        return frame
    rows = hit.arg_true()
    added = frame[rows].select(
        pl.concat_list(
            ERRORS_COLUMN, pl.concat_list(error_struct(column, check, value, message))
        ).alias("_added")
    )
    new = pl.DataFrame({"_position": rows}).with_columns(added.to_series())
    joined = frame.with_row_index("_position").join(
        new, on="_position", how="left", maintain_order="left"
    )
    return joined.with_columns(pl.coalesce("_added", ERRORS_COLUMN).alias(ERRORS_COLUMN)).drop(
        "_position", "_added"
    )


def _corrections(frame: pl.DataFrame, corrections: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Fixes to named records, kept as data in the mapping: {record: {field: value}}."""
    if not corrections:
        return frame
    fields = sorted({f for fixes in corrections.values() for f in fixes})
    fixes = pl.DataFrame(
        {
            RECORD: list(corrections),
            **{f"_fix_{f}": [clean(corrections[r].get(f)) for r in corrections] for f in fields},
        },
        schema={RECORD: pl.String, **{f"_fix_{f}": pl.String for f in fields}},
    )
    frame = frame.join(fixes, on=RECORD, how="left", maintain_order="left")
    return frame.with_columns([pl.coalesce(f"_fix_{f}", f).alias(f) for f in fields]).drop(
        [f"_fix_{f}" for f in fields]
    )


def _split_people(frame: pl.DataFrame, separator: str | None, ref: Reference) -> pl.DataFrame:
    # one flat row per (visitor text, person): the join below makes one row per person
    visitors = frame.get_column("visitor").unique()
    texts = visitors.to_list()
    parts = split_on(visitors, separator) if separator else [[t or ""] for t in texts]
    joined = split_on(visitors, _CONJUNCTION)
    people = pl.DataFrame(
        [
            (visitor, number, *person)
            for visitor, split, conjoined in zip(texts, parts, joined, strict=True)
            for number, person in enumerate(_people(visitor, split, conjoined, ref), start=1)
        ],
        schema={
            "visitor": pl.String,
            PERSON: pl.Int32,
            "_title": pl.String,
            "_name": pl.String,
            "_problem": pl.String,
        },
        orient="row",
    )
    frame = frame.join(people, on="visitor", how="left", nulls_equal=True, maintain_order="left")
    frame = frame.with_columns(
        pl.coalesce("visitor_title", "_title").alias("visitor_title"),
        pl.coalesce("visitor_name", "_name").alias("visitor_name"),
    )
    return append_error(
        frame,
        pl.col("_problem").is_not_null(),
        pl.lit("visitor"),
        pl.lit("people_split"),
        pl.col("visitor"),
        pl.col("_problem"),
    ).drop("_title", "_name", "_problem")
