"""Normalize: parse dates with precision and resolve countries, organizations and titles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import polars as pl

from relations_etl.config import COUNTRY_FIELDS, CodeSystem, Kind, Source
from relations_etl.dates import DateError, Order, parse_date
from relations_etl.envelope import ERROR_FIELDS, RowError, append_error, row_error
from relations_etl.facts import EVENTS, METRICS, ROLES, STATUSES, VISIT_TYPES
from relations_etl.numbers import parse_whole
from relations_etl.reasons import Reason
from relations_etl.reference import Reference

DATE_FIELDS: dict[Kind, tuple[tuple[str, bool], ...]] = {
    Kind.VISITS: (("start_date", False), ("end_date", True)),
    Kind.MEMBERSHIPS: (("start_date", False), ("end_date", True)),
    Kind.RELATIONS: (("event_date", False),),
    Kind.REPORTED_TOTALS: (("published_on", False),),
}
ENUM_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: ("visitor_role", "visit_type"),
    Kind.MEMBERSHIPS: ("status",),
    Kind.RELATIONS: ("event",),
    Kind.REPORTED_TOTALS: ("metric",),
}
_ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "visitor_role": ROLES,
    "visit_type": VISIT_TYPES,
    "status": STATUSES,
    "event": EVENTS,
    "metric": METRICS,
}
# whole-number fields with the range they are read in (a year past Int32 must not break a cast)
WHOLE_FIELDS: dict[Kind, tuple[tuple[str, int, int], ...]] = {
    Kind.REPORTED_TOTALS: (("year", 1000, 2999), ("value", 0, 10**15 - 1)),
}
# a visit or an event is a fact that happened: a date after today is a typo or a plan
FUTURE_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: ("start_date",),
    Kind.MEMBERSHIPS: (),
    Kind.RELATIONS: ("event_date",),
    Kind.REPORTED_TOTALS: ("published_on",),
}
Answer = tuple[dict[str, Any], RowError | None]


def _lookup(
    frame: pl.DataFrame,
    keys: list[str],
    outputs: dict[str, pl.DataType],
    resolve: Callable[..., Answer],
) -> pl.DataFrame:
    """Resolve each distinct combination of `keys` once in Python and join the answers back.

    Answers travel as plain columns (one per output and per error field) because building
    nested values row by row in polars costs orders of magnitude more (see bench/README.md).
    """
    distinct = frame.select(keys).unique(maintain_order=True)
    answers: dict[str, list[Any]] = {name: [] for name in (*outputs, *ERROR_FIELDS)}
    for row in distinct.iter_rows():
        values, error = resolve(*row)
        for name in outputs:
            answers[name].append(values.get(name))
        for name in ERROR_FIELDS:
            answers[name].append(error[name] if error else None)
    errors = {f"_err_{name}": answers[name] for name in ERROR_FIELDS}
    table = distinct.with_columns(
        *(pl.Series(name, answers[name], dtype=dtype) for name, dtype in outputs.items()),
        *(pl.Series(name, values, dtype=pl.String) for name, values in errors.items()),
    )
    joined = frame.join(table, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return append_error(
        joined,
        pl.col("_err_check").is_not_null(),
        *(pl.col(f"_err_{name}") for name in ERROR_FIELDS),
    ).drop(list(errors))


def _dates(frame: pl.DataFrame, kind: Kind, source: Source, default_order: Order) -> pl.DataFrame:
    order: Order = source.mapping.dates.order or default_order
    excel = source.mapping.dates.excel_serial
    pivot = source.mapping.dates.century_pivot
    if kind is Kind.MEMBERSHIPS:  # a `year` fills both ends of a membership
        frame = frame.with_columns(
            pl.coalesce("start_date", "year").alias("start_date"),
            pl.coalesce("end_date", "year").alias("end_date"),
        )
    for field, end in DATE_FIELDS[kind]:
        # start_date -> start_precision, published_on -> published_precision
        precision = field.removesuffix("_date").removesuffix("_on") + "_precision"

        def parse(
            text: str | None, field: str = field, end: bool = end, precision: str = precision
        ) -> Answer:
            if text is None:
                return {}, None
            try:
                parsed = parse_date(
                    text, order=order, excel_serial=excel, end=end, century_pivot=pivot
                )
            except DateError as exc:
                return {}, row_error(field, Reason.DATE_FORMAT, text, str(exc))
            return {field + "_parsed": parsed.date, precision: parsed.precision}, None

        fast, fast_precision = plain_dates(pl.col(field), end)
        frame = frame.with_columns(fast.alias("_fast"), fast_precision.alias("_fast_precision"))
        # only the texts the vectorized forms did not take are parsed one distinct value at a time
        frame = frame.with_columns(
            pl.when(pl.col("_fast").is_null()).then(pl.col(field)).alias("_slow")
        )
        frame = _lookup(
            frame, ["_slow"], {field + "_parsed": pl.Date(), precision: pl.String()}, parse
        )
        frame = frame.with_columns(
            pl.coalesce("_fast", field + "_parsed").alias(field),
            pl.coalesce("_fast_precision", precision).alias(precision),
        ).drop("_fast", "_fast_precision", "_slow", field + "_parsed")
    return _not_in_future(frame, kind)


_PLAIN_DAY = r"^[12][0-9]{3}-[0-9]{2}-[0-9]{2}$"  # ASCII digits: polars' \d is Unicode
_PLAIN_YEAR = r"^[12][0-9]{3}$"


def plain_dates(text: pl.Expr, end: bool) -> tuple[pl.Expr, pl.Expr]:
    """The date and precision of the two commonest forms, YYYY-MM-DD and YYYY, as vectorized
    expressions; null where the text is in another form or not a calendar date, for
    `parse_date` to take (it gives these forms the same answer: years 1000-2999, Jan 1 or
    Dec 31 of a year by `end`)."""
    text = text.cast(pl.String)
    day = pl.when(text.str.contains(_PLAIN_DAY)).then(text.str.to_date("%Y-%m-%d", strict=False))
    year = text.cast(pl.Int32, strict=False)
    year_date = pl.when(text.str.contains(_PLAIN_YEAR)).then(
        pl.date(year, 12, 31) if end else pl.date(year, 1, 1)
    )
    date = pl.coalesce(day, year_date)
    precision = (
        pl.when(day.is_not_null())
        .then(pl.lit("day"))
        .when(year_date.is_not_null())
        .then(pl.lit("year"))
    )
    return date, precision


def _not_in_future(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    # one day of slack: a list kept east of UTC may already be on tomorrow's date
    latest = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    for field in FUTURE_FIELDS[kind]:
        frame = append_error(
            frame,
            pl.col(field) > pl.lit(latest),
            pl.lit(field),
            pl.lit(Reason.NOT_IN_FUTURE),
            pl.col(field).cast(pl.String),
            pl.format(
                "{} {} is after today; a list records what happened", pl.lit(field), pl.col(field)
            ),
        )
    return frame


def _whole_numbers(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    for field, low, high in WHOLE_FIELDS.get(kind, ()):

        def parse(text: str | None, field: str = field, low: int = low, high: int = high) -> Answer:
            if text is None:
                return {}, None
            try:
                number = parse_whole(text)
            except ValueError as exc:
                return {}, row_error(field, Reason.WHOLE_NUMBER, text, str(exc))
            if not low <= number <= high:
                message = f"{field} {text!r} is not in {low}..{high}"
                return {}, row_error(field, Reason.IN_RANGE, text, message)
            return {field + "_parsed": number}, None

        frame = _lookup(frame, [field], {field + "_parsed": pl.Int64()}, parse)
        frame = frame.with_columns(pl.col(field + "_parsed").alias(field)).drop(field + "_parsed")
    return frame


def _visitor_organizations(frame: pl.DataFrame, ref: Reference) -> pl.DataFrame:
    """Lists often put "United Nations" in the visitor's country column: move such labels."""
    labels = frame.filter(pl.col("visitor_organization").is_null()).get_column("visitor_country")
    moved = [
        label
        for label in labels.drop_nulls().unique().to_list()
        if ref.resolve_country(label, None).check == Reason.COUNTRY_KNOWN
        and ref.resolve_organization(label) is not None
    ]
    if not moved:
        return frame
    is_moved = pl.col("visitor_organization").is_null() & pl.col("visitor_country").is_in(moved)
    return frame.with_columns(
        pl.when(is_moved)
        .then(pl.col("visitor_country"))
        .otherwise(pl.col("visitor_organization"))
        .alias("visitor_organization"),
        pl.when(is_moved).then(None).otherwise(pl.col("visitor_country")).alias("visitor_country"),
    )


