"""Source bindings: from its first load on, a source name stands for one list, its URI.

Two lists that happen to share a file name (`a/data.csv`, `b/data.csv`) would otherwise load
under one derived name, and the second would silently replace records of the first. The binding
is kept in its own table rather than read back from `load_batches.source_uri`: that column also
holds replays ("quarantine replay of ...") and refused or failed attempts, so "the URI of this
name" would be a query over every kind of batch instead of one row written on purpose.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from relations_etl.config import canonical_uri
from relations_etl.errors import SourceBoundError

REPLAY_PREFIX = "quarantine replay of "


def _stored(conn: duckdb.DuckDBPyConnection, source: str) -> tuple[str, str] | None:
    rows = conn.execute(
        "SELECT uri, batch_id FROM source_bindings WHERE source = ?", [source]
    ).fetchall()
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def _from_audit(conn: duckdb.DuckDBPyConnection, source: str) -> tuple[str, str] | None:
    # a warehouse from before bindings: the last succeeded batch that read the list itself
    # (not a replay) stands for the binding, so an upgrade does not open the door
    rows = conn.execute(
        "SELECT source_uri, batch_id FROM load_batches WHERE source = ? AND status = 'succeeded' "
        "AND NOT starts_with(source_uri, ?) ORDER BY finished_at DESC LIMIT 1",
        [source, REPLAY_PREFIX],
    ).fetchall()
    return (canonical_uri(str(rows[0][0])), str(rows[0][1])) if rows else None


def bound_uri(conn: duckdb.DuckDBPyConnection, source: str) -> tuple[str, str] | None:
    """The URI a source name is bound to and the batch that bound it, or None if unbound."""
    return _stored(conn, source) or _from_audit(conn, source)


def bind(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    uri: str,
    batch_id: str,
    moved_from: str | None = None,
) -> None:
    """Bind `source` to `uri`, or refuse: another URI under a bound name needs `moved_from`.

    Call inside the transaction that loads the batch, so a name is bound only by a load that
    committed. `moved_from` must name the URI the name is bound to now: a declaration left in
    a sources file after the move cannot let a later, different move through.
    """
    wanted = canonical_uri(uri)
    stored = _stored(conn, source)
    current = stored or _from_audit(conn, source)
    if current is None:
        _write(conn, source, wanted, batch_id, None, stored=False)
    elif current[0] == wanted:
        if stored is None:
            _write(conn, source, wanted, current[1], None, stored=False)
    elif moved_from is not None and canonical_uri(moved_from) == current[0]:
        _write(conn, source, wanted, batch_id, current[0], stored=stored is not None)
    else:
        declared = (
            f"; moved_from names {canonical_uri(moved_from)}, not the bound URI"
            if moved_from is not None
            else ""
        )
        raise SourceBoundError(
            f"source name {source!r} is bound to {current[0]} (since batch {current[1]}), and "
            f"{wanted} is another list{declared}",
            source=source,
            file=uri,
            batch_id=batch_id,
            hint=(
                "Nothing was loaded. If this is another list, give it its own name (ingest "
                "--name, or name: in the sources file); if the list moved, declare the move: "
                f"ingest --moved-from {current[0]}, or moved_from: {current[0]} in the "
                "source's entry."
            ),
        )


def _write(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    uri: str,
    batch_id: str,
    moved_from: str | None,
    *,
    stored: bool,
) -> None:
    # an UPDATE of a stored binding or an INSERT of a new one: either costs a third of an
    # INSERT OR REPLACE on the keyed table
    values = [uri, batch_id, dt.datetime.now(dt.UTC), moved_from]
    if stored:
        conn.execute(
            "UPDATE source_bindings SET (uri, batch_id, bound_at, moved_from) = (?, ?, ?, ?) "
            "WHERE source = ?",
            [*values, source],
        )
    else:
        conn.execute("INSERT INTO source_bindings VALUES (?, ?, ?, ?, ?)", [source, *values])
