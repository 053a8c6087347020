"""Query: read-only SQL on the warehouse for analysts."""

from __future__ import annotations

import duckdb
import polars as pl

from relations_etl.errors import QueryError, RelationsEtlError
from relations_etl.load import connect
from relations_etl.settings import Settings

# a read-only connection refuses writes to the warehouse, but COPY ... TO, ATTACH, INSTALL or
# SET would still write files or change what the session reads: only queries get through
_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def run_query(settings: Settings, query: str) -> pl.DataFrame:
    """Run one query (SELECT, WITH, FROM, DESCRIBE, SHOW, EXPLAIN) read-only; refuse the rest."""
    conn = connect(settings, read_only=True)
    try:
        try:
            statements = conn.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {exc}") from exc
        if len(statements) != 1:
            raise QueryError(
                f"`sql` runs one statement, got {len(statements)}",
                hint="Send the statements one at a time.",
            )
        kind = statements[0].type
        if kind not in _ALLOWED:
            raise QueryError(
                f"`sql` is read-only: a {kind.name} statement is refused",
                hint="Use a SELECT query; the warehouse is changed only by the flows "
                "(`relations-etl run`, `ingest`, `quarantine replay`).",
            )
        result = conn.sql(query)
        if result is None:
            raise QueryError("the statement returned no rows; `sql` is for queries")
        frame: pl.DataFrame = result.pl()
        return frame
    except RelationsEtlError:
        raise
    except Exception as exc:
        raise QueryError(f"query failed: {exc}") from exc
    finally:
        conn.close()
