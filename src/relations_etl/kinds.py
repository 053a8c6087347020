"""The kinds of facts a source holds, in a module of no imports: the CLI parser reads it."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """The kinds of facts: three kinds of events and the totals an authority published."""

    VISITS = "visits"
    MEMBERSHIPS = "memberships"
    RELATIONS = "relations"
    REPORTED_TOTALS = "reported_totals"
