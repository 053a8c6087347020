"""Contract files: render schemas/ from the code, write them, and tell which ones are stale."""

from __future__ import annotations

import itertools
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from relations_etl.contract import (
    CONTRACT_VERSION,
    DESCRIPTION_PREFIX,
    EXAMPLES,
    REJECTED_VALUES,
    TABLE_KEY,
    VERSION_KEY,
    describe,
    kv_metadata_option,
    partition_column,
    published_columns,
    published_tables,
)
from relations_etl.contract.compat import Tables, parse_version, verdict
from relations_etl.db import apply_sql
from relations_etl.errors import EX_CONFIG, RelationsEtlError
from relations_etl.reasons import Reason
from relations_etl.settings import Settings
from relations_etl.validate import schema_for

HISTORY = "history"
# files of a table that `write` owns: one left over from a removed table is deleted
_PER_TABLE = (".pandera.yaml", ".schema.json", ".arrow.json")


class ContractError(RelationsEtlError):
    """The code changed the published contract without the version bump the change needs."""

    exit_code = EX_CONFIG  # the shipped contract files and the code disagree: not a crash
    hint = "Bump CONTRACT_VERSION as the message says, then run `relations-etl contracts`."


def arrow_schemas(sql_dir: Path) -> dict[str, pa.Schema]:
    """The Arrow schema of every published table, read back from Parquet DuckDB writes as publish
    does; a field is nullable unless its warehouse column is NOT NULL."""
    conn = duckdb.connect()
    schemas = {}
    try:
        apply_sql(conn, sql_dir)
        with tempfile.TemporaryDirectory() as tmp:
            for table in published_tables():
                target = Path(tmp) / f"{table}.parquet"
                conn.execute(
                    f"COPY (SELECT {', '.join(published_columns(table))} FROM {table} LIMIT 0) "
                    f"TO '{target}' (FORMAT parquet, COMPRESSION zstd, {kv_metadata_option(table)})"
                )
                # the file marks a column required when the rows written had no NULL: that
                # follows the data, so the contract takes nullability from the table definition
                required = {
                    name
                    for (name,) in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = ? AND is_nullable = 'NO'",
                        [table],
                    ).fetchall()
                }
                written = pq.read_schema(target)
                schemas[table] = pa.schema(
                    [f.with_nullable(f.name not in required) for f in written], written.metadata
                )
    finally:
        conn.close()
    return schemas


# analyst views are named so in compatibility messages ("column view annual_summary.x removed")
VIEW_PREFIX = "view "


def view_columns(sql_dir: Path) -> Tables:
    """view -> column -> DuckDB type of every analyst view (the reporting layer; staging views
    `stg_*` rename and cast for it and are not part of the contract)."""
    conn = duckdb.connect()
    try:
        apply_sql(conn, sql_dir)
        rows = conn.execute(
            """SELECT c.table_name, c.column_name, c.data_type
            FROM information_schema.columns AS c
            JOIN duckdb_views() AS v ON v.view_name = c.table_name
            WHERE NOT v.internal AND NOT v.temporary AND NOT starts_with(v.view_name, 'stg_')
            ORDER BY c.table_name, c.ordinal_position"""
        ).fetchall()
    finally:
        conn.close()
    views: Tables = {}
    for view, column, dtype in rows:
        views.setdefault(view, {})[column] = dtype
    return views


def compared(document: dict[str, Any]) -> Tables:
    """What a compatibility check compares in a history document: the published tables and,
    from 1.2.0 on, the analyst views (as `view <name>`); older documents have no views."""
    views = document.get("views", {})
    return {**document["tables"], **{f"{VIEW_PREFIX}{v}": c for v, c in views.items()}}


def contract_tables(schemas: dict[str, pa.Schema]) -> Tables:
    """table -> column -> Arrow type: what a compatibility check compares."""
    return {table: {f.name: str(f.type) for f in schema} for table, schema in schemas.items()}


