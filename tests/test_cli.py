"""The relations-etl command end to end on a temporary warehouse, as users and jobs call it."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import get_current_settings

from tests.conftest import REPO, shared

SCRIPT = Path(sys.executable).parent / "relations-etl"


@dataclass
class Cli:
    """The installed console script, run as a user would, against one temporary warehouse."""

    home: Path
    env: dict[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=600,
        )

    def sql(self, query: str) -> list[dict[str, str]]:
        done = self("sql", query, "--csv")
        assert done.returncode == 0, done.stderr
        return list(csv.DictReader(io.StringIO(done.stdout)))


@pytest.fixture
def cli(tmp_path: Path, prefect_server: None) -> Cli:
    home = tmp_path / "warehouse"
    env = {
        **os.environ,
        "RELATIONS_ETL_HOME": str(home),
        # the flows report to the session's test API instead of starting their own
        "PREFECT_API_URL": str(get_current_settings().api.url),
    }
    return Cli(home, env)


def test_run_then_report_and_sql(cli: Cli) -> None:
    done = cli("run", "--config", str(REPO / "examples" / "sources.yaml"), "--progress")
    assert done.returncode == 0, done.stderr
    assert "kz-visits-2023: read 11, loaded 8, rejected 3, deduplicated 0" in done.stdout
    # the progress bars go to stderr, one per source, each ending in its outcome
    for name in ("kz-visits-2023", "kz-memberships", "kz-relations"):
        assert re.search(rf"{name}\s.*done", done.stderr), done.stderr
    again = cli("run", "--config", str(REPO / "examples" / "sources.yaml"))
    assert "kz-relations: unchanged since batch" in again.stdout and not again.stderr
    assert (cli.home / "relations.duckdb").is_file()
    report = cli("report", "--country", "KAZ", "--year", "2023").stdout
    assert report.startswith("Kazakhstan (KAZ), 2023")
    assert re.search(r"Heads of state or government received\s+5\s", report)
    assert re.search(r"Foreign ministers received\s+1\s", report)
    assert "Secretary of State Antony Blinken" in report
    summary = cli.sql("SELECT * FROM annual_summary WHERE country = 'KAZ' AND year = 2023")
    assert summary == [
        {
            "country": "KAZ",
            "year": "2023",
            "relations_count": "5",
            "head_visits": "5",
            "foreign_minister_visits": "1",
            "organization_head_visits": "0",
            "outbound_head_visits": "2",
            "chairmanships": "2",
            "elected_seats": "1",
        }
    ]
    quarantine = cli("quarantine").stdout
    assert "7 row(s) in quarantine" in quarantine
    assert "kz-visits-2023: visitor_country 'Atlantis' (country_known): 1 row" in quarantine
    table = cli("sql", "SELECT count(*) AS n FROM relations")
    assert table.returncode == 0 and " 5 " in table.stdout
    refused = cli("sql", "DELETE FROM visits")
    assert refused.returncode == 64 and "read-only" in refused.stderr


def test_errors_name_what_to_fix(cli: Cli, tmp_path: Path) -> None:
    nothing = cli("sql", "SELECT 1")
    assert nothing.returncode == 74 and "no warehouse at" in nothing.stderr
    listing = tmp_path / "list.csv"
    listing.write_text("Country,Year\nFrance,2020\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns:\n  Nation: country\n  Year: year\n", encoding="utf-8")
    done = cli("ingest", "memberships", str(listing), "--mapping", str(mapping))
    assert done.returncode == 65  # the list and its mapping disagree: data error
    assert "['Nation']" in done.stderr and "['Country', 'Year']" in done.stderr
    assert str(listing) in done.stderr
    (audit,) = cli.sql("SELECT source, status, error FROM load_batches")
    assert (audit["source"], audit["status"]) == ("list", "failed")
    assert "['Nation']" in audit["error"]
    absent = cli("ingest", "relations", str(listing), "--mapping", str(tmp_path / "none.yaml"))
    assert absent.returncode == 78 and "none.yaml does not exist" in absent.stderr
    assert cli("run", "--config", str(REPO / "examples" / "sources.yaml")).returncode == 0
    missing = cli("sql", "SELECT * FROM no_such_table")
    assert missing.returncode == 64 and "no_such_table" in missing.stderr


@pytest.mark.shared_data
def test_public_lists_through_the_cli(cli: Cli) -> None:
    visits = shared("hsg-visits")
    unsc = shared("unsc-elected/security_council_non_permanent.csv")
    done = cli("ingest", "visits", str(visits), "--format", "hsg-visits-xml")
    assert "hsg-visits: read 3264, loaded 3264, rejected 0" in done.stdout, done.stderr
    done = cli(
        "ingest",
        "memberships",
        str(unsc),
        "--mapping",
        str(REPO / "examples" / "mappings" / "unsc-elected.yaml"),
    )
    assert "unsc-elected: read 660, loaded 660, rejected 0" in done.stdout, done.stderr
    rows = cli.sql("""
        SELECT (SELECT count(*) FROM visits WHERE year(start_date) = 2023) AS people_2023,
               (SELECT count(*) FROM memberships_in_force(DATE '1950-06-30')
                 WHERE body = 'UNSC') AS seats_1950,
               (SELECT count(*) FROM memberships_in_force(DATE '2019-06-30')
                 WHERE body = 'UNSC') AS seats_2019""")
    assert rows == [{"people_2023": "81", "seats_1950": "6", "seats_2019": "10"}]
    assert "0 row(s) in quarantine" in cli("quarantine").stdout