def _countries(frame: pl.DataFrame, kind: Kind, ref: Reference, source: Source) -> pl.DataFrame:
    day_field = DATE_FIELDS[kind][0][0]
    if kind is Kind.VISITS and "visitor_country" not in source.mapping.codes:
        frame = _visitor_organizations(frame, ref)
    for field in COUNTRY_FIELDS[kind]:
        system: CodeSystem = source.mapping.codes.get(field, "iso3")

        def resolve(
            label: str | None,
            day: dt.date | None,
            until: dt.date | None,
            field: str = field,
            system: CodeSystem = system,
        ) -> Answer:
            if label is None:
                return {}, None
            found = ref.resolve_code(system, label, day, until)
            if found.code is None:
                return {}, row_error(
                    field, found.check or Reason.COUNTRY_KNOWN, label, found.error or "unresolved"
                )
            return {field + "_code": found.code}, None

        # most labels mean the same on every day: resolve those once, not once per date
        labels = frame.get_column(field).drop_nulls().unique().to_list()
        dated = [label for label in labels if ref.depends_on_date(label, system)]
        # a date known to the year or month is looked up on its first day, and on the rest of
        # its span if nothing holds that day
        is_dated = pl.col(field).is_in(dated)
        frame = frame.with_columns(
            pl.when(is_dated).then(pl.col(day_field)).alias("_day"),
            pl.when(is_dated)
            .then(_window(day_field, _precision(day_field), last=True))
            .alias("_until"),
        )
        frame = _lookup(frame, [field, "_day", "_until"], {field + "_code": pl.String()}, resolve)
        frame = _existed(frame, kind, field, ref)
        frame = frame.with_columns(pl.col(field + "_code").alias(field)).drop(
            field + "_code", "_day", "_until"
        )
    return frame


