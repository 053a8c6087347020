"""`relations-etl quarantine`: a limit at a terminal, all rows to a pipe, a summary by reason."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from relations_etl_flows.cli import QUARANTINE_LIMIT, main

from relations_etl.config import Source
from relations_etl.pipeline import run_source
from relations_etl.settings import Settings
from tests.conftest import trips_source

HEADER = "record,host,visitor_country,visitor,title,year"
# open rejected rows by the value that stops them: 40 + 15 + 6 unknown countries, 3 unknown titles
UNKNOWN = {"Atlantis": 40, "Lemuria": 15, "Hyperborea": 6}


class _Terminal(io.StringIO):
    """Standard output as a terminal has it."""

    def isatty(self) -> bool:
        return True


def _list(path: Path) -> Source:
    lines = [HEADER]
    n = 0
    for country, count in UNKNOWN.items():
        for _ in range(count):
            n += 1
            lines.append(f"r{n},Kazakhstan,{country},Envoy {n},President,2023")
    for _ in range(3):
        n += 1
        lines.append(f"r{n},Kazakhstan,France,Envoy {n},Grand Vizier,2023")
    for _ in range(5):
        n += 1
        lines.append(f"r{n},Kazakhstan,France,Envoy {n},President,2023")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return trips_source(path, name="envoys", date="year")


REJECTED = sum(UNKNOWN.values()) + 3


@pytest.fixture
def steward(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A warehouse with 64 open rejected rows of one source, for the CLI in this process."""
    result = run_source(_list(tmp_path / "envoys.csv"), settings)
    assert (result.rows_rejected, result.rows_loaded) == (REJECTED, 5)
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def _at_terminal(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    screen = _Terminal()
    with monkeypatch.context() as patched:
        patched.setattr("sys.stdout", screen)
        code = main(["quarantine", *args])
    return code, screen.getvalue()


def _records(text: str) -> list[str]:
    """The source_record cells of a printed table, in order."""
    return [line.split()[3] for line in text.splitlines() if line.strip().startswith("envoys ")]


def test_a_terminal_gets_the_first_rows_and_how_many_more(
    steward: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, shown = _at_terminal(monkeypatch, "--source", "envoys")
    assert code == 0
    assert len(_records(shown)) == QUARANTINE_LIMIT
    more = REJECTED - QUARANTINE_LIMIT
    assert f"{QUARANTINE_LIMIT} of {REJECTED} rows shown; {more} more rows: `--limit 0`" in shown
    assert f"{REJECTED} row(s) in quarantine" in shown
    # under the rows, the values that stop them, most frequent first
    values = shown.split("row(s) in quarantine")[1]
    assert values.index("'Atlantis' (country_known): 40 rows") < values.index("'Lemuria'")

    code, five = _at_terminal(monkeypatch, "--limit", "5")
    assert code == 0 and _records(five) == ["r1", "r2", "r3", "r4", "r5"]
    assert f"5 of {REJECTED} rows shown" in five

    code, everything = _at_terminal(monkeypatch, "--limit", "0")
    assert code == 0 and len(_records(everything)) == REJECTED
    assert "rows shown" not in everything


def test_a_pipe_gets_every_row_and_a_limit_is_said_on_stderr(
    steward: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quarantine", "--csv"]) == 0
    done = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(done.out)))) == REJECTED
    assert done.err == ""
    assert main(["quarantine", "--format", "json", "--limit", "7"]) == 0
    done = capsys.readouterr()
    assert [r["source_record"] for r in json.loads(done.out)] == [f"r{n}" for n in range(1, 8)]
    assert f"7 of {REJECTED} rows shown; {REJECTED - 7} more rows" in done.err


def test_a_summary_counts_rows_by_reason_with_the_top_values(
    steward: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quarantine", "--summary", "--format", "json"]) == 0
    reasons = json.loads(capsys.readouterr().out)
    assert [
        (r["column_name"], r["check_name"], r["rows"], r["distinct_values"]) for r in reasons
    ] == [
        ("visitor_country", "country_known", sum(UNKNOWN.values()), 3),
        ("visitor_title", "title_known", 3, 1),
    ]
    assert reasons[0]["top_values"] == "'Atlantis' (40), 'Lemuria' (15), 'Hyperborea' (6)"
    assert reasons[1]["top_values"] == "'Grand Vizier' (3)"
    assert main(["quarantine", "--summary", "--limit", "1", "--csv"]) == 0
    done = capsys.readouterr()
    assert [r["rows"] for r in csv.DictReader(io.StringIO(done.out))] == ["61"]
    assert "1 of 2 reasons shown; 1 more reason" in done.err


def test_a_limit_is_a_count(steward: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    for wrong in ("-1", "ten"):
        with pytest.raises(SystemExit) as exited:
            main(["quarantine", "--limit", wrong])
        assert exited.value.code == 2
        assert "--limit" in capsys.readouterr().err
