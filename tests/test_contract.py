"""The published contract: schemas/ in sync with the code, Parquet readable without this package,
SQL views and macros answering the questions of the source document, deployments that resolve."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from relations_etl.config import Kind, load_sources
from relations_etl.contract import (
    CONTRACT_VERSION,
    DOCS,
    EXAMPLES,
    describe,
    published_columns,
    published_tables,
)
from relations_etl.contract.compat import changes, verdict
from relations_etl.contract.files import (
    ContractError,
    check,
    history_problems,
    shipped,
    view_columns,
    write,
)
from relations_etl.db import apply_sql
from relations_etl.facts import fact_columns
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO, Cli, Done


def test_schemas_folder_is_in_sync_with_the_code() -> None:
    stale = check(REPO / "schemas")
    assert not stale, (
        "schemas/ disagrees with the code: run `relations-etl contracts`\n" + "\n".join(stale)
    )


def test_contracts_command_regenerates_and_checks(cli: Cli, tmp_path: Path) -> None:
    # in this process: exit 1 as the installed script is test_hostile's nightly with a failure
    folder = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", folder)

    def contracts(*args: str) -> Done:
        return cli("contracts", "--out", str(folder), *args)

    assert contracts("--check").code == 0
    (folder / "visits.schema.json").write_text("{}\n", encoding="utf-8")
    (folder / "relations.arrow.json").unlink()
    (folder / "gone.arrow.json").write_text("{}\n", encoding="utf-8")
    checked = contracts("--check")
    assert checked.code == 1
    assert f"{folder / 'visits.schema.json'}: differs from the code" in checked.err
    assert f"{folder / 'relations.arrow.json'}: missing" in checked.err
    assert f"{folder / 'gone.arrow.json'}: no longer generated" in checked.err
    regenerated = contracts()
    assert regenerated.code == 0, regenerated.err
    assert str(folder / "relations.arrow.json") in regenerated.out.splitlines()
    assert not (folder / "gone.arrow.json").exists()
    assert contracts("--check").code == 0
    for name in ("visits.schema.json", "relations.arrow.json"):
        assert (folder / name).read_text(encoding="utf-8") == (REPO / "schemas" / name).read_text(
            encoding="utf-8"
        )


SHIPPED = {"visits": {"visit_id": "string", "start_date": "date32[day]"}}


def test_compatibility_verdicts_on_removed_retyped_and_added_columns() -> None:
    removed = {"visits": {"visit_id": "string"}}
    retyped = {"visits": {"visit_id": "string", "start_date": "string"}}
    added = {"visits": {**SHIPPED["visits"], "city": "string"}}
    table_added = {**SHIPPED, "relations": {"relation_id": "string"}}

    assert [str(c) for c in changes(SHIPPED, removed)] == ["column visits.start_date removed"]
    problems = verdict("1.0.0", SHIPPED, "1.1.0", removed)
    assert (
        problems[0]
        == "column visits.start_date removed since contract 1.0.0 but the version is 1.1.0"
    )
    assert "needs a major bump" in problems[-1] and "CONTRACT_VERSION = '2.0.0'" in problems[-1]
    assert verdict("1.0.0", SHIPPED, "2.0.0", removed) == []

    (change,) = changes(SHIPPED, retyped)
    assert (str(change), change.breaking) == (
        "column visits.start_date retyped (date32[day] -> string)",
        True,
    )
    assert verdict("1.0.0", SHIPPED, "1.0.0", retyped)
    assert verdict("1.4.2", SHIPPED, "2.0.0", retyped) == []

    (change,) = changes(SHIPPED, added)
    assert (str(change), change.breaking) == ("column visits.city added", False)
    for too_small in ("1.0.0", "1.0.1"):
        problems = verdict("1.0.0", SHIPPED, too_small, added)
        assert "at least a minor bump" in problems[-1] and "'1.1.0'" in problems[-1]
    assert verdict("1.0.0", SHIPPED, "1.1.0", added) == []
    assert verdict("1.0.0", SHIPPED, "1.1.0", table_added) == []
    assert verdict("1.0.0", SHIPPED, "1.0.0", table_added)

    assert verdict("1.0.0", SHIPPED, "1.1.0", {}) != [], "a removed table is breaking"
    assert verdict("1.0.0", SHIPPED, "1.0.1", SHIPPED) == []
    assert verdict("1.2.0", SHIPPED, "1.1.0", SHIPPED) == [
        "contract version went backwards: 1.2.0 -> 1.1.0"
    ]


def _ship(folder: Path, version: str, tables: dict[str, dict[str, str]]) -> None:
    (folder / "history").mkdir(parents=True, exist_ok=True)
    document = {"contract_version": version, "tables": tables}
    (folder / "history" / f"{version}.json").write_text(json.dumps(document), encoding="utf-8")


def test_contracts_refuse_a_shipped_version_the_code_broke(tmp_path: Path) -> None:
    shipped = json.loads((REPO / "schemas" / "contract.json").read_text(encoding="utf-8"))
    assert shipped["contract_version"] == CONTRACT_VERSION
    tables = json.loads(
        (REPO / "schemas" / "history" / f"{CONTRACT_VERSION}.json").read_text(encoding="utf-8")
    )["tables"]
    # the shipped contract had a column the code no longer publishes
    _ship(tmp_path, CONTRACT_VERSION, {**tables, "visits": {**tables["visits"], "mood": "string"}})
    with pytest.raises(ContractError) as refused:
        write(tmp_path)
    message = str(refused.value)
    assert refused.value.exit_code == 78  # configuration, not "a bug" (70)
    assert "column visits.mood removed" in message
    major = int(CONTRACT_VERSION.split(".")[0]) + 1
    assert f"CONTRACT_VERSION = '{major}.0.0'" in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == [f"{CONTRACT_VERSION}.json", "history"]

    # along the shipped history too: 0.9.5 dropped a table 0.9.0 had without a major bump
    chain = tmp_path / "chain"
    _ship(chain, "0.9.0", {**tables, "people": {"person_id": "string"}})
    _ship(chain, "0.9.5", tables)
    _ship(chain, CONTRACT_VERSION, tables)
    problems = history_problems(chain, tables)
    assert problems[0] == "table people removed since contract 0.9.0 but the version is 0.9.5"
    assert "CONTRACT_VERSION = '1.0.0'" in problems[1]
    assert problems[1:] and len(problems) == 2
    assert problems[0] in check(chain)


def test_no_column_analysts_query_is_a_reserved_word() -> None:
    conn = duckdb.connect()
    try:
        apply_sql(conn, REPO / "warehouse" / "sql")
        reserved = conn.execute(
            """SELECT c.table_name || '.' || c.column_name
            FROM information_schema.columns AS c
            JOIN duckdb_keywords() AS k ON lower(k.keyword_name) = lower(c.column_name)
            WHERE k.keyword_category = 'reserved' ORDER BY 1"""
        ).fetchall()
        # so a steward's query needs no quotes
        assert conn.sql("SELECT column_name, check_name, rows FROM quarantine_summary").columns == [
            "column_name",
            "check_name",
            "rows",
        ]
    finally:
        conn.close()
    assert reserved == []


def test_renaming_a_view_column_was_a_major_version() -> None:
    history = shipped(REPO / "schemas")
    views = {f"view {v}": c for v, c in view_columns(REPO / "warehouse" / "sql").items()}
    assert "view quarantine_summary" not in history["1.1.0"]  # views are tracked from 1.2.0
    assert {"column", "check"} <= set(history["1.2.0"]["view quarantine_summary"])
    assert views["view rejections_by_reason"]["check_name"] == "VARCHAR"
    current = {**history[CONTRACT_VERSION], **views}
    problems = verdict("1.2.0", history["1.2.0"], "1.3.0", current)
    removed = "column view rejections_by_reason.check removed since contract 1.2.0"
    assert f"{removed} but the version is 1.3.0" in problems
    assert "CONTRACT_VERSION = '2.0.0'" in problems[-1]
    assert verdict("1.2.0", history["1.2.0"], "2.0.0", current) == []


@pytest.fixture
def demo(demo_warehouse: Settings) -> Settings:
    """This test's copy of the demo warehouse (the demo sources file, loaded by the library)."""
    return demo_warehouse


