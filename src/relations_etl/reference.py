"""Reference data: countries (ISO 3166 via pycountry plus extras), aliases, titles, bodies."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.metadata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pycountry

from relations_etl.config import Mapping
from relations_etl.errors import ReferenceDataError
from relations_etl.settings import Settings
from relations_etl.text import clean, key

ROLES = (
    "head_of_state",
    "head_of_government",
    "foreign_minister",
    "other_minister",
    "head_of_organization",
    "other",
)


@dataclass(frozen=True)
class Country:
    """One country code with the dates the state existed (None = open)."""

    code: str
    name: str
    kind: str
    valid_from: dt.date | None
    valid_to: dt.date | None

    def valid_on(self, day: dt.date) -> bool:
        """Whether the state existed on `day`."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


@dataclass(frozen=True)
class Alias:
    """A label that means `code` between two optional dates."""

    code: str
    valid_from: dt.date | None
    valid_to: dt.date | None

    def covers(self, day: dt.date | None) -> bool:
        """Whether the alias applies on `day` (an unknown day matches every alias row)."""
        if day is None:
            return True
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


@dataclass(frozen=True)
class Resolution:
    """A resolved code, or the reason there is none."""

    code: str | None
    error: str | None = None
    check: str | None = None


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ReferenceDataError(f"{path} lacks column(s) {missing}", file=str(path))
        rows = []
        for number, row in enumerate(reader, start=2):
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            row["_where"] = f"{path}:{number}"
            rows.append(row)
        return rows


