"""Whole numbers as published lists write them: 186, 1,234, 1 234, 2e3 or 186.0."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# thousands grouped by a comma, a space (NBSP is made a space by text.clean) or an underscore
_LIMIT = 10**15  # far above any count a ministry publishes, far inside a 64-bit integer
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:([, _])\d{3})(?:\1\d{3})*$")


def parse_whole(text: str) -> int:
    """The integer a text writes; ValueError (with the reason) for anything else."""
    raw = text.strip()
    if _GROUPED.match(raw):
        raw = re.sub(r"[, _]", "", raw)
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number")
    if abs(number) >= _LIMIT:
        raise ValueError(f"{text!r} is out of range (at most {_LIMIT - 1})")
    return int(number)
