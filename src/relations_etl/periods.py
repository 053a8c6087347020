"""Periods: consecutive yearly rows of one country, body and status become one period.

The collapse runs in DuckDB SQL over the staged facts of a whole source (`collapse_years_sql`);
`collapse_years` runs the same SQL on one polars frame.
"""

from __future__ import annotations

import duckdb
import polars as pl

from relations_etl.envelope import RAW_KEYS, SEQ

_GROUP = ["country", "organization", "body", "status"]


def collapse_years_sql(conn: duckdb.DuckDBPyConnection, facts: str) -> str:
    """Merge year-precision memberships of relation `facts` whose years follow each other
    without a gap; returns the name of the temporary table of periods (ordered by `_seq`)."""
    group = ", ".join(_GROUP)
    ordered = ", ".join([*(f"{c} NULLS LAST" for c in _GROUP), "start_date NULLS LAST", SEQ])
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _periods_marked AS
        WITH ordered AS (
            SELECT *, row_number() OVER (ORDER BY {ordered}) AS _pos,
                   start_precision = 'year' AND end_precision = 'year' AS _yearly
            FROM {facts}
        ),
        joined AS (
            SELECT *, coalesce(_yearly AND lag(_yearly) OVER w
                        AND year(start_date) = lag(year(end_date)) OVER w + 1, false) AS _joins
            FROM ordered WINDOW w AS (PARTITION BY {group} ORDER BY _pos)
        )
        SELECT *, sum(CASE WHEN _joins THEN 0 ELSE 1 END) OVER (
            ORDER BY _pos ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS _period
        FROM joined"""
    )
    firsts = ", ".join(
        f"arg_min_null({c}, _pos) AS {c}" for c in ["membership_id", *_GROUP, "start_date"]
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _periods AS
        WITH notes AS (
            SELECT _period, string_agg(notes, '; ' ORDER BY first) AS notes FROM (
                SELECT _period, notes, min(_pos) AS first FROM _periods_marked
                WHERE notes IS NOT NULL GROUP BY ALL
            ) GROUP BY _period
        ),
        periods AS (
            SELECT _period, {firsts},
                arg_min_null(start_precision, _pos) AS start_precision,
                arg_max_null(end_date, _pos) AS end_date,
                arg_max_null(end_precision, _pos) AS end_precision,
                arg_min_null(source, _pos) AS source,
                arg_min_null(source_record, _pos) AS _first_record,
                CASE WHEN count(*) > 1
                     THEN _first_record || '..' || arg_max_null(source_record, _pos)
                     ELSE _first_record END AS source_record,
                flatten(list({RAW_KEYS} ORDER BY _pos)) AS {RAW_KEYS},
                min({SEQ}) AS {SEQ}, min(_pos) AS _pos
            FROM _periods_marked GROUP BY _period
        )
        SELECT p.* EXCLUDE (_period, _pos, _first_record), nullif(n.notes, '') AS notes
        FROM periods AS p LEFT JOIN notes AS n USING (_period) ORDER BY p._pos"""
    )
    conn.execute("DROP TABLE _periods_marked")
    return "_periods"


def collapse_years(facts: pl.DataFrame) -> pl.DataFrame:
    """Merge year-precision memberships whose years follow each other without a gap."""
    if facts.is_empty():
        return facts
    conn = duckdb.connect()
    try:
        staged = facts.with_row_index(SEQ).with_columns(pl.col(SEQ).cast(pl.Int64))
        conn.register("_facts", staged.to_arrow())
        periods = collapse_years_sql(conn, "_facts")
        frame: pl.DataFrame = conn.sql(f"SELECT * FROM {periods}").pl()
    finally:
        conn.close()
    return frame.select(
        [
            pl.col(c).cast(facts.schema[c]) if c in frame.columns else pl.col(c)
            for c in facts.columns
        ]
    )
