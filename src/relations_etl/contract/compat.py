"""Contract compatibility: what changed between two shipped contracts, and the bump it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# table -> column -> Arrow type of the published Parquet, as schemas/history/<version>.json holds
Tables = dict[str, dict[str, str]]
Bump = Literal["major", "minor", "patch"]


@dataclass(frozen=True)
class Change:
    """One difference between two contracts; removals and retypes break readers."""

    table: str
    column: str | None
    what: Literal["removed", "retyped", "added"]
    detail: str = ""

    @property
    def breaking(self) -> bool:
        """Whether a reader of the previous contract can fail on the new one."""
        return self.what != "added"

    def __str__(self) -> str:
        name = self.table if self.column is None else f"{self.table}.{self.column}"
        kind = "table" if self.column is None else "column"
        return f"{kind} {name} {self.what}{f' ({self.detail})' if self.detail else ''}"


def parse_version(version: str) -> tuple[int, int, int]:
    """MAJOR.MINOR.PATCH as a tuple of ints; anything else is a ValueError."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"contract version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def changes(previous: Tables, current: Tables) -> list[Change]:
    """Tables and columns removed, retyped or added from `previous` to `current`."""
    found: list[Change] = []
    for table, columns in previous.items():
        if table not in current:
            found.append(Change(table, None, "removed"))
            continue
        for column, dtype in columns.items():
            now = current[table].get(column)
            if now is None:
                found.append(Change(table, column, "removed"))
            elif now != dtype:
                found.append(Change(table, column, "retyped", f"{dtype} -> {now}"))
        found += [Change(table, c, "added") for c in current[table] if c not in columns]
    found += [Change(t, None, "added") for t in current if t not in previous]
    return found


def needed_bump(found: list[Change]) -> Bump:
    """The smallest version bump that announces these changes honestly."""
    if any(c.breaking for c in found):
        return "major"
    return "minor" if found else "patch"


def bumped(version: str, bump: Bump) -> str:
    """`version` raised by `bump` (1.2.3 + minor = 1.3.0)."""
    major, minor, patch = parse_version(version)
    if bump == "major":
        return f"{major + 1}.0.0"
    return f"{major}.{minor + 1}.0" if bump == "minor" else f"{major}.{minor}.{patch + 1}"


def verdict(
    previous_version: str, previous: Tables, current_version: str, current: Tables
) -> list[str]:
    """What is wrong with going from one contract to the next; empty when the bump is enough."""
    before, after = parse_version(previous_version), parse_version(current_version)
    if after < before:
        return [f"contract version went backwards: {previous_version} -> {current_version}"]
    found = changes(previous, current)
    need = needed_bump(found)
    enough = {
        "major": after[0] > before[0],
        "minor": after[:2] > before[:2],
        "patch": True,
    }[need]
    if enough:
        return []
    target = bumped(previous_version, need)
    why = (
        "removing or retyping a column or table breaks readers: it needs a major bump"
        if need == "major"
        else "adding a column or table needs at least a minor bump"
    )
    return [
        f"{change} since contract {previous_version} but the version is {current_version}"
        for change in found
        if need == "minor" or change.breaking
    ] + [
        f"{why}: set CONTRACT_VERSION = {target!r} in src/relations_etl/contract/__init__.py "
        f"and run `relations-etl contracts` to ship schemas/history/{target}.json"
    ]