def _window(date: str, precision: str, last: bool) -> pl.Expr:
    """The first (or last) day a date stands for at its precision: "1918" is 1918-01-01 to
    1918-12-31, "1918-10" the month; a date without precision stands for itself."""
    column = pl.col(date)
    if last:
        year_end = pl.date(column.dt.year(), 12, 31)
        month_end = column.dt.month_end()
    else:
        year_end = column.dt.truncate("1y")
        month_end = column.dt.month_start()
    return (
        pl.when(pl.col(precision) == "year")
        .then(year_end)
        .when(pl.col(precision) == "month")
        .then(month_end)
        .otherwise(column)
    )


def _existed(frame: pl.DataFrame, kind: Kind, field: str, ref: Reference) -> pl.DataFrame:
    """Flag a resolved country whose state did not exist during the whole period, each end at
    its precision: Czechoslovakia (from 1918-10-28) in a spell starting "1918" passes; Serbia
    and Montenegro (to 2006-06-03) in a membership running to 2014 does not, nor in an open
    (current) membership."""
    start = DATE_FIELDS[kind][0][0]
    # a membership is a standing over its whole period; a visit is checked on its start (a
    # trip that ends after a state's last day was still a trip to it)
    ends = [f for f, end in DATE_FIELDS[kind] if end] if kind is Kind.MEMBERSHIPS else []
    code = field + "_code"
    valid = ref.validity_frame().rename(
        {"code": code, "name": "_state", "valid_from": "_from", "valid_to": "_to"}
    )
    dated = valid.filter(pl.col("_from").is_not_null() | pl.col("_to").is_not_null())
    dated = dated.join(frame.select(pl.col(code).unique()), on=code, how="semi")
    if dated.is_empty():  # no state of this batch has dates (most lists of today's world)
        return frame
    frame = frame.join(dated, on=code, how="left", maintain_order="left")
    start_precision = _precision(start)
    begins_by = _window(start, start_precision, last=True)
    today = dt.datetime.now(dt.UTC).date()
    if ends:
        end = ends[0]
        # an open membership is current
        lasts_to = pl.coalesce(_window(end, _precision(end), last=False), pl.lit(today))
        shown_end = pl.coalesce(pl.col(end).cast(pl.String), pl.lit("today (the period is open)"))
    else:
        lasts_to = _window(start, start_precision, last=False)
        shown_end = pl.col(start).cast(pl.String)
    too_early = pl.col("_from").is_not_null() & (pl.col("_from") > begins_by)
    too_late = pl.col("_to").is_not_null() & (pl.col("_to") < lasts_to)
    span = pl.format(
        "{}..{}",
        pl.coalesce(pl.col("_from").cast(pl.String), pl.lit("…")),
        pl.coalesce(pl.col("_to").cast(pl.String), pl.lit("…")),
    )
    shown_start = (
        pl.when(pl.col(start_precision) == "year")
        .then(pl.col(start).dt.year().cast(pl.String))
        .when(pl.col(start_precision) == "month")
        .then(pl.col(start).dt.strftime("%Y-%m"))
        .otherwise(pl.col(start).cast(pl.String))
    )
    frame = append_error(
        frame,
        (too_early | too_late).fill_null(False),
        pl.lit(field),
        pl.lit(Reason.COUNTRY_AT_DATE),
        pl.col(field),
        pl.when(too_early)
        .then(
            pl.format(
                "country '{}' resolves to {} ({}), which did not exist yet in {} (valid {})",
                pl.col(field),
                pl.col(code),
                pl.col("_state"),
                shown_start,
                span,
            )
        )
        .otherwise(
            pl.format(
                "country '{}' resolves to {} ({}), which had ended before {} (valid {})",
                pl.col(field),
                pl.col(code),
                pl.col("_state"),
                shown_end,
                span,
            )
        ),
    )
    return frame.drop("_state", "_from", "_to")