def _rules(table: str) -> dict[str, dict[str, Any]]:
    """column -> JSON Schema keywords for its closed set or pattern, from the pandera schema."""
    kind = published_tables()[table]
    if kind is None:
        return {c: {"enum": list(values)} for c, values in REJECTED_VALUES.items()}
    rules: dict[str, dict[str, Any]] = {}
    for name, column in schema_for(kind).columns.items():
        for check in column.checks:
            if check.name == Reason.ISIN:
                rules.setdefault(name, {})["enum"] = list(check.statistics["allowed_values"])
            elif check.name == Reason.STR_MATCHES:
                rules.setdefault(name, {})["pattern"] = check.statistics["pattern"]
            elif check.name in (Reason.GREATER_THAN_OR_EQUAL_TO, Reason.LESS_THAN_OR_EQUAL_TO):
                side = "minimum" if check.name == Reason.GREATER_THAN_OR_EQUAL_TO else "maximum"
                bound = check.statistics[f"{side[:3]}_value"]
                # JSON Schema bounds numbers only; a date's bound is documented beside it
                if isinstance(bound, int | float):
                    rules.setdefault(name, {})[side] = bound
                else:
                    rules.setdefault(name, {})[f"x-{side}"] = str(bound)
    return rules


def _json_type(dtype: pa.DataType) -> dict[str, Any]:
    if isinstance(dtype, pa.BaseExtensionType) and dtype.extension_name == "arrow.json":
        return {"type": "string", "contentMediaType": "application/json"}
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return {"type": "string"}
    if pa.types.is_date(dtype):
        return {"type": "string", "format": "date"}
    if pa.types.is_timestamp(dtype):
        return {"type": "string", "format": "date-time"}
    if pa.types.is_integer(dtype):
        return {"type": "integer"}
    # DuckDB has no NOT NULL inside a list or struct: every nested value may be null
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return {"type": "array", "items": _json_field(dtype.value_field.with_nullable(True))}
    if pa.types.is_struct(dtype):
        fields = [dtype.field(i) for i in range(dtype.num_fields)]
        return {
            "type": "object",
            "properties": {f.name: _json_field(f.with_nullable(True)) for f in fields},
            "required": [f.name for f in fields],
            "additionalProperties": False,
        }
    raise TypeError(f"no JSON Schema for Arrow type {dtype}: extend contract.files._json_type")


