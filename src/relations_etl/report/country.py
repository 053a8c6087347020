"""The country a report is about: a code, ISO name or alias resolved as a list's label is."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field

import duckdb

from relations_etl.errors import ConfigError, UnknownCountryError
from relations_etl.facts import METRICS
from relations_etl.reasons import Reason
from relations_etl.reference import Reference
from relations_etl.settings import Settings
from relations_etl.text import key

SUGGESTIONS = 5


@dataclass(frozen=True)
class ReportCountry:
    """A resolved reporting country, with the reference data that resolved it."""

    code: str
    name: str
    reference: Reference = field(repr=False, compare=False)

    def named_by(self, label: str) -> bool:
        """Whether `label` (a raw cell) resolves to this country, on some date."""
        return _resolves_to(self.reference, label) == self.code


def _resolves_to(reference: Reference, label: str) -> str | None:
    return reference.resolve_country(label, None).code


def _closest(reference: Reference, label: str) -> list[str]:
    """The codes whose labels (codes, ISO names, aliases) are spelled most like `label`."""
    labels = list(reference.names) + list(reference.aliases)
    codes: list[str] = []
    for near in difflib.get_close_matches(key(label), labels, n=4 * SUGGESTIONS, cutoff=0.6):
        aliases = {a.code for a in reference.aliases.get(near, [])}
        found = sorted(reference.names.get(near, set()) | aliases)
        codes += [c for c in found if c not in codes]
    return codes[:SUGGESTIONS]


def _described(reference: Reference, codes: list[str]) -> str:
    return ", ".join(
        f"{c} ({reference.countries[c].name})" if c in reference.countries else c for c in codes
    )


def _warehouse_countries(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The countries of annual_summary, those with the most recorded first."""
    recorded = " + ".join(METRICS)
    rows = conn.sql(
        "SELECT country FROM annual_summary GROUP BY country "
        f"ORDER BY sum({recorded}) DESC, country"
    ).fetchall()
    return [str(code) for (code,) in rows]


def resolve_report_country(
    settings: Settings,
    label: str,
    year: int | None = None,
    conn: duckdb.DuckDBPyConnection | None = None,
) -> ReportCountry:
    """The country `label` names, through the same reference data as every list's labels.

    `year` (when given) decides labels whose meaning changed over time and refuses a state that
    did not exist in it; with `conn`, the warehouse's own countries are offered when no known
    label is spelled alike. Raises UnknownCountryError (exit 64) naming the closest known codes.
    """
    reference = Reference.load(settings)
    found = reference.resolve_country(label, None)
    if found.check == Reason.COUNTRY_AMBIGUOUS and year is not None:
        # a dated alias ("China, Republic of": CHN before 1949-10-01, TWN after): the year decides
        found = reference.resolve_country(label, dt.date(year, 12, 31))
    if found.code is None:
        if found.check == Reason.COUNTRY_AMBIGUOUS:
            raise UnknownCountryError(found.error or f"country {label!r} is ambiguous")
        suggestions = _closest(reference, label)
        if suggestions:
            closest = f"; the closest known: {_described(reference, suggestions)}"
        else:
            in_warehouse = _warehouse_countries(conn)[:SUGGESTIONS] if conn else []
            closest = "; no known code or name is spelled like it" + (
                f" (countries in this warehouse: {_described(reference, in_warehouse)})"
                if in_warehouse
                else ""
            )
        raise UnknownCountryError(f"country {label!r} is unknown{closest}")
    country = reference.countries[found.code]
    if year is not None and not (
        (country.valid_from is None or country.valid_from <= dt.date(year, 12, 31))
        and (country.valid_to is None or country.valid_to >= dt.date(year, 1, 1))
    ):
        raise UnknownCountryError(
            f"country {label!r} is {country.code} ({country.name}), which did not exist in {year} "
            f"(valid {country.valid_from or '…'}..{country.valid_to or '…'})"
        )
    return ReportCountry(country.code, country.name, reference)


def check_report_settings(settings: Settings) -> ReportCountry | None:
    """RELATIONS_ETL_REPORT_COUNTRY resolved before a run does any work (None when unset).

    Raises ConfigError (exit 78) with the reason and the closest known codes.
    """
    if not settings.report_country:
        return None
    try:
        return resolve_report_country(settings, settings.report_country, settings.report_year)
    except UnknownCountryError as exc:
        raise ConfigError(
            f"RELATIONS_ETL_REPORT_COUNTRY: {exc.message}",
            hint="Set it to a known code or name, or unset it; nothing was loaded.",
        ) from exc
