"""The relations-etl command end to end on a temporary warehouse, as users and jobs call it:
in this process for what it prints and exits with, as the console script where a process matters."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from relations_etl_flows.cli import main
from relations_etl_flows.output import error_paragraph

from relations_etl.errors import QueryError, sentence
from relations_etl.settings import Settings
from tests.conftest import DEMO, REPO, Cli, shared
from tests.state import DEMO_KAZ_2023

SCRIPT = Path(sys.executable).parent / "relations-etl"


def test_run_then_report_and_sql(cli: Cli, prefect_server: None) -> None:
    done = cli("run", "--config", str(DEMO), "--progress")
    assert done.code == 0, done.err
    assert "kz-visits-2023: read 11, loaded 8, rejected 3, deduplicated 0" in done.out
    # the progress bars go to stderr, one per source, each ending in its outcome
    for name in ("kz-visits-2023", "kz-memberships", "kz-relations"):
        assert re.search(rf"{name}\s.*done", done.err), done.err
    again = cli("run", "--config", str(DEMO))
    assert "kz-relations: unchanged since batch" in again.out and not again.err
    assert (cli.home / "relations.duckdb").is_file()
    report = cli("report", "--country", "KAZ", "--year", "2023").out
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
            "outbound_foreign_minister_visits": "0",
            "memberships": "4",
        }
    ]
    quarantine = cli("quarantine").out
    assert "7 row(s) in quarantine" in quarantine
    assert "kz-visits-2023: visitor_country 'Atlantis' (country_known): 1 row" in quarantine
    table = cli("sql", "SELECT count(*) AS n FROM relations")
    assert table.code == 0
    assert (table.out.split()[0], table.out.split()[-1]) == ("n", "5")
    refused = cli("sql", "DELETE FROM visits")
    assert refused.code == 64 and "read-only" in refused.err


def _disagreeing_list(folder: Path) -> tuple[Path, Path]:
    """A list and a mapping naming a column it does not have."""
    listing = folder / "list.csv"
    listing.write_text("Country,Year\nFrance,2020\n", encoding="utf-8")
    mapping = folder / "mapping.yaml"
    mapping.write_text("columns:\n  Nation: country\n  Year: year\n", encoding="utf-8")
    return listing, mapping


def test_errors_name_what_to_fix(cli: Cli, tmp_path: Path, prefect_server: None) -> None:
    nothing = cli("sql", "SELECT 1")
    assert nothing.code == 74 and "no warehouse at" in nothing.err
    listing, mapping = _disagreeing_list(tmp_path)
    done = cli("ingest", "memberships", str(listing), "--mapping", str(mapping))
    assert done.code == 65  # the list and its mapping disagree: data error
    assert "['Nation']" in done.err and "['Country', 'Year']" in done.err
    assert str(listing) in done.err
    (audit,) = cli.sql("SELECT source, status, error FROM load_batches")
    assert (audit["source"], audit["status"]) == ("list", "failed")
    assert "['Nation']" in audit["error"]
    absent = cli("ingest", "relations", str(listing), "--mapping", str(tmp_path / "none.yaml"))
    assert absent.code == 78 and "none.yaml does not exist" in absent.err
    # a failed batch in the audit does not stand in the way of the nightly flow
    assert cli("run", "--config", str(DEMO)).code == 0
    missing = cli("sql", "SELECT * FROM no_such_table")
    assert missing.code == 64 and "no_such_table" in missing.err


def test_the_console_script_exits_with_the_code_of_the_error(tmp_path: Path) -> None:
    """The installed script, as a scheduler runs it: the exit code and one paragraph on stderr
    (the in-process tests above check the messages; here only what a process adds)."""
    listing, mapping = _disagreeing_list(tmp_path)
    commands = {
        74: ["sql", "SELECT 1"],  # before anything was loaded: no warehouse
        65: ["ingest", "memberships", str(listing), "--mapping", str(mapping)],
    }
    # started together, each on a home of its own: the 65 creates a warehouse, which the 74
    # must not find
    started = {
        code: subprocess.Popen(
            [str(SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RELATIONS_ETL_HOME": str(tmp_path / f"warehouse-{code}")},
        )
        for code, args in commands.items()
    }
    for code, process in started.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == code, err
        assert out == "" and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and err.startswith("relations-etl: error: ")


@pytest.mark.shared_data
def test_public_lists_through_the_cli(cli: Cli) -> None:
    visits = shared("hsg-visits")
    unsc = shared("unsc-elected/security_council_non_permanent.csv")
    done = cli("ingest", "visits", str(visits), "--format", "hsg-visits-xml")
    assert "hsg-visits: read 3264, loaded 3264, rejected 0" in done.out, done.err
    done = cli(
        "ingest",
        "memberships",
        str(unsc),
        "--mapping",
        str(REPO / "examples" / "mappings" / "unsc-elected.yaml"),
    )
    assert "unsc-elected: read 660, loaded 660, rejected 0" in done.out, done.err
    rows = cli.sql("""
        SELECT (SELECT count(*) FROM visits WHERE year(start_date) = 2023) AS people_2023,
               (SELECT count(*) FROM memberships_in_force(DATE '1950-06-30')
                 WHERE body = 'UNSC') AS seats_1950,
               (SELECT count(*) FROM memberships_in_force(DATE '2019-06-30')
                 WHERE body = 'UNSC') AS seats_2019""")
    assert rows == [{"people_2023": "81", "seats_1950": "6", "seats_2019": "10"}]
    assert "0 row(s) in quarantine" in cli("quarantine").out


# --- output a person can read and a pipe can take (in-process on the session's sample warehouse)


@pytest.fixture
def analyst(sample_warehouse: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(sample_warehouse.home))
    monkeypatch.setenv("COLUMNS", "100")
    return sample_warehouse


def _out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    done = capsys.readouterr()
    assert code == 0, done.err
    return done.out


def test_sql_prints_json_with_types_and_csv_as_before(
    analyst: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = "SELECT * FROM annual_summary WHERE country = 'KAZ' AND year = 2023"
    rows = json.loads(_out(capsys, "sql", summary, "--format", "json"))
    assert rows == [{"country": "KAZ", "year": 2023, **DEMO_KAZ_2023}]
    typed = json.loads(
        _out(
            capsys,
            "sql",
            "SELECT min(start_date) AS first, sum(rows_loaded) AS loaded, 0.5 AS share, "
            "max(loaded_at) IS NOT NULL AS stamped FROM visits, load_batches",
            "--format",
            "json",
        )
    )
    assert typed == [
        {"first": "2023-01-01", "loaded": typed[0]["loaded"], "share": 0.5, "stamped": True}
    ]
    assert isinstance(typed[0]["loaded"], int)  # sum() is a DECIMAL(38,0): still a number
    as_csv = _out(capsys, "sql", summary, "--csv")
    assert _out(capsys, "sql", summary, "--format", "csv") == as_csv
    assert as_csv.splitlines()[1].startswith("KAZ,2023,5,5,1,")


def test_nested_results_print_in_every_format(
    analyst: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = analyst.user_reference_dir / "country_aliases.csv"
    sniff = f"FROM sniff_csv('{aliases}')"
    for fmt in ("table", "csv", "json"):
        _out(capsys, "sql", "FROM duckdb_secrets()", "--format", fmt)
    (native,) = json.loads(_out(capsys, "sql", sniff, "--format", "json"))
    assert native["Columns"][0] == {"name": "alias", "type": "VARCHAR"}
    (row,) = csv.DictReader(io.StringIO(_out(capsys, "sql", sniff, "--csv")))
    assert json.loads(row["Columns"]) == native["Columns"]  # the cell holds the same JSON
    assert '{"name": "alias", "type": "VARCHAR"}' in _out(capsys, "sql", sniff)
    odd = (
        "SELECT INTERVAL 2 DAY AS wait, {'since': DATE '1992-01-03', 'gap': INTERVAL 1 DAY} AS s, "
        "MAP {1: 'one'} AS m, [DATE '2023-01-02'] AS days, '\\xAA'::BLOB AS b, "
        "union_value(n := 1)::UNION(n INTEGER, t VARCHAR) AS u"
    )
    (value,) = json.loads(_out(capsys, "sql", odd, "--format", "json"))
    assert value["wait"] == "2 days" and value["days"] == ["2023-01-02"]
    assert json.loads(value["s"]) == {"since": "1992-01-03", "gap": "1 day"}
    assert json.loads(value["m"]) == {"1": "one"}
    (cells,) = csv.DictReader(io.StringIO(_out(capsys, "sql", odd, "--csv")))
    assert cells["days"] == '["2023-01-02"]' and cells["u"] == "1"
    assert "2 days" in _out(capsys, "sql", odd)


def test_tables_fit_the_terminal_and_wrap_at_words(
    analyst: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "72")
    narrow = _out(capsys, "sql", "SELECT country, year, relations_count FROM annual_summary")
    header = narrow.splitlines()[0].split()
    assert header == ["country", "year", "relations_count"]  # whole names, one line
    # too wide for a table: one block per row, each column name whole at the start of a line
    visits = _out(capsys, "sql", "SELECT * FROM visits ORDER BY visit_id LIMIT 2")
    names = [line.split()[0] for line in visits.splitlines() if line and line[0] != " "]
    assert "visitor_organization" in names and "start_precision" in names
    quarantine = _out(capsys, "quarantine")
    reasons = " ".join(
        json.loads(_out(capsys, "quarantine", "--format", "json"))[i]["reasons"] for i in range(7)
    )
    for output in (narrow, visits, quarantine):
        assert max(len(line) for line in output.splitlines()) <= 72
    words = set(re.split(r"[\s│]+", quarantine))
    assert [w for w in reasons.split() if w not in words] == []  # no word cut in two
    assert "7 row(s) in quarantine" in quarantine
    many = _out(capsys, "sql", "SELECT * FROM range(600)")
    assert "600 rows, the first 500 shown: `--format csv` or `--format json`" in many
    assert len(_out(capsys, "sql", "SELECT * FROM range(600)", "--csv").splitlines()) == 601


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_messages_end_in_one_full_stop(
    analyst: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        sentence("attempting to connect to the server.") == "attempting to connect to the server."
    )
    assert sentence("TimeoutError: no answer") == "TimeoutError: no answer."
    assert str(QueryError("a server.", hint="Retry.")) == "a server. Retry."
    assert str(QueryError("not found!", hint="Check.")) == "not found! Check."
    assert str(QueryError("no such table", hint="Check.")) == "no such table. Check."
    assert str(QueryError("bad\nLINE 1: x\n  ^", hint="Check.")) == "bad\nLINE 1: x\n  ^\nCheck."
    for query, says in (
        ("", "the query is empty. Give one read-only query"),
        ("SELECT * FROM no_such_table", "no_such_table does not exist!"),
    ):
        assert main(["sql", query]) == 64
        err = capsys.readouterr().err
        assert says in err
        assert "!." not in err and ".." not in err and "got 0" not in err
    # at a terminal a long message wraps between words; in a log it stays one line
    monkeypatch.setenv("COLUMNS", "40")
    text = str(QueryError("the query ran longer than 0.2 s and was stopped"))
    wrapped = error_paragraph(text, _Terminal())
    assert max(len(line) for line in wrapped.splitlines()) <= 40 < len(text)
    assert wrapped.split() == text.split()
    assert error_paragraph(text, io.StringIO()) == text


def test_a_closed_pipe_ends_the_command_quietly(sample_warehouse: Settings) -> None:
    env = {**os.environ, "RELATIONS_ETL_HOME": str(sample_warehouse.home)}
    started = []
    for args in (
        ["sql", "SELECT * FROM range(100000)"],
        ["sql", "SELECT * FROM range(100000)", "--csv"],
        ["quarantine"],
    ):
        # the reader is gone before the first byte, as `| head` is after its lines
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:  # started together: readers of one warehouse, opened read-only
            started.append(
                (
                    args,
                    subprocess.Popen(
                        [str(SCRIPT), *args],
                        stdout=write_end,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    ),
                )
            )
        finally:
            os.close(write_end)
    for args, process in started:
        _, err = process.communicate(timeout=120)
        assert (process.returncode, err) == (0, ""), args
    assert not (sample_warehouse.home / "logs").exists()  # no traceback file written