def _json_value(value: Any) -> Any:
    """A Parquet value as a JSON document holds it (ISO 8601 dates)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _published_rows(root: Path, table: str) -> list[dict[str, Any]]:
    files = sorted((root / table).glob("year=*/data.parquet"))
    assert files, f"nothing published for {table}"
    return [_json_value(row) for f in files for row in pq.read_table(f).to_pylist()]


def _committed(name: str) -> Any:
    return json.loads((REPO / "schemas" / name).read_text(encoding="utf-8"))


def test_published_files_carry_the_contract(demo: Settings) -> None:
    tables = ["visits", "memberships", "relations", "reported_totals", "rejected_rows"]
    assert list(published_tables()) == tables
    for table in published_tables():
        arrow = _committed(f"{table}.arrow.json")
        for path in sorted((demo.parquet_dir / table).glob("year=*/data.parquet")):
            schema = pq.read_schema(path)
            assert [{"name": f.name, "type": str(f.type)} for f in schema] == arrow["fields"], path
            metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
            assert metadata == arrow["metadata"], path
            assert metadata["contract_version"] == CONTRACT_VERSION
            assert metadata["contract_table"] == table
            described = {
                k.removeprefix("description:"): v
                for k, v in metadata.items()
                if k.startswith("description:")
            }
            assert list(described) == schema.names == published_columns(table)
            assert described == {c: describe(table, c) for c in schema.names}
    metadata = pq.read_schema(demo.parquet_dir / "visits" / "year=2023" / "data.parquet").metadata
    assert metadata[b"description:visitor_title"] == DOCS["visitor_title"].encode()


def test_every_published_row_passes_the_json_schema(demo: Settings) -> None:
    for table in published_tables():
        validator = Draft202012Validator(
            _committed(f"{table}.schema.json"), format_checker=FormatChecker()
        )
        rows = _published_rows(demo.parquet_dir, table)
        for row in rows:
            assert not list(validator.iter_errors(row)), (table, row)
        broken = {**rows[0], next(iter(rows[0])): 42}
        assert list(validator.iter_errors(broken)), "a wrong type fails"
        assert list(validator.iter_errors({**rows[0], "extra": "x"})), "an unknown column fails"
    visits = Draft202012Validator(_committed("visits.schema.json"), format_checker=FormatChecker())
    row = _published_rows(demo.parquet_dir, "visits")[0]
    assert [e.validator for e in visits.iter_errors({**row, "visitor_role": "emperor"})] == ["enum"]
    assert [e.validator for e in visits.iter_errors({**row, "start_date": "2023-13-01"})] == [
        "format"
    ]
    assert [e.validator for e in visits.iter_errors({**row, "host_country": "Kazakhstan"})] == [
        "pattern"
    ]
    assert [e.validator for e in visits.iter_errors({**row, "host_country": None})] == ["type"]
    assert not list(visits.iter_errors({**row, "visitor_country": None})), "nullable"


# differ from run to run: checked for their shape by the JSON Schema, not for their value
_RUN_DEPENDENT = {"batch_id", "loaded_at", "rejected_at"}


def test_examples_are_real_rows_of_the_demo_warehouse(demo: Settings) -> None:
    for table in published_tables():
        assert table in EXAMPLES, (
            f"add a real {table} row to EXAMPLES in relations_etl/contract/__init__.py"
        )
        example = EXAMPLES[table]
        assert list(example) == published_columns(table), f"EXAMPLES[{table!r}] columns"
        validator = Draft202012Validator(
            _committed(f"{table}.schema.json"), format_checker=FormatChecker()
        )
        assert not list(validator.iter_errors(example)), table

        def same(row: dict[str, Any], example: dict[str, Any] = example) -> bool:
            return all(
                row[c].endswith(v) if c == "source_file" else row[c] == v
                for c, v in example.items()
                if c not in _RUN_DEPENDENT
            )

        rows = _published_rows(demo.parquet_dir, table)
        assert sum(map(same, rows)) == 1, f"EXAMPLES[{table!r}] is not a row of the demo"


def _readme_examples() -> dict[str, str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)```", readme, re.DOTALL)
    return dict(blocks)


def test_readme_examples_read_every_published_table(
    demo: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = _readme_examples()
    assert sorted(examples) == ["duckdb", "metadata", "pandas", "polars"]
    assert all(len(code.strip().splitlines()) == 3 for code in examples.values())
    assert 'spark.read.parquet("warehouse/parquet/visits")' in (REPO / "README.md").read_text(
        encoding="utf-8"
    )
    readme_path = "warehouse/parquet/visits"
    for table in published_tables():
        expected = run_query(demo, f"SELECT count(*) FROM {table}").item()
        assert expected > 0, table
        where = str(demo.parquet_dir / table)
        counts = duckdb.sql(examples["duckdb"].replace(readme_path, where)).fetchall()
        assert sum(n for _, n in counts) == expected, table
        assert [year for year, _ in counts] == sorted(year for year, _ in counts)
        for reader in ("pandas", "polars"):
            capsys.readouterr()
            exec(examples[reader].replace(readme_path, where), {})
            assert capsys.readouterr().out == f"{expected}\n", (reader, table)
    exec(examples["metadata"].replace("warehouse/parquet", str(demo.parquet_dir)), {})
    assert capsys.readouterr().out == f"{CONTRACT_VERSION} {DOCS['visitor_role']}\n"


def test_parquet_is_readable_by_other_tools(demo: Settings) -> None:
    root = demo.parquet_dir
    for kind, table in (
        (Kind.VISITS, "visits"),
        (Kind.MEMBERSHIPS, "memberships"),
        (Kind.RELATIONS, "relations"),
        (Kind.REPORTED_TOTALS, "reported_totals"),
    ):
        expected = run_query(demo, f"SELECT count(*) FROM {table}").item()
        by_polars = pl.scan_parquet(root / table / "**" / "*.parquet", hive_partitioning=True)
        assert by_polars.select(pl.len()).collect().item() == expected
        # the hive partition adds `year`; a table's own `year` lives in the folder name only
        own = [c for c in fact_columns(kind) if c != "year"]
        assert by_polars.collect_schema().names() == [*own, "year"]
        by_arrow = ds.dataset(root / table, format="parquet", partitioning="hive")
        assert by_arrow.count_rows() == expected
        years = duckdb.sql(
            f"SELECT DISTINCT year FROM read_parquet('{root / table}/*/*.parquet', "
            "hive_partitioning=true) ORDER BY year"
        ).fetchall()
        assert years, table
    rejected = pl.read_parquet(root / "rejected_rows" / "**" / "*.parquet")
    assert rejected.height == 7
    assert rejected.schema["errors"] == pl.List(
        pl.Struct(
            {"column": pl.String, "check": pl.String, "value": pl.String, "message": pl.String}
        )
    )
    assert not list(root.rglob("*.tmp")), "no temporary files are left behind"


def test_relations_in_force_on_a_date_is_one_query(demo: Settings) -> None:
    count = "SELECT count(*) FROM relations_in_force(DATE '{}') WHERE country = '{}'"
    assert run_query(demo, count.format("1991-06-30", "KAZ")).item() == 0
    # USA (1991-12) and China (1992-01), plus Germany and Turkey, known only as "1992": a date
    # known to the month or year counts from the first day of that month or year
    assert run_query(demo, count.format("1992-01-31", "KAZ")).item() == 4
    assert run_query(demo, count.format("1991-12-31", "KAZ")).item() == 1
    assert run_query(demo, count.format("2023-12-31", "KAZ")).item() == 5
    assert run_query(demo, count.format("2023-12-31", "CHN")).item() == 1, "relations are mutual"


def test_relations_end_when_severed_and_resume_when_restored(
    settings: Settings, tmp_path: Path
) -> None:
    listing = tmp_path / "relations.csv"
    listing.write_text(
        "country,counterpart,event,date\n"
        "Kazakhstan,Israel,established,1992-04-10\n"
        "Israel,Kazakhstan,severed,2000-05\n"
        "Kazakhstan,Israel,restored,2001\n",
        encoding="utf-8",
    )
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  - {name: r, kind: relations, uri: relations.csv, mapping: {columns: "
        "{country: country, counterpart: counterpart, event: event, date: event_date}}}\n",
        encoding="utf-8",
    )
    (source,) = load_sources(config)
    run_source(source, settings)
    at = "SELECT count(*) FROM relations_in_force(DATE '{}') WHERE country = 'KAZ'"
    assert [
        run_query(settings, at.format(d)).item() for d in ("1992-06-01", "2000-12-31", "2001-01-01")
    ] == [1, 0, 1]
    summary = run_query(
        settings,
        "SELECT year, relations_count FROM annual_summary "
        "WHERE country = 'ISR' AND year IN (1999, 2000, 2001)",
    )
    assert sorted(summary.rows()) == [(1999, 1), (2000, 0), (2001, 1)]


def test_prefect_deployments_point_at_real_flows() -> None:
    spec = yaml.safe_load((REPO / "flows" / "prefect.yaml").read_text(encoding="utf-8"))
    names = set()
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(
            path.removeprefix("flows/").removesuffix(".py").replace("/", ".")
        )
        flow = getattr(module, name)
        names.add(flow.name)
        assert set(deployment.get("parameters") or {}) <= set(flow.parameters.properties)
        if "config" in (deployment.get("parameters") or {}):
            assert (REPO / deployment["parameters"]["config"]).is_file()
    assert names == {"nightly", "ingest-source", "replay-quarantine"}
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly"]
    (schedule,) = nightly["schedules"]
    from prefect.client.schemas.schedules import CronSchedule

    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "15 2 * * *"
