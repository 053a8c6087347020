"""Text clean-up shared by every stage: Unicode NFKC, one kind of space, one kind of quote."""

from __future__ import annotations

import re
import unicodedata

import polars as pl

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "´": "'", "`": "'"})
_SPACE = re.compile(r"\s+")


def clean(value: str | None) -> str | None:
    """NFKC, straight quotes, every run of whitespace (NBSP too) to one space, stripped; '' -> None."""
    if value is None:
        return None
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", value).translate(_QUOTES)).strip()
    return text or None


def key(value: str) -> str:
    """The comparison key of a label: cleaned and case-folded."""
    return (clean(value) or "").casefold()


def clean_expr(column: str) -> pl.Expr:
    """The polars form of `clean` for a whole column."""
    expr = pl.col(column).str.normalize("NFKC")
    for old, new in (("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("´", "'"), ("`", "'")):
        expr = expr.str.replace_all(old, new, literal=True)
    expr = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(expr == "").then(None).otherwise(expr).alias(column)