def _precision(date_field: str) -> str:
    return date_field.removesuffix("_date").removesuffix("_on") + "_precision"


def _organizations(frame: pl.DataFrame, kind: Kind, ref: Reference) -> pl.DataFrame:
    fields = (
        ("visitor_organization",)
        if kind is Kind.VISITS
        else (("organization", "body") if kind is Kind.MEMBERSHIPS else ())
    )
    for field in fields:

        def resolve(label: str | None, field: str = field) -> Answer:
            if label is None:
                return {}, None
            code = ref.resolve_organization(label)
            if code is None:
                return {}, row_error(
                    field,
                    Reason.ORGANIZATION_KNOWN,
                    label,
                    f"organization {label!r} is unknown; add it to "
                    "organization_aliases.csv or organizations.csv",
                )
            return {field + "_code": code}, None

        frame = _lookup(frame, [field], {field + "_code": pl.String()}, resolve)
        frame = frame.with_columns(pl.col(field + "_code").alias(field)).drop(field + "_code")
    if kind is Kind.MEMBERSHIPS:

        def parent(organization: str | None, body: str | None) -> Answer:
            if body is None or organization is None:
                return {}, None
            if ref.organizations[body][1] != organization:
                return {}, row_error(
                    "body",
                    Reason.BODY_OF_ORGANIZATION,
                    body,
                    f"{body} is not a body of {organization}",
                )
            return {}, None

        frame = _lookup(frame, ["organization", "body"], {}, parent)
    return frame


def _roles(frame: pl.DataFrame, ref: Reference) -> pl.DataFrame:
    def resolve(title: str | None, role: str | None, country: str | None) -> Answer:
        if role is not None:
            return {"_role": role}, None
        if title is None:  # reported below, with the visitor's text
            return {}, None
        found = ref.role(title, country)
        if found is None:
            return {}, row_error(
                "visitor_title",
                Reason.TITLE_KNOWN,
                title,
                f"title {title!r} is not in titles.csv; add it with its role",
            )
        return {"_role": found}, None

    frame = _lookup(
        frame, ["visitor_title", "visitor_role", "visitor_country"], {"_role": pl.String()}, resolve
    )
    shown = pl.coalesce("visitor", "visitor_name")
    frame = append_error(
        frame,
        pl.col("_role").is_null() & pl.col("visitor_title").is_null(),
        pl.lit("visitor_title"),
        pl.lit(Reason.TITLE_KNOWN),
        shown,
        pl.when(shown.is_null())
        .then(pl.lit("the list gives no title; map a title or role column"))
        .otherwise(
            pl.format(
                "no known title at the start of '{}'; add the title to titles.csv "
                "(title,role,country)",
                shown,
            )
        ),
    )
    return frame.with_columns(pl.col("_role").alias("visitor_role")).drop("_role")


def normalize(
    frame: pl.DataFrame, source: Source, ref: Reference, *, default_order: Order = "ymd"
) -> pl.DataFrame:
    """Give every field its type and resolved code; each failure is added to the row's errors."""
    kind = source.kind
    ref = ref.for_source(source.mapping)
    for field in ENUM_FIELDS[kind]:
        # "Elected Member" is elected_member; a value that is none stays as written, so the
        # quarantine shows '-1', not '_1'
        spelled = pl.col(field).str.to_lowercase().str.replace_all(r"[\s-]+", "_")
        frame = frame.with_columns(
            pl.when(spelled.is_in(_ENUM_VALUES[field]))
            .then(spelled)
            .otherwise(pl.col(field))
            .alias(field)
        )
    frame = _dates(frame, kind, source, default_order)
    frame = _whole_numbers(frame, kind)
    frame = _countries(frame, kind, ref, source)
    frame = _organizations(frame, kind, ref)
    if kind is Kind.VISITS:
        frame = _roles(frame, ref)
    return frame
