"""The hostile corpus (tests/cases/hostile): every broken or malicious list fails clearly or is
quarantined row by row, and nothing already loaded is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from relations_etl import errors
from relations_etl.config import Kind, Mapping, Source, builtin_mapping
from relations_etl.pipeline import run_source
from relations_etl.reference import Reference
from relations_etl.settings import Settings

CASES_DIR = Path(__file__).parent / "cases" / "hostile"
SPEC = yaml.safe_load((CASES_DIR / "cases.yaml").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = SPEC["cases"]
NAME = "hostile"
GOOD = ["g1", "g2", "g3"]


def _case_id(case: dict[str, Any]) -> str:
    extra = "+".join(f"{k}={v}" for k, v in {**case.get("options", {})}.items())
    return (
        case["file"] + (f"[{extra}]" if extra else "") + ("[mapping]" if "mapping" in case else "")
    )


def hostile_source(case: dict[str, Any], name: str = NAME) -> Source:
    """The Source a case describes: the base mapping with the case's mapping and options."""
    fmt = case.get("format")
    if fmt == "hsg-visits-xml":
        mapping = builtin_mapping(fmt, Kind.VISITS)
    else:
        data = {**SPEC["base_mapping"], **case.get("mapping", {})}
        data["options"] = {**data.get("options", {}), **case.get("options", {})}
        mapping = Mapping.model_validate(data)
    return Source(
        name=name,
        kind=Kind.VISITS,
        uri=str(CASES_DIR / case["file"]),
        format=fmt,
        mapping=mapping,
    )


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference.load(Settings())


def _good_rows(settings: Settings) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return conn.execute(
            "SELECT visit_id, visitor_name, visitor_country, start_date, end_date, batch_id "
            "FROM visits WHERE source = ? AND source_record IN ('g1', 'g2', 'g3') ORDER BY 1",
            [NAME],
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def loaded(tmp_path: Path, ref: Reference) -> tuple[Settings, list[tuple[Any, ...]]]:
    """A warehouse that already holds good.csv as source `hostile`."""
    settings = Settings(home=tmp_path / "warehouse")
    result = run_source(hostile_source({"file": "good.csv"}), settings, ref=ref)
    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    before = _good_rows(settings)
    assert len(before) == 3
    return settings, before


def test_corpus_is_big_enough() -> None:
    files = [p for p in CASES_DIR.rglob("*") if p.is_file() and p.suffix not in (".py", ".yaml")]
    assert len(files) >= 40
    named = {c["file"] for c in CASES}
    unused = sorted(
        str(p.relative_to(CASES_DIR))
        for p in files
        if p.name != "good.csv" and p.name not in named and p.parent.name not in named
    )
    assert unused == [], "every corpus file has a case"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case(
    case: dict[str, Any], loaded: tuple[Settings, list[tuple[Any, ...]]], ref: Reference
) -> None:
    settings, before = loaded
    source = hostile_source(case)
    if "error" in case:
        expected = case["error"]
        with pytest.raises(errors.RelationsEtlError) as info:
            run_source(source, settings, ref=ref)
        error = info.value
        assert isinstance(error, getattr(errors, expected["class"])), repr(error)
        assert error.exit_code == expected["exit_code"]
        for attribute in expected["names"]:
            assert getattr(error, attribute) is not None, f"{attribute} missing from {error}"
        assert error.source == NAME
        assert expected["says"] in str(error)
        assert "\n" not in str(error), "one paragraph"
        _assert_failure_audited(settings, str(error))
    else:
        result = run_source(source, settings, ref=ref)
        counts = (
            result.rows_read,
            result.rows_loaded,
            result.rows_rejected,
            result.rows_deduplicated,
        )
        assert counts == (case["read"], case["loaded"], case["rejected"], case["deduplicated"])
        assert result.rows_read == (
            result.rows_loaded + result.rows_rejected + result.rows_deduplicated
        )
        _assert_rejections(settings, result.batch_id, case)
        _assert_values(settings, result.batch_id, case.get("values", {}))
    assert _good_rows(settings) == before, "rows already loaded must survive"


def _assert_failure_audited(settings: Settings, message: str) -> None:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        status, error = conn.execute(
            "SELECT status, error FROM load_batches WHERE source = ? ORDER BY started_at DESC "
            "LIMIT 1",
            [NAME],
        ).fetchone() or (None, None)
    finally:
        conn.close()
    assert (status, error) == ("failed", message)


def _rejected(settings: Settings, batch_id: str) -> list[dict[str, Any]]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        rows = conn.execute(
            "SELECT source_row, source_record, CAST(raw AS VARCHAR), "
            "list_transform(errors, lambda e: e['check']), "
            "list_transform(errors, lambda e: e.message) "
            "FROM rejected_rows WHERE batch_id = ? ORDER BY source_file, source_row",
            [batch_id],
        ).fetchall()
    finally:
        conn.close()
    return [
        {"row": r[0], "record": r[1], "raw": json.loads(r[2]), "checks": r[3], "messages": r[4]}
        for r in rows
    ]


def _assert_rejections(settings: Settings, batch_id: str, case: dict[str, Any]) -> None:
    rejected = _rejected(settings, batch_id)
    assert len(rejected) == case["rejected"]
    by_row = {r["row"]: r for r in rejected}
    for row, checks in case.get("rejects", {}).items():
        assert row in by_row, f"row {row} not quarantined: {rejected}"
        assert set(checks) <= set(by_row[row]["checks"]), by_row[row]
    for record, checks in case.get("rejected_records", {}).items():
        entries = [r for r in rejected if r["record"] == record]
        assert entries, f"record {record} not quarantined: {rejected}"
        for entry in entries:
            assert set(checks) <= set(entry["checks"]), entry
    for key in case.get("raw_keys", []):
        assert all(key in r["raw"] for r in rejected), rejected
    messages = " | ".join(m for r in rejected for m in r["messages"])
    for text in case.get("messages", []):
        assert text in messages


def _assert_values(settings: Settings, batch_id: str, values: dict[str, list[str]]) -> None:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        for field, wanted in values.items():
            found = {
                str(v[0])
                for v in conn.execute(
                    f"SELECT {field} FROM visits WHERE batch_id = ?", [batch_id]
                ).fetchall()
            }
            assert set(wanted) <= found, (field, found)
    finally:
        conn.close()
