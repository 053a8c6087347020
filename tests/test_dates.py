"""parse_date: every written form a raw list uses, its precision, and the errors it must raise."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relations_etl.dates import DateError, ParsedDate, parse_date

D = dt.date
SUPPORTED = st.dates(min_value=D(1000, 1, 1), max_value=D(2999, 12, 31))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-12", ParsedDate(D(2023, 5, 12), "day")),
        ("2023-5-2", ParsedDate(D(2023, 5, 2), "day")),
        ("2023/05/12", ParsedDate(D(2023, 5, 12), "day")),
        ("2023-05-12T10:30:00Z", ParsedDate(D(2023, 5, 12), "day")),
        ("2023-05", ParsedDate(D(2023, 5, 1), "month")),
        ("2023", ParsedDate(D(2023, 1, 1), "year")),
        ("  2023 ", ParsedDate(D(2023, 1, 1), "year")),
        ("12 May 2023", ParsedDate(D(2023, 5, 12), "day")),
        ("May 2023", ParsedDate(D(2023, 5, 1), "month")),
        ("May 12, 2023", ParsedDate(D(2023, 5, 12), "day")),
        ("Sept. 3, 1999", ParsedDate(D(1999, 9, 3), "day")),
        ("3 december 1999", ParsedDate(D(1999, 12, 3), "day")),
        ("05/2023", ParsedDate(D(2023, 5, 1), "month")),
    ],
)
def test_written_forms(text: str, expected: ParsedDate) -> None:
    assert parse_date(text) == expected


def test_numeric_day_month_order_is_explicit() -> None:
    assert parse_date("03/04/2023", order="dmy") == ParsedDate(D(2023, 4, 3), "day")
    assert parse_date("03/04/2023", order="mdy") == ParsedDate(D(2023, 3, 4), "day")
    assert parse_date("25.12.2023", order="dmy") == ParsedDate(D(2023, 12, 25), "day")


def test_ambiguous_numeric_date_needs_an_order() -> None:
    with pytest.raises(DateError, match="day-first or month-first"):
        parse_date("03/04/2023", order="ymd")
    with pytest.raises(DateError, match="day-first or month-first"):
        parse_date("03/04/2023")  # ymd is the default


def test_excel_serial_only_when_asked() -> None:
    assert parse_date("45000", excel_serial=True) == ParsedDate(D(2023, 3, 15), "day")
    assert parse_date("45000.75", excel_serial=True) == ParsedDate(D(2023, 3, 15), "day")
    with pytest.raises(DateError, match="excel_serial"):
        parse_date("45000")
    # a number that is a plausible year stays a year even with excel_serial
    assert parse_date("2000", excel_serial=True) == ParsedDate(D(2000, 1, 1), "year")


def test_number_forms_of_a_year() -> None:
    assert parse_date("2e3") == ParsedDate(D(2000, 1, 1), "year")
    assert parse_date("2E3", end=True) == ParsedDate(D(2000, 12, 31), "year")


def test_float_year_text() -> None:
    assert parse_date("2023.0") == ParsedDate(D(2023, 1, 1), "year")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02", D(2023, 2, 28)),
        ("2024-02", D(2024, 2, 29)),
        ("Apr 2023", D(2023, 4, 30)),
        ("12/2023", D(2023, 12, 31)),
        ("2023", D(2023, 12, 31)),
        ("2023-05-12", D(2023, 5, 12)),  # a day is its own end
    ],
)
def test_end_gives_last_day_of_the_period(text: str, expected: dt.date) -> None:
    assert parse_date(text, end=True).date == expected


@pytest.mark.parametrize(
    ("text", "order", "match"),
    [
        ("2023-13-45", "ymd", "not a calendar date"),
        ("2023-02-30", "ymd", "not a calendar date"),
        ("31/02/2023", "dmy", "not a calendar date"),
        ("02/31/2023", "dmy", "not a calendar date"),
        ("13/2023", "ymd", "not a calendar date"),
        ("0999", "ymd", "out of range"),
        ("Smarch 2023", "ymd", "not a month name"),
        ("", "ymd", "empty"),
        ("   ", "ymd", "empty"),
        ("yesterday", "ymd", "is not a date"),
        ("12.5", "ymd", "not a year"),
    ],
)
def test_invalid_dates_raise(text: str, order: str, match: str) -> None:
    with pytest.raises(DateError, match=match):
        parse_date(text, order=order)  # type: ignore[arg-type]


def test_date_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_date("31/02/2023", order="dmy")


@given(SUPPORTED)
def test_iso_round_trip(d: dt.date) -> None:
    assert parse_date(d.isoformat()) == ParsedDate(d, "day")


@given(SUPPORTED, st.booleans(), st.sampled_from("/-."))
def test_dmy_round_trip(d: dt.date, padded: bool, sep: str) -> None:
    fmt = "{:02d}" if padded else "{}"
    text = sep.join([fmt.format(d.day), fmt.format(d.month), str(d.year)])
    assert parse_date(text, order="dmy") == ParsedDate(d, "day")


@given(SUPPORTED, st.booleans(), st.sampled_from("/-."))
def test_mdy_round_trip(d: dt.date, padded: bool, sep: str) -> None:
    fmt = "{:02d}" if padded else "{}"
    text = sep.join([fmt.format(d.month), fmt.format(d.day), str(d.year)])
    assert parse_date(text, order="mdy") == ParsedDate(d, "day")


@given(SUPPORTED)
def test_words_round_trip(d: dt.date) -> None:
    assert parse_date(f"{d.day} {d:%B} {d.year}") == ParsedDate(d, "day")
    assert parse_date(f"{d:%b} {d.day}, {d.year}") == ParsedDate(d, "day")


@given(st.integers(min_value=1000, max_value=2999))
def test_year_is_first_or_last_day(y: int) -> None:
    assert parse_date(str(y)) == ParsedDate(D(y, 1, 1), "year")
    assert parse_date(str(y), end=True) == ParsedDate(D(y, 12, 31), "year")


@given(st.integers(min_value=1000, max_value=2999), st.integers(min_value=1, max_value=12))
def test_month_end_is_last_day_of_month(y: int, m: int) -> None:
    start = parse_date(f"{y}-{m:02d}")
    end = parse_date(f"{y}-{m:02d}", end=True)
    assert start == ParsedDate(D(y, m, 1), "month")
    assert end.precision == "month"
    assert end.date.month == m
    assert (end.date + dt.timedelta(days=1)).day == 1


@pytest.mark.parametrize(
    ("text", "pivot", "expected"),
    [
        ("31/12/99", 30, dt.date(1999, 12, 31)),
        ("01/02/05", 30, dt.date(2005, 2, 1)),
        ("01/02/30", 30, dt.date(1930, 2, 1)),
        ("01/02/29", 30, dt.date(2029, 2, 1)),
        ("31/12/99", 100, dt.date(2099, 12, 31)),
        ("31/12/1999", None, dt.date(1999, 12, 31)),
    ],
)
def test_two_digit_years_follow_the_lists_pivot(
    text: str, pivot: int | None, expected: dt.date
) -> None:
    assert parse_date(text, order="dmy", century_pivot=pivot).date == expected


def test_a_two_digit_year_without_a_pivot_says_how_to_fix_it() -> None:
    with pytest.raises(DateError, match=r"two-digit year .*dates\.century_pivot"):
        parse_date("31/12/99", order="dmy")


PLAIN_TEXTS = st.one_of(
    SUPPORTED.map(lambda d: d.isoformat()),
    st.integers(0, 9999).map(str),
    st.from_regex(r"[0-3]\d{3}-[0-1]\d-[0-3]\d", fullmatch=True),
    st.from_regex(r" ?\d{1,4}[-/]\d{1,2}[-/]\d{1,4} ?", fullmatch=True),
)


@given(texts=st.lists(PLAIN_TEXTS, min_size=1, max_size=40), end=st.booleans())
def test_vectorized_plain_forms_answer_as_parse_date(texts: list[str], end: bool) -> None:
    """normalize parses YYYY-MM-DD and YYYY as polars expressions, the rest with parse_date:
    the two must agree on every text the fast path takes, and take every valid plain form."""
    import polars as pl

    from relations_etl.normalize import plain_dates

    date, precision = plain_dates(pl.col("text"), end)
    rows = pl.DataFrame({"text": texts}).select("text", date.alias("d"), precision.alias("p"))
    for text, fast_date, fast_precision in rows.iter_rows():
        try:
            parsed: ParsedDate | None = parse_date(text, end=end)
        except DateError:
            parsed = None
        plain = text.isascii() and text.strip() == text and len(text) in (4, 10)
        if fast_date is not None:
            assert parsed == ParsedDate(fast_date, fast_precision)
        elif parsed is not None and plain and parsed.precision != "month":
            raise AssertionError(f"{text!r} is a plain form the fast path missed")
