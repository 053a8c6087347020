"""Lists the package has never seen, through a mapping file only (tests/cases/)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from relations_etl.config import Kind, source_for
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings

CASES = Path(__file__).parent / "cases"


def test_protocol_list_with_its_own_headers(settings: Settings) -> None:
    source = source_for(
        Kind.VISITS, str(CASES / "protocol_visits.csv"), None, CASES / "protocol_visits.yaml"
    )
    assert source.name == "protocol-visits"
    result = run_source(source, settings)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (5, 4, 1)
    visits = run_query(
        settings,
        """
        SELECT source_record, visitor_country, visitor_organization, visitor_role, visit_type,
               start_date, start_precision, end_date, city
        FROM visits ORDER BY source_record""",
    ).rows()
    assert visits == [
        (
            "1",
            None,
            "UN",
            "head_of_organization",
            "official",
            dt.date(2023, 4, 5),
            "day",
            dt.date(2023, 4, 6),
            "Astana",
        ),
        (
            "2",
            "DEU",
            None,
            "head_of_government",
            "working",
            dt.date(2023, 6, 14),
            "day",
            None,
            "Berlin",
        ),
        ("3", "AUS", None, "head_of_government", None, dt.date(2023, 1, 1), "year", None, None),
        ("4", "TUR", None, "head_of_state", "state", dt.date(2023, 10, 1), "day", None, "Astana"),
    ]
    (row,) = run_query(settings, "SELECT source_file, source_row, errors FROM rejected_rows").rows()
    assert row[0].endswith("protocol_visits.csv") and row[1] == 5
    assert {(e["column"], e["check"], e["value"]) for e in row[2]} == {
        ("visitor_country", "country_known", "Atlantis"),
        ("start_date", "date_format", "12/13/2023"),
    }
    summary = run_query(
        settings, "SELECT * FROM annual_summary WHERE country = 'KAZ' AND year = 2023"
    ).row(0, named=True)
    assert (summary["head_visits"], summary["organization_head_visits"]) == (3, 1)
