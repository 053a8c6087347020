"""Normalize: parse dates with precision and resolve countries, organizations and titles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import polars as pl

from relations_etl.config import Kind, Source
from relations_etl.dates import DateError, Order, parse_date
from relations_etl.facts import ERROR
from relations_etl.mapping import ERRORS_COLUMN
from relations_etl.reference import Reference

DATE_FIELDS: dict[Kind, tuple[tuple[str, bool], ...]] = {
    Kind.VISITS: (("start_date", False), ("end_date", True)),
    Kind.MEMBERSHIPS: (("start_date", False), ("end_date", True)),
    Kind.RELATIONS: (("event_date", False),),
}
COUNTRY_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: ("host_country", "visitor_country"),
    Kind.MEMBERSHIPS: ("country",),
    Kind.RELATIONS: ("country", "counterpart"),
}
ENUM_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: ("visitor_role", "visit_type"),
    Kind.MEMBERSHIPS: ("status",),
    Kind.RELATIONS: ("event",),
}
_ERR = "_err"


def _error(column: str, check: str, value: str | None, message: str) -> dict[str, str | None]:
    return {"column": column, "check": check, "value": value, "message": message}


def _lookup(
    frame: pl.DataFrame,
    keys: list[str],
    outputs: dict[str, pl.DataType],
    resolve: Callable[..., tuple[dict[str, Any], list[dict[str, str | None]]]],
) -> pl.DataFrame:
    """Resolve each distinct combination of `keys` once in Python and join the answers back."""
    distinct = frame.select(keys).unique(maintain_order=True)
    answers: dict[str, list[Any]] = {name: [] for name in outputs}
    errors: list[list[dict[str, str | None]]] = []
    for row in distinct.iter_rows():
        values, row_errors = resolve(*row)
        for name in outputs:
            answers[name].append(values.get(name))
        errors.append(row_errors)
    table = distinct.with_columns(
        *(pl.Series(name, answers[name], dtype=dtype) for name, dtype in outputs.items()),
        pl.Series(_ERR, errors, dtype=pl.List(ERROR)),
    )
    frame = frame.drop([c for c in outputs if c in frame.columns and c not in keys])
    joined = frame.join(table, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return joined.with_columns(pl.concat_list(ERRORS_COLUMN, _ERR).alias(ERRORS_COLUMN)).drop(_ERR)


def _dates(frame: pl.DataFrame, kind: Kind, source: Source, default_order: Order) -> pl.DataFrame:
    order: Order = source.mapping.dates.order or default_order
    excel = source.mapping.dates.excel_serial
    yearly = kind is Kind.MEMBERSHIPS and (
        source.mapping.periods == "yearly" or frame.get_column("year").is_not_null().any()
    )
    if yearly:
        frame = frame.with_columns(
            pl.coalesce("start_date", "year").alias("start_date"),
            pl.coalesce("end_date", "year").alias("end_date"),
        )
    for field, end in DATE_FIELDS[kind]:
        precision = field.replace("_date", "_precision")

        def parse(
            text: str | None, field: str = field, end: bool = end, precision: str = precision
        ) -> tuple[dict[str, Any], list[dict[str, str | None]]]:
            if text is None:
                return {}, []
            try:
                parsed = parse_date(text, order=order, excel_serial=excel, end=end)
            except DateError as exc:
                return {}, [_error(field, "date_format", text, str(exc))]
            return {field + "_parsed": parsed.date, precision: parsed.precision}, []

        frame = _lookup(
            frame, [field], {field + "_parsed": pl.Date(), precision: pl.String()}, parse
        )
        frame = frame.with_columns(pl.col(field + "_parsed").alias(field)).drop(field + "_parsed")
    return frame


def _visitor_organizations(frame: pl.DataFrame, source: Source, ref: Reference) -> pl.DataFrame:
    """Lists often put "United Nations" in the visitor's country column: move such labels."""
    countries = source.mapping.country_aliases
    organizations = source.mapping.organization_aliases
    labels = frame.filter(pl.col("visitor_organization").is_null()).get_column("visitor_country")
    moved = [
        label
        for label in labels.drop_nulls().unique().to_list()
        if ref.resolve_country(label, None, countries).check == "country_known"
        and ref.resolve_organization(label, organizations) is not None
    ]
    if not moved:
        return frame
    is_moved = pl.col("visitor_organization").is_null() & pl.col("visitor_country").is_in(moved)
    return frame.with_columns(
        pl.when(is_moved).then(pl.col("visitor_country")).otherwise(
            pl.col("visitor_organization")).alias("visitor_organization"),
        pl.when(is_moved).then(None).otherwise(pl.col("visitor_country")).alias("visitor_country"),
    )


