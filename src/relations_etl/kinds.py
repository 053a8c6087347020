"""The kinds of facts a source holds, apart from config so that the CLI parser imports no stage."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """The kinds of facts: three kinds of events and the totals an authority published."""

    VISITS = "visits"
    MEMBERSHIPS = "memberships"
    RELATIONS = "relations"
    REPORTED_TOTALS = "reported_totals"
