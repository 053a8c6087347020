"""Map: unpivot and drop rows, rename columns to fields, add constants and values, split people."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import polars as pl

from relations_etl.config import FIELDS, Columns, Drop, Kind, Source, Unpivot
from relations_etl.envelope import (
    ERRORS,
    ERRORS_COLUMN,
    FILE,
    PERSON,
    RAW,
    RECORD,
    ROW,
    ROW_ERRORS,
    append_error,
)
from relations_etl.errors import ColumnsMissingError, ConfigError
from relations_etl.rawtable import RawTable
from relations_etl.reasons import Reason
from relations_etl.reference import Reference
from relations_etl.text import clean, clean_expr, shown

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
    """Column -> field: the mapping's columns (with an unpivot's name and value), or when it
    names none the headers that are field names, an unpivot's name and value among them (a
    mapping that names columns keeps full control)."""
    if source.mapping.columns:
        return source.mapping.fields_from_columns()
    return header_columns(raw.columns, source.kind, source.name, raw.file)


def _number(text: str) -> float | None:
    """The number a mapping key writes ('1', '-9', '2.0'), or None for a word."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return float(number) if number.is_finite() else None


def _numeric(expr: pl.Expr) -> pl.Expr:
    """A cell as a number where it writes one ("1.0", "-9", "2e3"), else null."""
    number = expr.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def value_map(column: str, table: dict[str, str]) -> pl.Expr:
    """A cell replaced by its entry in `table`: compared as text (case and spaces aside), else
    as a number where both sides are numbers ("1.0" finds the key "1"); unmatched, unchanged."""
    keys = {(clean(k) or "").lower(): v for k, v in table.items()}
    # str.lower matches polars' to_lowercase (casefold would turn ß into ss)
    by_text = (
        pl.col(column)
        .str.to_lowercase()
        .replace_strict(list(keys), list(keys.values()), default=None, return_dtype=pl.String)
    )
    numbers: dict[float, str] = {}
    for k, v in keys.items():
        number = _number(k)
        if number is not None:
            numbers.setdefault(number, v)
    if not numbers:
        return pl.coalesce(by_text, pl.col(column)).alias(column)
    by_number = _numeric(pl.col(column)).replace_strict(
        list(numbers), list(numbers.values()), default=None, return_dtype=pl.String
    )
    return pl.coalesce(by_text, by_number, pl.col(column)).alias(column)


def _is_one_of(frame: pl.DataFrame, column: str, values: list[str]) -> pl.Expr:
    """Whether a cell (cleaned) is one of `values`, numbers compared as numbers, '' empty.

    Decided once per distinct cell in Python (a rule's column holds a list's codes: a few
    distinct values in millions of cells) and joined back with `is_in`."""
    texts = {(clean(v) or "").lower() for v in values}
    numbers = {n for n in map(_number, texts - {""}) if n is not None}
    hits = []
    for cell in frame.get_column(column).drop_nulls().unique().to_list():
        text = (clean(cell) or "").lower()
        if text in texts or (text and numbers and _number(text) in numbers):
            hits.append(cell)
    hit = pl.col(column).is_in(pl.Series(hits, dtype=pl.String))
    if "" in texts:
        hit = hit | pl.col(column).is_null()
    return hit.fill_null(False)


@dataclass(frozen=True)
class Shaped:
    """A raw table in the shape its mapping reads: unpivoted if asked, dropped rows removed.

    `read` counts rows in the list's own unit (cells once unpivoted), dropped rows included;
    `dropped` counts the rows each `drop` rule removed, by reason.
    """

    table: RawTable
    read: int
    dropped: dict[str, int]


def reshape(raw: RawTable, source: Source) -> Shaped:
    """Apply a mapping's `unpivot` and `drop` to one raw table (chunk by chunk alike: both work
    row by row, and a cell's row number depends only on its raw row and column)."""
    mapping = source.mapping
    table = raw
    # a replayed quarantine row (it carries its record id) is a cell already
    spec = None if RECORD in raw.frame.columns else mapping.unpivot
    if spec is not None:
        table = _unpivot(raw, spec, source.name)
    read = table.frame.height
    dropped: dict[str, int] = {}
    if mapping.drop:
        table, dropped = _drop(table, source)
    if spec is not None:
        # each cell's row as read, written only for the cells kept (a panel drops most)
        frame = table.frame.with_columns(pl.struct(table.columns).struct.json_encode().alias(RAW))
        table = RawTable(frame, table.file, table.content_hash, table.columns)
    return Shaped(table, read, dropped)