def _json_field(field: pa.Field, rules: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {**_json_type(field.type), **(rules or {})}
    if field.nullable:
        spec["type"] = [spec["type"], "null"]
        if "enum" in spec:
            spec["enum"] = [*spec["enum"], None]
    return spec


def json_schema(table: str, schema: pa.Schema) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one row of a published table, as JSON values."""
    rules, example = _rules(table), EXAMPLES.get(table, {})
    properties = {}
    for field in schema:
        spec = {
            "description": describe(table, field.name),
            **_json_field(field, rules.get(field.name)),
        }
        if field.name in example:
            spec["examples"] = [example[field.name]]
        properties[field.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": table,
        "description": (
            f"One row of the published table {table}, contract {CONTRACT_VERSION}: "
            f"parquet/{table}/year=YYYY/data.parquet, YYYY the year of {partition_column(table)}. "
            "Dates are ISO 8601 strings; x-minimum and x-maximum bound a date column."
        ),
        "type": "object",
        "properties": properties,
        "required": [f.name for f in schema],
        "additionalProperties": False,
    }


def arrow_document(table: str, schema: pa.Schema) -> dict[str, Any]:
    """The Arrow schema of a published file, its folder layout and key-value metadata, as JSON.

    Field nullability is left out: a file marks a column required when it holds no NULL, so it
    varies with the data; which columns may be NULL is in <table>.schema.json and tables.md.
    """
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    return {
        "table": table,
        "contract_version": CONTRACT_VERSION,
        "path": f"parquet/{table}/year=YYYY/data.parquet",
        "partitioning": {"flavor": "hive", "key": "year", "of": partition_column(table)},
        "fields": [{"name": f.name, "type": str(f.type)} for f in schema],
        "metadata": metadata,
    }


def _cell(value: object) -> str:
    text = "NULL" if value is None else value if isinstance(value, str) else json.dumps(value)
    return str(text).replace("|", "\\|").replace("\n", " ")


def _allowed(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return ", ".join(str(v) for v in spec["enum"] if v is not None)
    if "pattern" in spec:
        return f"`{spec['pattern']}`"
    low = spec.get("minimum", spec.get("x-minimum"))
    high = spec.get("maximum", spec.get("x-maximum"))
    if low is None and high is None:
        return ""
    return f"{'' if low is None else low} .. {'' if high is None else high}".strip()


def tables_markdown(schemas: dict[str, pa.Schema]) -> str:
    """The column dictionary of every published table: name, type, meaning, values, example."""
    lines = [
        "# Published tables",
        "",
        f"Contract version **{CONTRACT_VERSION}**. Generated by `relations-etl contracts` from",
        "the code; `tests/test_contract.py` fails when a file here is stale. Each table is a",
        "Parquet dataset `parquet/<table>/year=YYYY/data.parquet` (hive partitioning: readers",
        "add a `year` column from the folder name). Every file carries, in its key-value",
        f"metadata, `{VERSION_KEY}`, `{TABLE_KEY}` and one `{DESCRIPTION_PREFIX}<column>` per",
        "column. Per table: `<table>.schema.json` (JSON Schema of one row), `<table>.arrow.json`",
        "(Arrow schema of the files), `<table>.pandera.yaml` (the checks rows pass before they",
        f"are loaded; fact tables only). Shipped versions: `{HISTORY}/<version>.json`.",
    ]
    for table, schema in schemas.items():
        properties = json_schema(table, schema)["properties"]
        kind = published_tables()[table]
        lines += [
            "",
            f"## {table}",
            "",
            f"Partitioned by the year of `{partition_column(table)}`."
            if partition_column(table) != "year"
            else "Partitioned by `year`, which only the folder name holds (hive readers add it).",
            "",
            "| column | type | nullable | meaning | allowed values | example |",
            "|---|---|---|---|---|---|",
        ]
        for field in schema:
            spec = properties[field.name]
            lines.append(
                "| "
                + " | ".join(
                    [
                        field.name,
                        _cell(str(field.type)),
                        "yes" if field.nullable else "no",
                        _cell(spec["description"]),
                        _cell(_allowed(spec)),
                        _cell(spec["examples"][0]) if "examples" in spec else "",
                    ]
                )
                + " |"
            )
        if kind is None:
            lines += [
                "",
                "No pandera schema: these are the rows that failed one; described from the",
            ]
            lines += ["Arrow schema of the published files and the warehouse table."]
        else:
            lines += ["", "Row rules across columns (a row that fails one goes to rejected_rows):"]
            lines += [f"- `{c.name}` (on {c.title}): {c.error}" for c in schema_for(kind).checks]
    return "\n".join(lines) + "\n"


def _pandera_yaml(table: str) -> str | None:
    kind = published_tables()[table]
    if kind is None:
        return None
    with warnings.catch_warnings():
        # row-level checks are custom: pandera cannot serialize them; tables.md lists them
        warnings.simplefilter("ignore", UserWarning)
        return schema_for(kind).to_yaml() or ""


def _json(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def history_document(tables: Tables, views: Tables) -> dict[str, Any]:
    """What schemas/history/<version>.json ships: the version, each published column's Arrow
    type and each analyst view column's DuckDB type."""
    return {"contract_version": CONTRACT_VERSION, "tables": tables, "views": views}


def views_markdown(views: Tables) -> str:
    """The columns of every analyst view, with their DuckDB types (README says what they mean)."""
    lines = [
        "",
        "# Analyst views",
        "",
        "Views of the warehouse (`warehouse/sql/030_reporting.sql`) that queries rely on: a",
        "renamed or removed column is a major version, an added one a minor version, as for the",
        "published tables. No column name is an SQL reserved word, so none needs quoting.",
    ]
    for view, columns in views.items():
        lines += ["", f"## {view}", "", "| column | type |", "|---|---|"]
        lines += [f"| {name} | {_cell(dtype)} |" for name, dtype in columns.items()]
    return "\n".join(lines) + "\n"


def render(sql_dir: Path | None = None) -> dict[str, str]:
    """Every contract file, path relative to schemas/ -> text."""
    sql = sql_dir or Settings().sql_dir
    schemas = arrow_schemas(sql)
    views = view_columns(sql)
    files: dict[str, str] = {}
    for table, schema in schemas.items():
        yaml_text = _pandera_yaml(table)
        if yaml_text is not None:
            files[f"{table}.pandera.yaml"] = yaml_text
        files[f"{table}.schema.json"] = _json(json_schema(table, schema))
        files[f"{table}.arrow.json"] = _json(arrow_document(table, schema))
    files["tables.md"] = tables_markdown(schemas) + views_markdown(views)
    files["contract.json"] = _json(
        {
            "contract_version": CONTRACT_VERSION,
            "parquet_metadata": {
                "version": VERSION_KEY,
                "table": TABLE_KEY,
                "description": f"{DESCRIPTION_PREFIX}<column>",
            },
            "tables": {
                t: {
                    "path": f"parquet/{t}/year=YYYY/data.parquet",
                    "year_of": partition_column(t),
                    "files": sorted(f for f in files if f.startswith(f"{t}.")),
                }
                for t in schemas
            },
            "views": list(views),
        }
    )
    history = _json(history_document(contract_tables(schemas), views))
    files[f"{HISTORY}/{CONTRACT_VERSION}.json"] = history
    return files


def shipped(folder: Path) -> dict[str, Tables]:
    """The contracts shipped in folder/history, oldest version first."""
    found = {}
    for path in (folder / HISTORY).glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        if document["contract_version"] != path.stem:
            raise ContractError(f"{path} holds contract {document['contract_version']}")
        found[path.stem] = compared(document)
    return dict(sorted(found.items(), key=lambda item: parse_version(item[0])))


def history_problems(folder: Path, tables: Tables) -> list[str]:
    """Bumps that do not match the changes, along the shipped history and up to the code."""
    history = shipped(folder)
    versions = list(history)
    problems = [
        problem
        for older, newer in itertools.pairwise(versions)
        for problem in verdict(older, history[older], newer, history[newer])
    ]
    current = parse_version(CONTRACT_VERSION)
    problems += [
        f"{folder / HISTORY / v}.json is newer than CONTRACT_VERSION {CONTRACT_VERSION}"
        for v in versions
        if parse_version(v) > current
    ]
    if CONTRACT_VERSION in history:
        problems += verdict(CONTRACT_VERSION, history[CONTRACT_VERSION], CONTRACT_VERSION, tables)
    elif older := [v for v in versions if parse_version(v) < current]:
        problems += verdict(older[-1], history[older[-1]], CONTRACT_VERSION, tables)
    return problems


def write(folder: Path, sql_dir: Path | None = None) -> list[Path]:
    """Regenerate every contract file in `folder`; refuse when the code broke a shipped version."""
    files = render(sql_dir)
    tables = compared(json.loads(files[f"{HISTORY}/{CONTRACT_VERSION}.json"]))
    problems = history_problems(folder, tables)
    if problems:
        raise ContractError("the published contract changed:\n  " + "\n  ".join(problems))
    written = []
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    for leftover in _unexpected(folder, files):
        leftover.unlink()
    return written


def _unexpected(folder: Path, files: dict[str, str]) -> list[Path]:
    """Generated-looking files in `folder` the code no longer produces (not older history)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(_PER_TABLE) and p.name not in files
    )


def check(folder: Path, sql_dir: Path | None = None) -> list[str]:
    """What is stale in `folder`: missing, different or left-over files, and bad version bumps."""
    files = render(sql_dir)
    stale = []
    for name, text in files.items():
        target = folder / name
        if not target.is_file():
            stale.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != text:
            stale.append(f"{target}: differs from the code")
    stale += [f"{p}: no longer generated" for p in _unexpected(folder, files)]
    tables = compared(json.loads(files[f"{HISTORY}/{CONTRACT_VERSION}.json"]))
    return stale + history_problems(folder, tables)
