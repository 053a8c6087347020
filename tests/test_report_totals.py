"""Published totals as a list kind: whole numbers as ministries write them, and every bad row
quarantined with the field and the reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relations_etl.config import load_sources
from relations_etl.numbers import parse_whole
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_whole_numbers_read_back_as_written(n: int) -> None:
    assert parse_whole(str(n)) == n
    assert parse_whole(f"{n:,}") == n
    assert parse_whole(f"{n:_}") == n
    assert parse_whole(f"{n:,}".replace(",", " ")) == n
    assert parse_whole(f"{n}.0") == n


@pytest.mark.parametrize(
    ("text", "value"), [("186", 186), (" 32 ", 32), ("2e3", 2000), ("1,234,567", 1234567)]
)
def test_whole_numbers_in_the_forms_lists_use(text: str, value: int) -> None:
    assert parse_whole(text) == value


@pytest.mark.parametrize(
    "text",
    ["several", "", "12.5", "1,23", "1,2345", "nan", "inf", "1e400", "32 heads", "1,234 567"],
)
def test_anything_else_is_not_a_whole_number(text: str) -> None:
    with pytest.raises(ValueError, match=r"whole number|out of range"):
        parse_whole(text)


def test_bad_totals_are_quarantined_with_their_reasons(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "totals.csv").write_text(
        "country,year,metric,value,by,date\n"
        "Kazakhstan,2023,head visits,32,Ministry,2023-12-25\n"
        "Kazakhstan,2023,embassies opened,3,Ministry,2023-12-25\n"
        "Kazakhstan,20233,head visits,32,Ministry,2023-12-25\n"
        "Kazakhstan,2023,foreign minister visits,-4,Ministry,2023-12-25\n"
        "Kazakhstan,2023,relations count,186,,2023-12-25\n"
        "Kazakhstan,2023,chairmanships,2,Ministry,2022-05\n"
        "Atlantis,2023,chairmanships,2,Ministry,2023\n"
        "Kazakhstan,2023,elected seats,1,Ministry,\n",
        encoding="utf-8",
    )
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: totals, kind: reported_totals, uri: totals.csv, mapping: {columns: "
        "{country: country, year: year, metric: metric, value: value, by: publisher, "
        "date: published_on}}}\n",
        encoding="utf-8",
    )
    (source,) = load_sources(tmp_path / "sources.yaml")
    result = run_source(source, settings)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (8, 2, 6)
    loaded = run_query(settings, "SELECT metric, value, published_on FROM reported_totals")
    assert sorted(loaded.rows(), key=str) == [
        ("elected_seats", 1, None),
        ("head_visits", 32, dt.date(2023, 12, 25)),
    ]
    reasons = run_query(
        settings,
        'SELECT source_row, e."column", e."check" FROM rejected_rows, unnest(errors) AS u(e) '
        "ORDER BY source_row",
    )
    assert reasons.rows() == [
        (2, "metric", "isin"),
        (3, "year", "in_range"),
        (4, "value", "in_range"),
        (5, "publisher", "not_nullable"),
        (6, "published_on", "published_after_year_began"),
        (7, "country", "country_known"),
    ]
