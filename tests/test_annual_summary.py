"""annual_summary: memberships held on 31 December and foreign ministers' visits abroad, counted
on lists written here, and reconciled with a published total of the same name."""

from __future__ import annotations

from pathlib import Path

import pytest

from relations_etl.config import Kind, Source
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import trips_source

MEMBERSHIPS = """Member,Organization,Body,Standing,From,Until
France,UN,,member,1945-10-24,
France,NATO,,member,1949-04-04,1966-03-10
France,NATO,,member,2009-04-04,
France,EU,,member,1958,
France,UNESCO,,member,1946-11-04,1990
France,WHO,,member,1948-04-07,2000-06-30
France,OSCE,,associate,2000,
France,SCO,,observer,2005,
France,UN,UN Security Council,elected member,1990,1991
France,EU,,chair,2008-07,2008-12
"""

# one country per row, as a list of a minister's trips abroad keeps them
TRIPS = """record,host,visitor_country,visitor,title,date
t1,Germany,United States,Antony Blinken,Secretary of State,2023-01-10
t2,Japan,United States,Antony Blinken,Secretary of State,2023-02-11
t3,Kazakhstan,United States,Antony Blinken,Secretary of State,2023-02-28
t4,France,United States,Joe Biden,President,2023-06-06
t5,United States,France,Catherine Colonna,Minister of Foreign Affairs,2023-03-01
t6,India,United States,Antony Blinken,Secretary of State,2022-03-01
"""


def _source(name: str, kind: Kind, path: Path, columns: dict[str, str]) -> Source:
    return Source.model_validate(
        {"name": name, "kind": kind, "uri": str(path), "mapping": {"columns": columns}}
    )


@pytest.fixture
def summary(settings: Settings, tmp_path: Path) -> dict[tuple[str, int], dict[str, int]]:
    (tmp_path / "memberships.csv").write_text(MEMBERSHIPS, encoding="utf-8")
    (tmp_path / "trips.csv").write_text(TRIPS, encoding="utf-8")
    loaded = run_source(
        _source(
            "members",
            Kind.MEMBERSHIPS,
            tmp_path / "memberships.csv",
            {
                "Member": "country",
                "Organization": "organization",
                "Body": "body",
                "Standing": "status",
                "From": "start_date",
                "Until": "end_date",
            },
        ),
        settings,
    )
    assert (loaded.rows_loaded, loaded.rows_rejected) == (10, 0)
    trips = trips_source(tmp_path / "trips.csv")
    assert run_source(trips, settings).rows_loaded == 6
    rows = run_query(
        settings,
        "SELECT * FROM annual_summary WHERE country IN ('FRA', 'USA') ORDER BY country, year",
    ).to_dicts()
    return {(r.pop("country"), r.pop("year")): r for r in rows}


def test_memberships_count_the_organizations_held_on_31_december(
    summary: dict[tuple[str, int], dict[str, int]],
) -> None:
    held = {
        year: row["memberships"] for (country, year), row in summary.items() if country == "FRA"
    }
    assert held[1945] == 1  # UN
    assert held[1946] == 2  # UN, UNESCO
    assert held[1949] == 4  # UN, UNESCO, WHO, NATO
    assert held[1958] == 5  # and the EU, whose start is known to the year
    assert held[1966] == 4  # NATO left in March: not a member at year end
    # UNESCO ends "1990": to the end of that year; a seat on a body is not a membership
    assert (held[1990], held[1991]) == (4, 3)
    assert held[1999] == 3  # UN, EU, WHO
    assert held[2000] == 2  # WHO left in June; an associate (OSCE) is not a member
    assert held[2005] == 2  # an observer (SCO) is not one either
    assert held[2008] == 2  # a chair of the EU is still one membership of the EU
    assert held[2009] == 3  # back in NATO
    assert summary[("FRA", 2009)]["chairmanships"] == 0
    assert summary[("FRA", 2008)]["chairmanships"] == 1


def test_foreign_ministers_abroad_are_counted_for_their_country(
    summary: dict[tuple[str, int], dict[str, int]],
) -> None:
    usa, fra = summary[("USA", 2023)], summary[("FRA", 2023)]
    assert usa["outbound_foreign_minister_visits"] == 3
    assert usa["outbound_head_visits"] == 1
    assert usa["foreign_minister_visits"] == 1  # Colonna, received
    assert summary[("USA", 2022)]["outbound_foreign_minister_visits"] == 1
    assert fra["outbound_foreign_minister_visits"] == 1
    assert fra["foreign_minister_visits"] == 0


def test_a_published_count_of_memberships_is_reconciled(
    summary: dict[tuple[str, int], dict[str, int]], settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "totals.csv").write_text(
        "country,year,metric,value,by\n"
        "France,2009,memberships,3,Ministry\n"
        "United States,2023,outbound foreign minister visits,86,Department of State\n",
        encoding="utf-8",
    )
    totals = _source(
        "totals",
        Kind.REPORTED_TOTALS,
        tmp_path / "totals.csv",
        {
            "country": "country",
            "year": "year",
            "metric": "metric",
            "value": "value",
            "by": "publisher",
        },
    )
    assert run_source(totals, settings).rows_loaded == 2
    compared = run_query(
        settings, "SELECT country, metric, reported, recorded, status FROM reconciliation"
    ).rows()
    assert sorted(compared) == [
        ("FRA", "memberships", 3, 3, "complete"),
        ("USA", "outbound_foreign_minister_visits", 86, 3, "partial"),
    ]
