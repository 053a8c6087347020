"""Dates as raw lists write them, parsed to a DATE and its precision (day, month or year)."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

Order = Literal["ymd", "dmy", "mdy"]
Precision = Literal["day", "month", "year"]

_MONTHS = {
    name.casefold(): number
    for number in range(1, 13)
    for name in (calendar.month_name[number], calendar.month_abbr[number])
}
_MONTHS["sept"] = 9
_EXCEL_EPOCH = dt.date(1899, 12, 30)  # Excel's day 0, after its 1900 leap-year bug

_ISO = re.compile(
    r"^(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_NUMERIC = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})$")
_MONTH_YEAR = re.compile(r"^(\d{1,2})[-/.](\d{4})$")
_WORDS = re.compile(r"^(?:(\d{1,2})\s+)?([A-Za-z]+)\.?(?:\s+(\d{1,2}))?,?\s+(\d{4})$")
_NUMBER = re.compile(r"^[+]?(\d+(?:\.\d*)?|\.\d+)(?:[eE][+]?\d+)?$")


class DateError(ValueError):
    """A text that is not a date this parser can vouch for, with the reason."""


@dataclass(frozen=True)
class ParsedDate:
    """A date with the precision the source gave; `date` is the first or last day of the period."""

    date: dt.date
    precision: Precision


def _build(year: int, month: int | None, day: int | None, end: bool, text: str) -> ParsedDate:
    if not 1000 <= year <= 2999:
        raise DateError(f"year {year} in {text!r} is out of range")
    try:
        if day is not None and month is not None:
            return ParsedDate(dt.date(year, month, day), "day")
        if month is not None:
            last = calendar.monthrange(year, month)[1]
            return ParsedDate(dt.date(year, month, last if end else 1), "month")
    except (ValueError, calendar.IllegalMonthError) as exc:
        raise DateError(f"{text!r} is not a calendar date: {exc}") from exc
    return ParsedDate(dt.date(year, 12, 31) if end else dt.date(year, 1, 1), "year")


def _number(raw: str, excel_serial: bool, end: bool) -> ParsedDate:
    """A number: a year (2023, 2023.0, 2e3), or with excel_serial an Excel day number."""
    value = float(raw)
    if value.is_integer() and 1000 <= value <= 2999:
        return _build(int(value), None, None, end, raw)
    if excel_serial and 0 < value < 2958466:
        return ParsedDate(_EXCEL_EPOCH + dt.timedelta(days=int(value)), "day")
    raise DateError(f"number {raw!r} is not a year (set dates.excel_serial for Excel days)")


def _full_year(digits: str, pivot: int | None, text: str) -> int:
    """A year as written; two digits need the list's pivot: below it 20xx, from it 19xx."""
    if len(digits) == 4:
        return int(digits)
    if pivot is None:
        raise DateError(
            f"{text!r} has a two-digit year (19xx or 20xx?); write the year in full or set "
            "dates.century_pivot in the mapping"
        )
    short = int(digits)
    return 2000 + short if short < pivot else 1900 + short


def parse_date(
    text: str,
    *,
    order: Order = "ymd",
    excel_serial: bool = False,
    end: bool = False,
    century_pivot: int | None = None,
) -> ParsedDate:
    """Parse one raw date; `end` makes a month or year stand for its last day, not its first."""
    raw = text.strip()
    if not raw:
        raise DateError("empty date")
    if _NUMBER.match(raw) and not raw.isdigit():
        return _number(raw, excel_serial, end)
    if m := _ISO.match(raw):
        year, month, day = (int(g) if g else None for g in m.groups())
        return _build(year or 0, month, day, end, raw)
    if m := _NUMERIC.match(raw):
        a, b = int(m.group(1)), int(m.group(2))
        year = _full_year(m.group(3), century_pivot, raw)
        if order == "ymd":
            raise DateError(
                f"{raw!r} could be day-first or month-first; set dates.order to dmy or mdy"
            )
        day, month = (a, b) if order == "dmy" else (b, a)
        return _build(year, month, day, end, raw)
    if m := _MONTH_YEAR.match(raw):
        return _build(int(m.group(2)), int(m.group(1)), None, end, raw)
    if m := _WORDS.match(raw):
        day_before, name, day_after, year_text = m.groups()
        named_month = _MONTHS.get(name.casefold())
        if named_month is None:
            raise DateError(f"{name!r} in {raw!r} is not a month name")
        day_text = day_before or day_after
        return _build(int(year_text), named_month, int(day_text) if day_text else None, end, raw)
    if _NUMBER.match(raw):
        return _number(raw, excel_serial, end)
    raise DateError(f"{raw!r} is not a date (ISO YYYY[-MM[-DD]], '12 May 2023', 'May 2023', ...)")