def _date(text: str, where: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ReferenceDataError(f"{where}: {text!r} is not a YYYY-MM-DD date") from exc


def _layered(
    settings: Settings, name: str, required: tuple[str, ...], by: tuple[str, ...]
) -> list[dict[str, str]]:
    """Shipped rows, with every group of user rows (same `by` key) replacing the shipped group."""
    shipped = _read_csv(settings.reference_dir / name, required)
    user = _read_csv(settings.user_reference_dir / name, required)
    user_keys = {tuple(key(r[c]) for c in by) for r in user}
    return [r for r in shipped if tuple(key(r[c]) for c in by) not in user_keys] + user


def _digest(settings: Settings) -> str:
    digest = hashlib.sha256(importlib.metadata.version("pycountry").encode())
    for folder in (settings.reference_dir, settings.user_reference_dir):
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            digest.update(f"{folder.name}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _mapping_aliases(mapping: Mapping) -> dict[str, list[Alias]]:
    """A mapping's own country aliases: label -> code, or dated rows as in country_aliases.csv
    (all the rows of one label replace the shared rows of that label)."""
    if isinstance(mapping.country_aliases, dict):
        return {key(a): [Alias(c.upper(), None, None)] for a, c in mapping.country_aliases.items()}
    rows: dict[str, list[Alias]] = defaultdict(list)
    for row in mapping.country_aliases:
        rows[key(row.alias)].append(Alias(row.code.upper(), row.valid_from, row.valid_to))
    return dict(rows)


@dataclass
class Reference:
    """All reference data, loaded once per run; lookups are pure functions of it."""

    countries: dict[str, Country]
    names: dict[str, set[str]]
    aliases: dict[str, list[Alias]]
    titles: dict[str, dict[str, str]]
    organizations: dict[str, tuple[str, str | None]]
    organization_names: dict[str, str]
    digest: str = ""
    """Hash of the reference files and pycountry's version: part of every batch's inputs."""
    _title_keys: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # longest first: "Premier and Prince" must win over "Premier"
        self._title_keys = sorted(self.titles, key=len, reverse=True)

    @classmethod
    def load(cls, settings: Settings) -> Reference:
        """Read pycountry and the reference CSVs (shipped, then the user's in <home>/reference)."""
        countries: dict[str, Country] = {}
        names: dict[str, set[str]] = defaultdict(set)
        for c in pycountry.countries:
            countries[c.alpha_3] = Country(c.alpha_3, c.name, "iso3166-1", None, None)
            for label in (
                c.alpha_2,
                c.alpha_3,
                c.name,
                getattr(c, "official_name", None),
                getattr(c, "common_name", None),
            ):
                if label:
                    names[key(label)].add(c.alpha_3)
        historic_names: dict[str, set[str]] = defaultdict(set)
        for h in pycountry.historic_countries:
            code = getattr(h, "alpha_3", None)
            if not code or code in countries:
                continue
            withdrawn = getattr(h, "withdrawal_date", "") or ""
            countries[code] = Country(
                code,
                h.name,
                "iso3166-3",
                None,
                _date(withdrawn, "pycountry") if len(withdrawn) == 10 else None,
            )
            historic_names[key(h.name)].add(code)
            historic_names[key(code)].add(code)
        for row in _layered(
            settings,
            "countries_extra.csv",
            ("code", "name", "valid_from", "valid_to", "kind"),
            ("code",),
        ):
            code = row["code"].upper()
            countries[code] = Country(
                code,
                row["name"] or countries.get(code, Country(code, code, "", None, None)).name,
                row["kind"] or "user-assigned",
                _date(row["valid_from"], row["_where"]),
                _date(row["valid_to"], row["_where"]),
            )
            for label in (code, row["name"]):
                if label and key(label) not in names:
                    names[key(label)].add(code)
        for label, codes in historic_names.items():
            names.setdefault(label, codes)

        aliases: dict[str, list[Alias]] = defaultdict(list)
        for row in _layered(
            settings, "country_aliases.csv", ("alias", "code", "valid_from", "valid_to"), ("alias",)
        ):
            code = row["code"].upper()
            if code not in countries:
                raise ReferenceDataError(
                    f"{row['_where']}: alias {row['alias']!r} points at unknown code {code}"
                )
            aliases[key(row["alias"])].append(
                Alias(
                    code,
                    _date(row["valid_from"], row["_where"]),
                    _date(row["valid_to"], row["_where"]),
                )
            )

        titles: dict[str, dict[str, str]] = defaultdict(dict)
        for row in _layered(
            settings, "titles.csv", ("title", "role", "country"), ("title", "country")
        ):
            if row["role"] not in ROLES:
                raise ReferenceDataError(
                    f"{row['_where']}: role {row['role']!r} is not one of {ROLES}"
                )
            titles[key(row["title"])][row["country"].upper()] = row["role"]

        organizations: dict[str, tuple[str, str | None]] = {}
        organization_names: dict[str, str] = {}
        organization_rows = _layered(
            settings, "organizations.csv", ("code", "name", "parent"), ("code",)
        )
        for row in organization_rows:
            code = row["code"].upper()
            organizations[code] = (row["name"], row["parent"].upper() or None)
            organization_names[key(code)] = code
            organization_names.setdefault(key(row["name"]), code)
        for row in _layered(settings, "organization_aliases.csv", ("alias", "code"), ("alias",)):
            code = row["code"].upper()
            if code not in organizations:
                raise ReferenceDataError(
                    f"{row['_where']}: alias {row['alias']!r} points at unknown organization {code}"
                )
            organization_names[key(row["alias"])] = code
        for row in organization_rows:
            parent = row["parent"].upper()
            if parent and parent not in organizations:
                raise ReferenceDataError(
                    f"{row['_where']}: {row['code']} has unknown parent {parent}"
                )
        return cls(
            countries,
            dict(names),
            dict(aliases),
            dict(titles),
            organizations,
            organization_names,
            _digest(settings),
        )

    def for_source(self, mapping: Mapping) -> Reference:
        """This reference with one list's own aliases and titles (from its mapping) on top."""
        if not (mapping.country_aliases or mapping.titles or mapping.organization_aliases):
            return self
        return Reference(
            self.countries,
            self.names,
            {**self.aliases, **_mapping_aliases(mapping)},
            {**self.titles, **{key(t): {"": role} for t, role in mapping.titles.items()}},
            self.organizations,
            {
                **self.organization_names,
                **{key(a): c.upper() for a, c in mapping.organization_aliases.items()},
            },
            self.digest,
        )

    def resolve_country(self, label: str, day: dt.date | None) -> Resolution:
        """Resolve a country label used at `day` to one alpha-3 code, or say why not."""
        k = key(label)
        rows = self.aliases.get(k)
        if rows:
            matching = sorted({a.code for a in rows if a.covers(day)})
            if len(matching) == 1:
                return self._known(matching[0], label, day)
            if not matching:
                spans = ", ".join(
                    f"{a.code} {a.valid_from or '…'}..{a.valid_to or '…'}" for a in rows
                )
                return Resolution(
                    None,
                    f"country {label!r} names no state on {day} (alias: {spans})",
                    "country_at_date",
                )
            return Resolution(
                None,
                f"country {label!r} is ambiguous: it may mean {' or '.join(matching)}; add a "
                "dated row to country_aliases.csv or a country_aliases entry to the mapping",
                "country_ambiguous",
            )
        codes = self.names.get(k)
        if codes and len(codes) == 1:
            return self._known(next(iter(codes)), label, day)
        if codes:
            return Resolution(
                None,
                f"country {label!r} is ambiguous: {' or '.join(sorted(codes))}",
                "country_ambiguous",
            )
        return Resolution(
            None,
            f"country {label!r} is unknown; add it to country_aliases.csv (alias,code)",
            "country_known",
        )

    def depends_on_date(self, label: str) -> bool:
        """Whether `label` can mean another thing on another date (dated aliases, former states)."""
        k = key(label)
        rows = self.aliases.get(k)
        if rows and any(a.valid_from or a.valid_to for a in rows):
            return True
        codes = {a.code for a in rows} if rows else self.names.get(k, set())
        return any(
            (c := self.countries.get(code)) is not None and (c.valid_from or c.valid_to)
            for code in codes
        )

    def _known(self, code: str, label: str, day: dt.date | None) -> Resolution:
        country = self.countries.get(code)
        if country is None:
            return Resolution(
                None, f"country code {code} (from {label!r}) is unknown", "country_known"
            )
        if day is not None and not country.valid_on(day):
            return Resolution(
                None,
                f"country {label!r} resolves to {code} ({country.name}), which did not exist on "
                f"{day} (valid {country.valid_from or '…'}..{country.valid_to or '…'})",
                "country_at_date",
            )
        return Resolution(code)

    def split_title(self, text: str) -> tuple[str | None, str | None]:
        """Split 'Prime Minister Mark Rutte' into the longest known title and the name."""
        cleaned = clean(text) or ""
        folded = cleaned.casefold()
        for title in self._title_keys:
            if folded == title or folded.startswith(title + " "):
                name = cleaned[len(title) :].strip()
                return cleaned[: len(title)], name or None
        return None, cleaned or None

    def role(self, title: str, country: str | None) -> str | None:
        """The role a title means for a country (country-specific rows first), or None."""
        rows = self.titles.get(key(title))
        if not rows:
            return None
        return rows.get((country or "").upper()) or rows.get("")

    def resolve_organization(self, label: str) -> str | None:
        """Resolve an organization or body label (code, name or alias) to its code."""
        return self.organization_names.get(key(label))

    def countries_frame(self) -> pl.DataFrame:
        """The `countries` table."""
        rows = sorted(self.countries.values(), key=lambda c: c.code)
        return pl.DataFrame(
            {
                "code": [c.code for c in rows],
                "name": [c.name for c in rows],
                "kind": [c.kind for c in rows],
                "valid_from": [c.valid_from for c in rows],
                "valid_to": [c.valid_to for c in rows],
            },
            schema={
                "code": pl.String,
                "name": pl.String,
                "kind": pl.String,
                "valid_from": pl.Date,
                "valid_to": pl.Date,
            },
        )

    def organizations_frame(self) -> pl.DataFrame:
        """The `organizations` table."""
        codes = sorted(self.organizations)
        return pl.DataFrame(
            {
                "code": codes,
                "name": [self.organizations[c][0] for c in codes],
                "parent": [self.organizations[c][1] for c in codes],
            },
            schema={"code": pl.String, "name": pl.String, "parent": pl.String},
        )
