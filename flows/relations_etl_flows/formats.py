"""The output formats of the commands that print rows, for the parser: no polars, no rich."""

from __future__ import annotations

from typing import Literal

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
