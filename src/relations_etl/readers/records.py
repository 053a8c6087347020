"""JSON and NDJSON: a list of objects; a bad NDJSON line or a non-object record is a row error."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from relations_etl.errors import SourceReadError
from relations_etl.readers.delimited import RowErrors, decode

_SHOWN = 10_000  # characters of a bad line kept in its row error


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def records_frame(
    records: list[Any], problems: list[dict[str, str | None] | None], uri: str, source: str
) -> tuple[pl.DataFrame, RowErrors]:
    """Objects to text columns (union of keys, in order of appearance), with per-row errors."""
    names: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            names.update(dict.fromkeys(record))
    if records and not names:
        first = next(p for p in problems if p) if any(problems) else None
        raise SourceReadError(
            "no record holds a JSON object with keys"
            + (f"; first problem: {first['message']}" if first else ""),
            source=source,
            file=uri,
        )
    rows = [r if isinstance(r, dict) else {} for r in records]
    frame = pl.DataFrame(
        {name: [_text(r.get(name)) for r in rows] for name in names},
        schema={name: pl.String for name in names},
    )
    return frame, [[p] if p else [] for p in problems]


def _not_object(record: Any, number: int, where: str) -> dict[str, str | None] | None:
    if isinstance(record, dict):
        return None
    return {
        "column": "_row",
        "check": "json_record",
        "value": json.dumps(record, ensure_ascii=False)[:_SHOWN],
        "message": f"{where} {number} is a JSON {type(record).__name__}, not an object",
    }


def read_json(
    data: bytes, *, key: str | None, encoding: str | None, uri: str, source: str
) -> tuple[pl.DataFrame, RowErrors]:
    """A JSON document that is a list of objects, or an object holding one under `key`."""
    text = decode(data, encoding, uri=uri, source=source)
    if not text.strip():
        raise SourceReadError("the file is empty", source=source, file=uri)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceReadError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            source=source,
            file=uri,
        ) from exc
    wanted = key or "records"
    if isinstance(document, dict):
        if not isinstance(document.get(wanted), list):
            raise SourceReadError(
                f"the JSON document is an object without a list under {wanted!r}; its keys are "
                f"{sorted(document)[:20]}",
                source=source,
                file=uri,
                hint="Set options.records to the key that holds the list of records.",
            )
        document = document[wanted]
    if not isinstance(document, list):
        raise SourceReadError(
            f"the JSON document is a {type(document).__name__}, not a list of records",
            source=source,
            file=uri,
            hint="A JSON source is a list of objects, or an object holding one (options.records).",
        )
    problems = [_not_object(r, n, "record") for n, r in enumerate(document, start=1)]
    return records_frame(document, problems, uri, source)


def read_ndjson(
    data: bytes, *, encoding: str | None, uri: str, source: str
) -> tuple[pl.DataFrame, RowErrors]:
    """One JSON object per line; blank lines are skipped, a bad line becomes a rejected row."""
    text = decode(data, encoding, uri=uri, source=source)
    records: list[Any] = []
    problems: list[dict[str, str | None] | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append(None)
            problems.append(
                {
                    "column": "_row",
                    "check": "json_line",
                    "value": line[:_SHOWN],
                    "message": f"line {number} is not valid JSON (column {exc.colno}: {exc.msg})",
                }
            )
            continue
        records.append(record)
        problems.append(_not_object(record, number, "line"))
    if not records:
        raise SourceReadError("the file is empty: no JSON lines", source=source, file=uri)
    return records_frame(records, problems, uri, source)
