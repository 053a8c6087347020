"""Query: read-only SQL on the warehouse for analysts."""

from __future__ import annotations

import polars as pl

from relations_etl.errors import WarehouseError
from relations_etl.load import connect
from relations_etl.settings import Settings


def run_query(settings: Settings, query: str) -> pl.DataFrame:
    """Run one query on a read-only connection and return its rows."""
    conn = connect(settings, read_only=True)
    try:
        result = conn.sql(query)
        if result is None:
            raise WarehouseError("the statement returned no rows; `sql` is for queries")
        frame: pl.DataFrame = result.pl()
        return frame
    except WarehouseError:
        raise
    except Exception as exc:
        raise WarehouseError(
            f"query failed: {exc}", hint="The warehouse is opened read-only; check the SQL."
        ) from exc
    finally:
        conn.close()
