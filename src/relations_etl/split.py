"""Split: rows that passed every check become facts; the rest go to quarantine with every reason.

The split runs in DuckDB SQL over the staged rows of a whole source (one row per person, in the
order read: `_seq`), so that repeats and conflicts are found across every chunk of a source
that was transformed chunk by chunk; `split` runs the same SQL on one polars frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from relations_etl.config import Kind
from relations_etl.envelope import (
    CLASHES,
    ERRORS_COLUMN,
    FILE,
    LATER_ERRORS,
    PERSON,
    RAW,
    RAW_KEYS,
    RECORD,
    ROW,
    SEQ,
    error_sql,
    staged_frame,
)
from relations_etl.facts import ID_COLUMN, content_columns
from relations_etl.reasons import Reason


@dataclass(frozen=True)
class Split:
    """Facts ready to load, rejected raw rows, and raw rows dropped as exact in-list repeats."""

    facts: pl.DataFrame
    rejected: pl.DataFrame
    repeated: int


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def identifier_sql(source: str) -> str:
    """The fact id of a staged person row: <source>:<record>, #<person> after the first.

    A `#` inside a record id is written twice, so that the id of record "a#2" ("a##2") never
    equals that of the second person of record "a" ("a#2").
    """
    return (
        f"{_literal(source + ':')} || replace({RECORD}, '#', '##') || "
        f"CASE WHEN {PERSON} > 1 THEN '#' || {PERSON} ELSE '' END"
    )


def split_sql(
    conn: duckdb.DuckDBPyConnection, people: str, kind: Kind, source: str
) -> tuple[str, str, int]:
    """Split the staged person rows of relation `people` of one source.

    `people` has `_seq`, `_file`, `_row`, `_record`, `_person`, `_raw`, the content columns
    typed, `_errors` and `_later_errors`; `CLASHES` (see validate.duplicate_records_sql) names
    the raw rows whose record id is used by rows of other content. A raw row loads only if all
    of its people passed every check. Returns the names of the temporary tables of facts
    (contract columns, `source`, `source_record`, `_raw_keys`) and rejected rows (quarantine
    columns), and the number of raw rows dropped as exact repeats of an earlier row's record.
    """
    ident = ID_COLUMN[kind]
    content = content_columns(kind)
    columns = ", ".join(_quote(c) for c in content)
    key = f"{FILE} || '#' || {ROW}"
    duplicate = error_sql(
        "'source_record'", f"'{Reason.DUPLICATE_RECORD}'", f"p.{RECORD}", "c._clash"
    )
    # a raw row is bad when any of its people has an error or its record clashes: only those
    # rows are grouped, and only they need their errors put together (not every row's)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bad AS
        SELECT {FILE}, {ROW} FROM {people}
        WHERE len({ERRORS_COLUMN}) > 0 OR len({LATER_ERRORS}) > 0
        UNION SELECT _file, _row FROM {CLASHES}"""
    )
    # a raw row's reasons: those of each of its people in order, each reason once
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rejected_bad AS
        WITH rows AS (
            SELECT p.* EXCLUDE ({ERRORS_COLUMN}, {LATER_ERRORS}),
                list_concat(p.{ERRORS_COLUMN},
                    CASE WHEN c._clash IS NULL THEN [] ELSE [{duplicate}] END,
                    p.{LATER_ERRORS}) AS {ERRORS_COLUMN}
            FROM (SELECT * FROM {people} SEMI JOIN _bad USING ({FILE}, {ROW})) AS p
            LEFT JOIN {CLASHES} AS c ON c._file = p.{FILE} AND c._row = p.{ROW}
        ),
        flat AS (
            SELECT {FILE}, {ROW}, {SEQ}, unnest({ERRORS_COLUMN}) AS e,
                   unnest(range(len({ERRORS_COLUMN}))) AS i
            FROM rows
        ),
        reasons AS (
            SELECT {FILE}, {ROW}, list(e ORDER BY s, i) AS errors FROM (
                SELECT {FILE}, {ROW}, e, min({SEQ}) AS s, arg_min(i, {SEQ}) AS i
                FROM flat GROUP BY ALL
            ) GROUP BY ALL
        ),
        firsts AS (
            SELECT {FILE}, {ROW}, min({SEQ}) AS s, arg_min({RECORD}, {SEQ}) AS source_record,
                   arg_min({RAW}, {SEQ}) AS raw
            FROM rows GROUP BY ALL
        )
        SELECT f.{FILE} AS source_file, f.{ROW} AS source_row, f.source_record, f.raw,
               coalesce(r.errors, []) AS errors, f.s AS {SEQ}
        FROM firsts AS f LEFT JOIN reasons AS r USING ({FILE}, {ROW})"""
    )
    # the rows that passed, not materialized
    conn.execute(
        f"""CREATE OR REPLACE TEMP VIEW _good AS
        SELECT {identifier_sql(source)} AS {ident}, {columns}, {RECORD}, {FILE}, {ROW}, {SEQ},
               {key} AS _key
        FROM {people} AS p ANTI JOIN _bad USING ({FILE}, {ROW})"""
    )
    # only the rows of ids that occur more than once are compared with the first row of their id
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _marked AS
        WITH repeated AS (SELECT {ident} FROM _good GROUP BY {ident} HAVING count(*) > 1),
        rows AS (
            SELECT g.*, hash({columns}) AS _content
            FROM _good AS g SEMI JOIN repeated USING ({ident})
        ),
        firsts AS (
            SELECT {ident}, arg_min(_key, {SEQ}) AS _first, arg_min(_content, {SEQ}) AS _fc
            FROM rows GROUP BY ALL
        )
        SELECT r.{ident}, r.{RECORD}, r.{FILE}, r.{ROW}, r.{SEQ}, r._key,
               r._key <> f._first AS _repeat, r._content <> f._fc AS _differs, f._first
        FROM rows AS r JOIN firsts AS f USING ({ident})"""
    )
    conflict = error_sql(
        "'source_record'",
        f"'{Reason.RECORD_UNIQUE}'",
        f"m.{RECORD}",
        f"'record id ' || m.{RECORD} || ' already used by row ' || m._first || "
        "' with other content'",
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _conflicts AS
        SELECT m.{FILE} AS source_file, m.{ROW} AS source_row,
               arg_min(m.{RECORD}, m.{SEQ}) AS source_record, any_value(p.{RAW}) AS raw,
               arg_min([{conflict}], m.{SEQ}) AS errors, min(m.{SEQ}) AS {SEQ},
               any_value(m._key) AS _key
        FROM _marked AS m JOIN {people} AS p ON p.{SEQ} = m.{SEQ}
        WHERE m._repeat AND m._differs GROUP BY m.{FILE}, m.{ROW}"""
    )
    # a raw row is a repeat only if all of it repeats; one conflicting person rejects the row
    ((repeated,),) = conn.execute(
        """SELECT count(DISTINCT _key) FROM _marked
        WHERE _repeat AND NOT _differs AND _key NOT IN (SELECT _key FROM _conflicts)"""
    ).fetchall()
    # kept: the first row of each id, unless one person of its raw row conflicts
    conn.execute(
        f"""CREATE OR REPLACE TEMP VIEW _facts AS
        SELECT {ident}, {columns}, {_literal(source)} AS source, {RECORD} AS source_record,
               [_key] AS {RAW_KEYS}, {SEQ}
        FROM _good
        ANTI JOIN (SELECT {SEQ} FROM _marked WHERE _repeat) USING ({SEQ})
        ANTI JOIN (SELECT _key FROM _conflicts) USING (_key)"""
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rejected AS
        SELECT source_file, source_row, source_record, raw, errors FROM (
            SELECT *, 0 AS part FROM _rejected_bad
            UNION ALL BY NAME SELECT * EXCLUDE (_key), 1 AS part FROM _conflicts
        ) ORDER BY part, {SEQ}"""
    )
    conn.execute("DROP TABLE _rejected_bad")
    return "_facts", "_rejected", int(repeated)


def no_clashes(conn: duckdb.DuckDBPyConnection) -> None:
    """An empty `CLASHES` relation: for rows whose duplicate records are already in `_errors`."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {CLASHES} "
        "(_file VARCHAR, _row BIGINT, _record VARCHAR, _clash VARCHAR)"
    )


def split(frame: pl.DataFrame, kind: Kind, source: str) -> Split:
    """Partition one validated frame by raw row (the SQL of `split_sql`, in memory)."""
    conn = duckdb.connect()
    try:
        conn.register("_staged_people", staged_frame(frame, kind).to_arrow())
        no_clashes(conn)
        facts, rejected, repeated = split_sql(conn, "_staged_people", kind, source)
        return Split(
            conn.sql(f"SELECT * EXCLUDE ({SEQ}) FROM {facts}").pl(),
            conn.sql(f"SELECT * FROM {rejected}").pl(),
            repeated,
        )
    finally:
        conn.close()
