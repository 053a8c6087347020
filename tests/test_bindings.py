"""A source is who it is, not its file name: a name is bound to its list's URI from its first
load, and another list under that name is refused unless the move is declared."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from relations_etl_flows.cli import main
from relations_etl_flows.ingest import nightly

from relations_etl.config import Kind, load_sources, source_for
from relations_etl.errors import SourceBoundError, SourcesFailedError
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO

HEADER = "country,counterpart,event,event_date,notes\n"


def _list(path: Path, *counterparts: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"Kazakhstan,{c},established,1992-01-2{i},\n" for i, c in enumerate(counterparts)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def _relations(settings: Settings) -> list[tuple[Any, ...]]:
    return run_query(
        settings, "SELECT source, source_record, counterpart FROM relations ORDER BY ALL"
    ).rows()


def _binding(settings: Settings, source: str) -> tuple[Any, ...]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return (
            conn.execute(
                "SELECT uri, moved_from FROM source_bindings WHERE source = ?", [source]
            ).fetchone()
            or ()
        )
    finally:
        conn.close()


@pytest.fixture
def lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """a/data.csv (France, Japan) and b/data.csv (India): two lists with one file name."""
    _list(tmp_path / "a" / "data.csv", "France", "Japan")
    _list(tmp_path / "b" / "data.csv", "India")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_another_list_under_a_bound_name_is_refused(settings: Settings, lists: Path) -> None:
    first = source_for(Kind.RELATIONS, "a/data.csv", None, None)
    assert first.name == "data"
    run_source(first, settings)
    before = _relations(settings)
    assert [c for *_, c in before] == ["FRA", "JPN"]
    second = source_for(Kind.RELATIONS, "b/data.csv", None, None)
    with pytest.raises(SourceBoundError) as info:
        run_source(second, settings)
    error = info.value
    old, new = lists.resolve() / "a" / "data.csv", lists.resolve() / "b" / "data.csv"
    assert error.exit_code == 78 and error.source == "data"
    assert f"source name 'data' is bound to {old}" in str(error)
    assert f"{new} is another list" in str(error)
    assert "ingest --name" in str(error) and f"ingest --moved-from {old}" in str(error)
    assert f"moved_from: {old}" in str(error)
    assert _relations(settings) == before, "nothing of the other list is loaded"
    audit = run_query(
        settings,
        "SELECT status, source_uri, source_config IS NULL AS no_config, error FROM load_batches "
        "ORDER BY started_at",
    ).rows()
    # a refused list ran nothing: its entry is not one a quarantine replay would take
    assert audit[-1] == ("failed", str(new), True, str(error))
    assert _binding(settings, "data") == (str(old), None)


def test_one_list_spelled_another_way_is_the_same_source(settings: Settings, lists: Path) -> None:
    (lists / "link.csv").symlink_to(lists / "a" / "data.csv")
    spellings = ["a/data.csv", str(lists / "a" / "data.csv"), "file:a/data.csv", "link.csv"]
    spellings.append(f"file://{lists / 'a' / 'data.csv'}")
    for uri in spellings:
        run_source(source_for(Kind.RELATIONS, uri, "csv", None, name="data"), settings)
    assert len(_relations(settings)) == 2
    statuses = run_query(settings, "SELECT status FROM load_batches").to_series().to_list()
    assert set(statuses) <= {"succeeded", "skipped"}


def test_a_declared_move_rebinds_the_name_once(settings: Settings, lists: Path) -> None:
    old, new = str(lists.resolve() / "a" / "data.csv"), str(lists.resolve() / "b" / "data.csv")
    run_source(source_for(Kind.RELATIONS, "a/data.csv", None, None), settings)
    moved = source_for(Kind.RELATIONS, "b/data.csv", None, None, moved_from=f"file://{old}")
    run_source(moved, settings)
    assert _binding(settings, "data") == (new, old)
    # the moved list's row 1 replaced row 1 of the old one, as the user declared it would; the
    # moved list is the whole list now (a snapshot), so the old row 2 it lacks is retired
    assert [c for *_, c in _relations(settings)] == ["IND"]
    assert run_query(settings, "SELECT fact_id FROM retired_facts").rows() == [("data:2",)]
    # the declaration left in place lets no later, different move through, nor a move back
    _list(lists / "c" / "data.csv", "China")
    for uri in ("c/data.csv", "a/data.csv"):
        with pytest.raises(SourceBoundError, match=f"moved_from names {old}, not the bound URI"):
            run_source(source_for(Kind.RELATIONS, uri, None, None, moved_from=old), settings)
    assert _binding(settings, "data") == (new, old)


def test_a_warehouse_from_before_bindings_is_still_guarded(settings: Settings, lists: Path) -> None:
    run_source(source_for(Kind.RELATIONS, "a/data.csv", None, None), settings)
    conn = duckdb.connect(str(settings.db_path))
    try:
        conn.execute("DELETE FROM source_bindings")  # as a warehouse made before the table
    finally:
        conn.close()
    with pytest.raises(SourceBoundError, match="is bound to"):
        run_source(source_for(Kind.RELATIONS, "b/data.csv", None, None), settings)


def test_a_folder_source_is_bound_to_its_folder(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "decades"
    folder.mkdir()
    corpus = REPO / "tests" / "cases" / "hostile" / "xml_folder"
    shutil.copy(corpus / "1990.xml", folder / "1990.xml")
    source = source_for(Kind.VISITS, str(folder), "hsg-visits-xml", None, name="hsg")
    run_source(source, settings)
    shutil.copy(corpus / "2000.xml", folder / "2000.xml")  # a new file in the same folder
    result = run_source(source, settings)
    assert result.rows_read == 4
    assert _binding(settings, "hsg") == (str(folder.resolve()), None)


@pytest.mark.usefixtures("prefect_server")
def test_a_sources_entry_that_changes_its_uri_is_refused_unless_declared(
    settings: Settings, lists: Path
) -> None:
    config = lists / "sources.yaml"
    entry = "  - {name: kz-relations, kind: relations, uri: %s}\n"
    config.write_text("sources:\n" + entry % "a/data.csv", encoding="utf-8")
    nightly(config=str(config), home=str(settings.home))
    config.write_text("sources:\n" + entry % "b/data.csv", encoding="utf-8")
    with pytest.raises(SourcesFailedError, match=r"kz-relations: .*is bound to"):
        nightly(config=str(config), home=str(settings.home))
    assert [c for *_, c in _relations(settings)] == ["FRA", "JPN"]
    declared = entry.replace("}", ", moved_from: a/data.csv}") % "b/data.csv"
    config.write_text("sources:\n" + declared, encoding="utf-8")
    (source,) = load_sources(config)
    assert source.moved_from == str(lists.resolve() / "a" / "data.csv")
    nightly(config=str(config), home=str(settings.home))
    assert _binding(settings, "kz-relations")[0] == str(lists.resolve() / "b" / "data.csv")


@pytest.mark.usefixtures("prefect_server")
def test_cli_refuses_another_list_with_78_and_takes_a_declared_move(
    lists: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(lists / "warehouse"))
    assert main(["ingest", "relations", "a/data.csv"]) == 0
    capsys.readouterr()
    assert main(["ingest", "relations", "b/data.csv"]) == 78
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "source name 'data' is bound to" in err
    assert main(["ingest", "relations", "b/data.csv", "--moved-from", "a/data.csv"]) == 0
    # a file name outside the name rule gives a name inside it
    _list(lists / "visités 2023.csv", "China")
    assert main(["ingest", "relations", "visités 2023.csv"]) == 0
    assert "visites-2023" in capsys.readouterr().out
