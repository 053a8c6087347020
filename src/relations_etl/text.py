"""Text clean-up shared by every stage: Unicode NFKC, one kind of space, one kind of quote."""

from __future__ import annotations

import re
import unicodedata

import polars as pl

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "´": "'", "`": "'"})
# Unicode White_Space, as polars (Rust) sees it: Python's \s also counts U+001C..U+001F
_SPACE = re.compile(r"[^\S\x1c-\x1f]+")


def clean(value: str | None) -> str | None:
    """NFKC, straight quotes, whitespace runs (NBSP too) to one space, stripped; '' -> None."""
    if value is None:
        return None
    # quotes first: NFKC would turn an acute accent used as apostrophe into space + combining mark
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", value.translate(_QUOTES))).strip(" ")
    return text or None


def key(value: str) -> str:
    """The comparison key of a label: cleaned and case-folded."""
    return (clean(value) or "").casefold()


def clean_expr(column: str) -> pl.Expr:
    """The polars form of `clean` for a whole column."""
    expr = pl.col(column)
    for old, new in (("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("´", "'"), ("`", "'")):
        expr = expr.str.replace_all(old, new, literal=True)
    expr = expr.str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars(" ")
    return pl.when(expr == "").then(None).otherwise(expr).alias(column)


def shown(value: str, limit: int = 40, *, quoted: bool = True) -> str:
    """A value read from an input as an error message may show it: escaped (control characters,
    a terminal's escape sequences), at most `limit` characters, quoted unless `quoted` is False."""
    text = repr(value[:limit])[1:-1] + ("…" if len(value) > limit else "")
    return f"'{text}'" if quoted else text