def _countries(frame: pl.DataFrame, kind: Kind, source: Source, ref: Reference) -> pl.DataFrame:
    day_field = DATE_FIELDS[kind][0][0]
    overrides = source.mapping.country_aliases
    if kind is Kind.VISITS:
        frame = _visitor_organizations(frame, source, ref)
    for field in COUNTRY_FIELDS[kind]:

        def resolve(
            label: str | None, day: dt.date | None, field: str = field
        ) -> tuple[dict[str, Any], list[dict[str, str | None]]]:
            if label is None:
                return {}, []
            found = ref.resolve_country(label, day, overrides)
            if found.code is None:
                return {}, [
                    _error(
                        field, found.check or "country_known", label, found.error or "unresolved"
                    )
                ]
            return {field + "_code": found.code}, []

        frame = _lookup(frame, [field, day_field], {field + "_code": pl.String()}, resolve)
        frame = frame.with_columns(pl.col(field + "_code").alias(field)).drop(field + "_code")
    return frame


def _organizations(frame: pl.DataFrame, kind: Kind, source: Source, ref: Reference) -> pl.DataFrame:
    overrides = source.mapping.organization_aliases
    fields = (
        ("visitor_organization",)
        if kind is Kind.VISITS
        else (("organization", "body") if kind is Kind.MEMBERSHIPS else ())
    )
    for field in fields:

        def resolve(
            label: str | None, field: str = field
        ) -> tuple[dict[str, Any], list[dict[str, str | None]]]:
            if label is None:
                return {}, []
            code = ref.resolve_organization(label, overrides)
            if code is None:
                return {}, [
                    _error(
                        field,
                        "organization_known",
                        label,
                        f"organization {label!r} is unknown; add it to "
                        "organization_aliases.csv or organizations.csv",
                    )
                ]
            return {field + "_code": code}, []

        frame = _lookup(frame, [field], {field + "_code": pl.String()}, resolve)
        frame = frame.with_columns(pl.col(field + "_code").alias(field)).drop(field + "_code")
    if kind is Kind.MEMBERSHIPS:

        def parent(
            organization: str | None, body: str | None
        ) -> tuple[dict[str, Any], list[dict[str, str | None]]]:
            if body is None or organization is None:
                return {}, []
            if ref.organizations[body][1] != organization:
                return {}, [
                    _error(
                        "body",
                        "body_of_organization",
                        body,
                        f"{body} is not a body of {organization}",
                    )
                ]
            return {}, []

        frame = _lookup(frame, ["organization", "body"], {}, parent)
    return frame


def _roles(frame: pl.DataFrame, source: Source, ref: Reference) -> pl.DataFrame:
    titles = source.mapping.titles

    def resolve(
        title: str | None,
        role: str | None,
        country: str | None,
        visitor: str | None,
        name: str | None,
    ) -> tuple[dict[str, Any], list[dict[str, str | None]]]:
        if role is not None:
            return {"_role": role}, []
        if title is None:
            shown = visitor or name
            return {}, [
                _error(
                    "visitor_title",
                    "title_known",
                    shown,
                    f"no known title at the start of {shown!r}; add the title to "
                    "titles.csv (title,role,country)",
                )
            ]
        found = ref.role(title, country, titles)
        if found is None:
            return {}, [
                _error(
                    "visitor_title",
                    "title_known",
                    title,
                    f"title {title!r} is not in titles.csv; add it with its role",
                )
            ]
        return {"_role": found}, []

    frame = _lookup(
        frame,
        ["visitor_title", "visitor_role", "visitor_country", "visitor", "visitor_name"],
        {"_role": pl.String()},
        resolve,
    )
    return frame.with_columns(pl.col("_role").alias("visitor_role")).drop("_role")


def normalize(
    frame: pl.DataFrame, source: Source, ref: Reference, *, default_order: Order = "ymd"
) -> pl.DataFrame:
    """Give every field its type and resolved code; each failure is added to the row's errors."""
    kind = source.kind
    for field in ENUM_FIELDS[kind]:
        frame = frame.with_columns(
            pl.col(field).str.to_lowercase().str.replace_all(r"[\s-]+", "_").alias(field)
        )
    frame = _dates(frame, kind, source, default_order)
    frame = _countries(frame, kind, source, ref)
    frame = _organizations(frame, kind, source, ref)
    if kind is Kind.VISITS:
        frame = _roles(frame, source, ref)
    return frame
