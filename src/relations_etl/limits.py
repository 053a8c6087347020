"""Limits of the settings as errors: each breach names the limit and the setting that raises it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from relations_etl.errors import ConfigError, LimitError

if TYPE_CHECKING:
    from relations_etl.settings import Settings


def env_name(setting: str) -> str:
    """The environment variable of a settings field."""
    return f"RELATIONS_ETL_{setting.upper()}"


def amount(value: int, unit: str = "bytes") -> str:
    """A count for a message: bytes in binary units, other counts with thousands separators."""
    if unit != "bytes":
        return f"{value:,} {unit}"
    for size, name in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if value >= size:
            return f"{value / size:.4g} {name}"
    return f"{value} bytes"


def too_large(
    what: str,
    limit: int,
    setting: str,
    *,
    unit: str = "bytes",
    source: str | None = None,
    file: str | None = None,
    row: int | None = None,
    column: str | None = None,
) -> LimitError:
    """The error of an input over a limit: `what` says what was found ("a field of 20 MiB"),
    the message goes on ", over the limit of 16 MiB (RELATIONS_ETL_MAX_FIELD_BYTES)"."""
    return LimitError(
        f"{what}, over the limit of {amount(limit, unit)} ({env_name(setting)})",
        source=source,
        file=file,
        row=row,
        column=column,
    )


def check_table_size(
    settings: Settings,
    rows: int,
    columns: int,
    what: str,
    *,
    rows_are: str = "rows",
    source: str | None = None,
    file: str | None = None,
) -> None:
    """Refuse a table wider than max_columns or larger than max_cells before it is built:
    `what` names it ("sheet 'A'", "the XML document")."""
    if columns > settings.max_columns:
        raise too_large(
            f"{what} spans {columns:,} columns",
            settings.max_columns,
            "max_columns",
            unit="columns",
            source=source,
            file=file,
        )
    if rows * columns > settings.max_cells:
        raise too_large(
            f"{what} spans {rows:,} {rows_are} x {columns:,} columns ({rows * columns:,} cells)",
            settings.max_cells,
            "max_cells",
            unit="cells",
            source=source,
            file=file,
        )


def config_too_large(what: str, limit: int, setting: str, unit: str) -> ConfigError:
    """The same for a configuration file (exit 78)."""
    return ConfigError(
        f"{what}, over the limit of {amount(limit, unit)} ({env_name(setting)})",
        hint="Fix the file (YAML anchors and aliases repeat whole nodes); if it is right, raise "
        "the setting named above.",
    )


def byte_series(chunk: bytes) -> pl.Series:
    """The bytes of `chunk` as a polars UInt8 series, without copying them: readers scan a file
    as it arrives for what would cost more than a limit allows."""
    series = pl.from_arrow(
        pa.Array.from_buffers(pa.uint8(), len(chunk), [None, pa.py_buffer(chunk)])
    )
    assert isinstance(series, pl.Series)
    return series