def _chosen(raw: RawTable, spec: Unpivot, source: str) -> list[str]:
    headers = list(raw.columns)
    if isinstance(spec.columns, Columns):
        named = spec.columns.exclude
        chosen = headers
        if spec.columns.match is not None:
            hits = pl.Series(headers, dtype=pl.String).str.contains(spec.columns.match)
            chosen = [h for h, hit in zip(headers, hits.to_list(), strict=True) if hit]
        chosen = [h for h in chosen if h not in set(named)]
    else:
        named = spec.columns
        chosen = [h for h in headers if h in set(named)]
    missing = [c for c in named if c not in set(headers)]
    if missing or not chosen:
        listed = [shown(c, quoted=False) for c in headers[:30]]
        raise ColumnsMissingError(
            f"unpivot names column(s) {missing} that the list lacks; its columns are {listed}"
            if missing
            else f"unpivot takes no column of the list; its columns are {listed}",
            column=missing[0] if missing else None,
            source=source,
            file=raw.file,
            hint="Name the columns as the list's header writes them (unpivot.columns: a list, "
            "{exclude: [...]} or {match: REGEX}).",
        )
    return chosen


def _unpivot(raw: RawTable, spec: Unpivot, source: str) -> RawTable:
    """One row per chosen cell: the other columns, the header in `name`, the cell in `value`;
    cells are numbered row by row: cell k of raw row r is row (r - 1) * columns + k. Its `_raw`
    is written by `reshape`, after the drop."""
    chosen = _chosen(raw, spec, source)
    kept = [c for c in raw.columns if c not in set(chosen)]
    clash = [c for c in (spec.name, spec.value) if c in set(kept)]
    if clash:
        raise ConfigError(
            f"unpivot.name/value {clash[0]!r} is also a column the list keeps",
            source=source,
            file=raw.file,
            column=clash[0],
            hint="Give the unpivoted name or value another name, or unpivot that column too.",
        )
    position = {c: i for i, c in enumerate(chosen, start=1)}
    envelope = [ROW, FILE, ROW_ERRORS, "_file_order"]
    long = (
        raw.frame.with_columns(pl.col(FILE).rle_id().alias("_file_order"))
        .select(*kept, *chosen, *envelope)
        .unpivot(
            on=chosen, index=[*kept, *envelope], variable_name=spec.name, value_name=spec.value
        )
    )
    cell = pl.col(spec.name).replace_strict(position, return_dtype=pl.Int64)
    columns = (*kept, spec.name, spec.value)
    frame = (
        long.with_columns(((pl.col(ROW) - 1) * len(chosen) + cell).alias(ROW))
        # row-major as the list reads, its files in their order
        .sort("_file_order", ROW, maintain_order=True)
        .drop("_file_order")
    )
    return RawTable(frame, raw.file, raw.content_hash, columns)


def _drop(raw: RawTable, source: Source) -> tuple[RawTable, dict[str, int]]:
    """Remove the rows a `drop` rule matches (the first matching rule counts them)."""
    mapping = source.mapping
    from_field = {f: c for c, f in mapped_columns(raw, source).items()}
    have = set(raw.columns)
    reason = pl.lit(None, dtype=pl.String)
    for rule in reversed(mapping.drop):
        reason = (
            pl.when(_rule(rule, have, from_field, raw, source.name))
            .then(pl.lit(rule.reason))
            .otherwise(reason)
        )
    marked = raw.frame.with_columns(reason.alias("_dropped"))
    counts = marked.filter(pl.col("_dropped").is_not_null()).group_by("_dropped").len()
    dropped = {str(r): int(n) for r, n in counts.iter_rows()}
    kept = marked.filter(pl.col("_dropped").is_null()).drop("_dropped")
    return RawTable(kept, raw.file, raw.content_hash, raw.columns), dropped


def _rule(
    rule: Drop, have: set[str], from_field: dict[str, str], raw: RawTable, source: str
) -> pl.Expr:
    condition = pl.lit(True)
    for name, values in rule.when.items():
        column = name if name in have else from_field.get(name)
        if column is None or column not in have:
            raise ColumnsMissingError(
                f"drop rule {rule.reason!r} reads {name!r}, which is neither a column of the "
                "list nor a field a column fills",
                column=name,
                source=source,
                file=raw.file,
            )
        condition = condition & _is_one_of(raw.frame, column, values)
    return condition


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
    """`clean_expr` on each column, only on the values it may change (`_UNCLEAN`); those are
    cleaned once per distinct value when they repeat (a list repeats its countries, titles,
    dates and names). Most lists are clean text: one scan per column, nothing rebuilt."""
    cleaned = []
    for name in columns:
        column = frame.get_column(name)
        changed = column.str.contains(_UNCLEAN).arg_true()
        if changed.len():
            unclean = column.gather(changed)
            distinct = unclean.unique()
            if distinct.len() * 4 > unclean.len():
                fixed = unclean.to_frame().select(clean_expr(name)).to_series()
            else:
                values = distinct.to_frame().select(clean_expr(name)).to_series()
                fixed = unclean.replace_strict(distinct, values)
            column = column.scatter(changed, fixed)
        cleaned.append(column)
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
    frame = frame.with_columns(value_map(field, table) for field, table in mapping.values.items())
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
        pl.lit(Reason.PEOPLE_SPLIT),
        pl.col("visitor"),
        pl.col("_problem"),
    ).drop("_title", "_name", "_problem")
