"""Quarantine: what was rejected and why, what to add to the reference data, and replays."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from relations_etl.config import Source
from relations_etl.db import connect
from relations_etl.envelope import ERRORS, FILE, RAW, READ_CHECKS, RECORD, ROW, ROW_ERRORS
from relations_etl.errors import WarehouseError
from relations_etl.rawtable import RawTable
from relations_etl.settings import Settings


@dataclass(frozen=True)
class Replay:
    """Open quarantine rows of one source, rebuilt as raw tables, with the source they came from."""

    source: Source
    tables: list[RawTable]
    keys: list[str]


def _where(source: str | None) -> tuple[str, list[object]]:
    return ("AND source = ?", [source]) if source else ("", [])


def open_rejections(
    settings: Settings, source: str | None = None, limit: int | None = None
) -> pl.DataFrame:
    """Open quarantine rows with every reason, oldest first; only the first `limit` if given."""
    where, params = _where(source)
    conn = connect(settings, read_only=True)
    try:
        frame: pl.DataFrame = conn.sql(
            f"""SELECT source, source_file, source_row, source_record,
                   list_transform(errors, lambda e: e."column" || ': ' || e.message) AS reasons
            FROM rejected_rows WHERE resolved_batch_id IS NULL {where}
            ORDER BY rejected_at, source, source_file, source_row {_limit(limit)}""",
            params=params,
        ).pl()
    finally:
        conn.close()
    return frame.with_columns(pl.col("reasons").list.join("; "))


def _limit(limit: int | None) -> str:
    return "" if limit is None else f"LIMIT {int(limit)}"


def _count(settings: Settings, query: str, params: list[object]) -> int:
    conn = connect(settings, read_only=True)
    try:
        row = conn.execute(query, params).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def count_open(settings: Settings, source: str | None = None) -> int:
    """How many rows are open in quarantine (of one source, if given)."""
    where, params = _where(source)
    return _count(
        settings,
        f"SELECT count(*) FROM rejected_rows WHERE resolved_batch_id IS NULL {where}",
        params,
    )


def unresolved_summary(
    settings: Settings, source: str | None = None, limit: int | None = None
) -> pl.DataFrame:
    """Values that stopped rows, by frequency: what a steward should add or fix first."""
    where, params = _where(source)
    conn = connect(settings, read_only=True)
    try:
        summary: pl.DataFrame = conn.sql(
            f"SELECT * FROM quarantine_summary WHERE true {where} "
            f"ORDER BY rows DESC, source, column_name, value {_limit(limit)}",
            params=params,
        ).pl()
        return summary
    finally:
        conn.close()


def count_unresolved(settings: Settings, source: str | None = None) -> int:
    """How many rows `unresolved_summary` has without a limit."""
    where, params = _where(source)
    return _count(settings, f"SELECT count(*) FROM quarantine_summary WHERE true {where}", params)


# a value longer than this is cut in the summary: a whole raw line is not a useful label
SHOWN_VALUE = 40
# values named per reason in the summary
TOP_VALUES = 5


def reason_summary(
    settings: Settings, source: str | None = None, limit: int | None = None
) -> pl.DataFrame:
    """Open rows counted by reason (source, kind, column, check), most rows first, each with
    its number of distinct values and its TOP_VALUES most frequent values with their rows."""
    where, params = _where(source)
    quoted = f"chr(39) || left(v.error_value, {SHOWN_VALUE}) || chr(39)"
    conn = connect(settings, read_only=True)
    try:
        frame: pl.DataFrame = conn.sql(
            f"""WITH
            errs AS (
                SELECT source, kind, error_column, error_check, error_value, source_file,
                       source_row
                FROM open_rejections() WHERE true {where}
            ),
            reasons AS (
                SELECT source, kind, error_column, error_check,
                       count(DISTINCT (source_file, source_row)) AS rows,
                       count(DISTINCT coalesce(error_value, chr(0))) AS distinct_values
                FROM errs GROUP BY ALL
            ),
            by_value AS (
                SELECT source, kind, error_column, error_check, error_value,
                       count(DISTINCT (source_file, source_row)) AS rows
                FROM errs GROUP BY ALL
            ),
            ranked AS (
                SELECT *, row_number() OVER (
                    PARTITION BY source, kind, error_column, error_check
                    ORDER BY rows DESC, error_value NULLS LAST) AS rank
                FROM by_value
            ),
            final AS (
                SELECT r.source, r.kind, r.error_column AS column_name,
                       r.error_check AS check_name, r.rows, r.distinct_values,
                       string_agg(
                           CASE WHEN v.error_value IS NULL THEN '(empty)'
                                WHEN length(v.error_value) > {SHOWN_VALUE} THEN {quoted} || '...'
                                ELSE {quoted} END || ' (' || v.rows || ')',
                           ', ' ORDER BY v.rank) AS top_values
                FROM reasons AS r
                JOIN ranked AS v USING (source, kind, error_column, error_check)
                WHERE v.rank <= {TOP_VALUES}
                GROUP BY ALL
                ORDER BY r.rows DESC, r.source, column_name, check_name
            )
            SELECT * FROM final {_limit(limit)}""",
            params=params,
        ).pl()
    finally:
        conn.close()
    return frame


def count_reasons(settings: Settings, source: str | None = None) -> int:
    """How many rows `reason_summary` has without a limit."""
    where, params = _where(source)
    return _count(
        settings,
        "SELECT count(*) FROM (SELECT DISTINCT source, kind, error_column, error_check "
        f"FROM open_rejections() WHERE true {where})",
        params,
    )


def describe(summary: pl.DataFrame) -> list[str]:
    """Summary rows as sentences: "visitor_country 'Somoa' (country_known): 1 row"."""
    return [
        f"{source}: {column} {'(empty)' if value is None else repr(value)} ({check}): "
        f"{rows} row{'s' if rows != 1 else ''}"
        for source, column, check, value, rows in summary.iter_rows()
    ]


def sources_with_open_rows(settings: Settings, source: str | None = None) -> list[str]:
    """Names of sources that have rows in quarantine."""
    where, params = _where(source)
    conn = connect(settings, read_only=True)
    try:
        rows = conn.execute(
            f"SELECT DISTINCT source FROM rejected_rows WHERE resolved_batch_id IS NULL {where} "
            "ORDER BY source",
            params,
        ).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def prepare_replay(settings: Settings, source_name: str) -> Replay:
    """Rebuild one source's open quarantine rows as they were read, with the mapping last used."""
    conn = connect(settings, read_only=True)
    try:
        config = conn.execute(
            "SELECT source_config FROM load_batches WHERE source = ? AND source_config IS NOT NULL "
            "ORDER BY started_at DESC LIMIT 1",
            [source_name],
        ).fetchone()
        rows = conn.execute(
            """SELECT source_file, source_row, source_record, CAST(raw AS VARCHAR),
                list_filter(errors, lambda e: list_contains(?, e."check")) AS read_errors
            FROM rejected_rows WHERE resolved_batch_id IS NULL AND source = ?
            ORDER BY source_file, source_row""",
            [list(READ_CHECKS), source_name],
        ).fetchall()
    finally:
        conn.close()
    if config is None:
        raise WarehouseError(
            f"no recorded configuration for source {source_name!r}",
            source=source_name,
            hint="Run the source once before a replay.",
        )
    source = Source.model_validate_json(config[0])
    by_file: dict[str, list[tuple[int, str | None, str, list[Any]]]] = {}
    for file, row, record, raw, read_errors in rows:
        by_file.setdefault(file, []).append((row, record, raw, read_errors))
    tables = []
    for file, entries in by_file.items():
        records = [json.loads(raw) for _, _, raw, _ in entries]
        names = list(dict.fromkeys(k for r in records for k in r))
        frame = pl.DataFrame(
            {n: [None if r.get(n) is None else str(r.get(n)) for r in records] for n in names},
            schema={n: pl.String for n in names},
        ).with_columns(
            pl.Series(RAW, [raw for _, _, raw, _ in entries], dtype=pl.String),
            pl.Series(ROW, [row for row, _, _, _ in entries], dtype=pl.Int64),
            pl.lit(file).alias(FILE),
            pl.Series(RECORD, [record for _, record, _, _ in entries], dtype=pl.String),
            # a line read wrong (too many fields, not JSON) looks whole once stored: keep its
            # read errors, so only a corrected list can load it
            pl.Series(ROW_ERRORS, [errs for _, _, _, errs in entries], dtype=ERRORS),
        )
        digest = hashlib.sha256("".join(raw for _, _, raw, _ in entries).encode()).hexdigest()
        tables.append(RawTable(frame, file, digest, tuple(names)))
    keys = [f"{file}#{row}" for file, row, _, _, _ in rows]
    # prepare reads them as one table, as it does a source, so a record id repeated across files
    # stays a duplicate
    return Replay(source, tables, keys)
