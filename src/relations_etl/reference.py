"""Reference data: countries (ISO 3166 via pycountry plus extras), aliases, titles, bodies."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.metadata
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pycountry

from relations_etl.config import CodeSystem, Mapping
from relations_etl.errors import ConfigError, ReferenceDataError
from relations_etl.numbers import parse_whole
from relations_etl.reasons import Reason
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


def _meaning(rows: list[Alias], day: dt.date | None, until: dt.date | None) -> list[str]:
    """The codes a dated label or code means on `day`; when none covers that day and the date
    stands for a longer span (a year: `day` its first day, `until` its last), the codes that
    cover part of the span (COW 255 in "1990" is united Germany, from 1990-10-03)."""
    found = sorted({a.code for a in rows if a.covers(day)})
    if found or day is None or until is None or until <= day:
        return found
    return sorted(
        {
            a.code
            for a in rows
            if (a.valid_from is None or a.valid_from <= until)
            and (a.valid_to is None or day <= a.valid_to)
        }
    )


SYSTEMS: dict[str, str] = {
    "iso2": "ISO 3166 alpha-2",
    "iso-numeric": "ISO 3166 numeric",
    "cow": "Correlates of War numeric",
    "cow-letter": "Correlates of War letter",
    "gw": "Gleditsch-Ward",
}
"""The code systems of country_codes.csv and how messages name them (iso3 is the default)."""
_NUMERIC_SYSTEMS = ("iso-numeric", "cow", "gw")
# "Zaire (Democratic Republic of the Congo)", "Iran (Islamic Republic of)"
_PARENTHESES = re.compile(r"^(.+?)\s*\((.+)\)$")
_NOT_WORD = re.compile(r"[\W_]+")


def code_value(system: str, value: str) -> str | None:
    """The form a code takes in country_codes.csv (`2.0` -> `2`, ` usa` -> `USA`), or None."""
    text = value.strip()
    if system in _NUMERIC_SYSTEMS:
        try:
            return str(parse_whole(text))
        except ValueError:
            return None
    return text.upper() or None


def _compact(label_key: str) -> str:
    """A key with spaces and punctuation removed: "UnitedStates" meets "United States"."""
    return _NOT_WORD.sub("", label_key)


@dataclass(frozen=True)
class Resolution:
    """A resolved code, or the reason there is none."""

    code: str | None
    error: str | None = None
    check: Reason | None = None


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


def reference_digest(settings: Settings) -> str:
    """The hash of the reference files in use and pycountry's version, read without parsing:
    what a batch's inputs record of its reference data (`Reference.digest`)."""
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


def _year(text: str, row: dict[str, str]) -> int | None:
    if not text:
        return None
    try:
        return parse_whole(text)
    except ValueError:
        raise ReferenceDataError(f"{row['_where']}: {text!r} is not a year") from None


def _codes(settings: Settings, countries: dict[str, Country]) -> dict[str, dict[str, list[Alias]]]:
    """country_codes.csv: each system's codes and the project codes they mean, by date."""
    codes: dict[str, dict[str, list[Alias]]] = {system: defaultdict(list) for system in SYSTEMS}
    for row in _layered(
        settings,
        "country_codes.csv",
        ("system", "value", "code", "valid_from", "valid_to"),
        ("system", "value"),
    ):
        system = row["system"].lower()
        if system not in SYSTEMS:
            raise ReferenceDataError(
                f"{row['_where']}: system {row['system']!r} is not one of {list(SYSTEMS)}"
            )
        value = code_value(system, row["value"])
        code = row["code"].upper()
        if value is None or code not in countries:
            raise ReferenceDataError(
                f"{row['_where']}: {row['value']!r} -> {code!r} is not a code of {system} "
                "and a known country"
            )
        codes[system][value].append(
            Alias(
                code, _date(row["valid_from"], row["_where"]), _date(row["valid_to"], row["_where"])
            )
        )
    return {system: dict(values) for system, values in codes.items()}


_LAST_READ: dict[tuple[str, Path, Path], Reference] = {}
"""The reference last read, by its files' digest and folders: a Reference is never changed
once read (`for_source` makes a new one)."""


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
    codes: dict[str, dict[str, list[Alias]]] = field(default_factory=dict)
    """Code system -> code as written there -> the project codes it means, by date."""
    organization_years: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Organization code -> the years it was founded and dissolved (None: not known / alive)."""
    _title_keys: list[str] = field(init=False, repr=False)
    _compact: dict[str, set[str]] = field(init=False, repr=False)
    _validity: pl.DataFrame | None = field(default=None, init=False, repr=False)
    _tables: tuple[dict[str, pl.DataFrame], str] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        # longest first: "Premier and Prince" must win over "Premier"
        self._title_keys = sorted(self.titles, key=len, reverse=True)
        self._compact = defaultdict(set)
        for label in (*self.names, *self.aliases):
            self._compact[_compact(label)].add(label)

    @classmethod
    def load(cls, settings: Settings) -> Reference:
        """Read pycountry and the reference CSVs (shipped, then the user's in <home>/reference);
        the last reference read in this process is given again while its files hash the same
        (a run of several sources, or a Dask worker's tasks, parse them once)."""
        digest = reference_digest(settings)
        where = (digest, settings.reference_dir, settings.user_reference_dir)
        last = _LAST_READ.get(where)
        if last is None:
            last = cls._read(settings, digest)
            _LAST_READ.clear()
            _LAST_READ[where] = last
        return last

    @classmethod
    def _read(cls, settings: Settings, digest: str) -> Reference:
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
        years: dict[str, tuple[int | None, int | None]] = {}
        for row in organization_rows:
            code = row["code"].upper()
            organizations[code] = (row["name"], row["parent"].upper() or None)
            organization_names[key(code)] = code
            organization_names.setdefault(key(row["name"]), code)
            years[code] = (_year(row.get("founded", ""), row), _year(row.get("dissolved", ""), row))
        # the Correlates of War IGOs: their own code (NATO, UPU, LoN), or the same body as a
        # project organization (`same_as`: LOAS is LAS), whose code and name stay
        cow_rows = _layered(
            settings, "organizations_cow.csv", ("code", "name", "parent", "same_as"), ("code",)
        )
        cow_names: dict[str, set[str]] = defaultdict(set)
        for row in cow_rows:
            # COW's own spelling is kept (LoN, ComSec): the codes researchers query by
            same = row["same_as"].upper()
            code = same or row["code"]
            if same and same not in organizations:
                raise ReferenceDataError(
                    f"{row['_where']}: {row['code']} is the same as unknown organization {same}"
                )
            if not same:
                organizations[code] = (row["name"], row["parent"] or None)
            organization_names[key(row["code"])] = code
            for label in (row["name"], row.get("cow_name", "")):
                if label:
                    cow_names[key(label)].add(code)
            known = years.get(code, (None, None))
            years[code] = (
                known[0] or _year(row.get("founded", ""), row),
                known[1] or _year(row.get("dissolved", ""), row),
            )
        for label, codes in cow_names.items():
            if len(codes) == 1:  # a name COW gives two bodies names neither
                organization_names.setdefault(label, codes.pop())
        parents = [(r, r["parent"].upper()) for r in organization_rows] + [
            (r, r["parent"]) for r in cow_rows if not r["same_as"]
        ]
        spelled = {key(c): c for c in organizations}
        for row in _layered(settings, "organization_aliases.csv", ("alias", "code"), ("alias",)):
            code = spelled.get(key(row["code"]), row["code"].upper())
            if code not in organizations:
                raise ReferenceDataError(
                    f"{row['_where']}: alias {row['alias']!r} points at unknown organization {code}"
                )
            organization_names[key(row["alias"])] = code
        for row, parent in parents:
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
            digest,
            _codes(settings, countries),
            years,
        )

    def for_source(self, mapping: Mapping) -> Reference:
        """This reference with one list's own aliases, titles and organizations on top."""
        if not (
            mapping.country_aliases
            or mapping.titles
            or mapping.organization_aliases
            or mapping.organizations
        ):
            return self
        declared = {
            self._spelled(o.code): (o.name, self._spelled(o.parent) if o.parent else None)
            for o in mapping.organizations
        }
        organizations = {**self.organizations, **declared}
        for code, (_, parent) in declared.items():
            if parent and parent not in organizations:
                raise ConfigError(
                    f"mapping organization {code} has unknown parent {parent}",
                    hint="Name a parent from organizations.csv or declare it in the mapping too.",
                )
        return Reference(
            self.countries,
            self.names,
            {**self.aliases, **_mapping_aliases(mapping)},
            {**self.titles, **{key(t): {"": role} for t, role in mapping.titles.items()}},
            organizations,
            {
                **self.organization_names,
                **{key(name): code for code, (name, _) in declared.items()},
                **{key(code): code for code in declared},
                **{key(a): self._spelled(c) for a, c in mapping.organization_aliases.items()},
            },
            self.digest,
            self.codes,
            self.organization_years,
        )

    def _spelled(self, code: str) -> str:
        """An organization code as the tables spell it ('lon' -> 'LoN'); new codes upper-case."""
        found = self.organization_names.get(key(code))
        return found if found is not None and key(found) == key(code) else code.upper()

    def resolve_country(self, label: str, day: dt.date | None) -> Resolution:
        """Resolve a country label used at `day` to one alpha-3 code, or say why not (the
        state must also exist on `day`; normalize checks a whole period instead)."""
        found = self.lookup_country(label, day)
        return found if found.code is None else self._known(found.code, label, day)

    def lookup_country(
        self,
        label: str,
        day: dt.date | None,
        *,
        rules: bool = True,
        until: dt.date | None = None,
    ) -> Resolution:
        """The code a label means at `day` (aliases, then ISO names and codes, then the rules
        for run-together and "X (Y)" labels), without checking that the state existed then."""
        k = key(label)
        rows = self.aliases.get(k)
        if rows:
            matching = _meaning(rows, day, until)
            if len(matching) == 1:
                return self._exists(matching[0], label)
            if not matching:
                spans = ", ".join(
                    f"{a.code} {a.valid_from or '…'}..{a.valid_to or '…'}" for a in rows
                )
                return Resolution(
                    None,
                    f"country {label!r} names no state on {day} (alias: {spans})",
                    Reason.COUNTRY_AT_DATE,
                )
            return Resolution(
                None,
                f"country {label!r} is ambiguous{f' on {day}' if day else ''}: it may mean "
                f"{' or '.join(matching)}; "
                "say which in the mapping (country_aliases) or add a dated row to "
                "country_aliases.csv",
                Reason.COUNTRY_AMBIGUOUS,
            )
        codes = self.names.get(k)
        if codes and len(codes) == 1:
            return self._exists(next(iter(codes)), label)
        if codes:
            return Resolution(
                None,
                f"country {label!r} is ambiguous: {' or '.join(sorted(codes))}",
                Reason.COUNTRY_AMBIGUOUS,
            )
        unknown = Resolution(
            None,
            f"country {label!r} is unknown; add it to country_aliases.csv (alias,code)",
            Reason.COUNTRY_KNOWN,
        )
        return (self._by_rules(label, day, until) or unknown) if rules else unknown

    def _by_rules(
        self, label: str, day: dt.date | None, until: dt.date | None
    ) -> Resolution | None:
        """Labels no table holds but that say one country plainly, or None."""
        # "UnitedStates", "Guinea Bissau": the same letters as one known label
        same_letters = self._compact.get(_compact(key(label)), set())
        if same_letters:
            found = {
                self.lookup_country(k, day, rules=False, until=until).code for k in same_letters
            }
            if len(found) == 1 and None not in found:
                return self._exists(found.pop() or "", label)
        text = clean(label) or ""
        parts = _PARENTHESES.match(text)
        if parts is None:
            if text.count("/") != 1:
                return None
            # "Burma/Myanmar", "Zaire/DR Congo": one state under both names, or nothing
            return self._same_state(label, text.split("/"), day, until)
        outer, inner = parts.group(1), parts.group(2)
        # "Iran (Islamic Republic of)": the UN's form of "Islamic Republic of Iran"
        if inner.casefold().endswith(" of"):
            inverted = self.lookup_country(f"{inner} {outer}", day, rules=False, until=until)
            if inverted.code is not None:
                return inverted
        # "Zaire (Democratic Republic of the Congo)", "Burma (Myanmar)": both sides one state;
        # "Congo (Brazzaville)" is not, its inner part names no country
        return self._same_state(label, [outer, inner], day, until)

    def _same_state(
        self, label: str, parts: list[str], day: dt.date | None, until: dt.date | None
    ) -> Resolution | None:
        """The one state every part of a label names, or None."""
        codes = {self.lookup_country(p, day, rules=False, until=until).code for p in parts}
        code = codes.pop() if len(codes) == 1 else None
        return None if code is None else self._exists(code, label)

    def _exists(self, code: str, label: str) -> Resolution:
        if code not in self.countries:
            return Resolution(
                None, f"country code {code} (from {label!r}) is unknown", Reason.COUNTRY_KNOWN
            )
        return Resolution(code)

    def resolve_code(
        self, system: CodeSystem, value: str, day: dt.date | None, until: dt.date | None = None
    ) -> Resolution:
        """The project code a country code of `system` (cow, gw, iso2, ...) means at `day`
        (`until`: the last day the date stands for, when it is known to the year or month)."""
        if system == "iso3":
            return self.lookup_country(value, day, until=until)
        name = SYSTEMS[system]
        written = code_value(system, value)
        spells = self.codes.get(system, {}).get(written or "")
        if not spells:
            return Resolution(
                None,
                f"{value!r} is not a {name} code; the mapping's `codes:` says the column holds "
                f"{system} codes (country_codes.csv lists them)",
                Reason.COUNTRY_KNOWN,
            )
        matching = _meaning(spells, day, until)
        if len(matching) == 1:
            return self._exists(matching[0], value)
        spans = ", ".join(f"{a.code} {a.valid_from or '…'}..{a.valid_to or '…'}" for a in spells)
        if not matching:
            return Resolution(
                None,
                f"{name} code {value!r} names no state on {day} ({spans}); if the list means "
                f"one then, add a dated row for {system} {written} to country_codes.csv in "
                "<home>/reference",
                Reason.COUNTRY_AT_DATE,
            )
        return Resolution(
            None,
            f"{name} code {value!r} is ambiguous{f' on {day}' if day else ''}: "
            f"{' or '.join(matching)}",
            Reason.COUNTRY_AMBIGUOUS,
        )

    def depends_on_date(self, label: str, system: CodeSystem = "iso3") -> bool:
        """Whether `label` can mean another state on another date (a dated alias or code, or a
        label only the rules resolve, whose parts may be dated). Whether the state existed is
        checked apart, over the whole period."""
        if system != "iso3":
            spells = self.codes.get(system, {}).get(code_value(system, label) or "", [])
            return any(a.valid_from or a.valid_to for a in spells)
        k = key(label)
        rows = self.aliases.get(k)
        if rows:
            return any(a.valid_from or a.valid_to for a in rows)
        if k in self.names:
            return False
        # only the rules could resolve it, through parts that may be dated
        return "/" in k or _PARENTHESES.match(k) is not None or _compact(k) in self._compact

    def _known(self, code: str, label: str, day: dt.date | None) -> Resolution:
        country = self.countries.get(code)
        if country is None:
            return Resolution(
                None, f"country code {code} (from {label!r}) is unknown", Reason.COUNTRY_KNOWN
            )
        if day is not None and not country.valid_on(day):
            return Resolution(
                None,
                f"country {label!r} resolves to {code} ({country.name}), which did not exist on "
                f"{day} (valid {country.valid_from or '…'}..{country.valid_to or '…'})",
                Reason.COUNTRY_AT_DATE,
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
        years = [self.organization_years.get(c, (None, None)) for c in codes]
        return pl.DataFrame(
            {
                "code": codes,
                "name": [self.organizations[c][0] for c in codes],
                "parent": [self.organizations[c][1] for c in codes],
                "founded": [y[0] for y in years],
                "dissolved": [y[1] for y in years],
            },
            schema={
                "code": pl.String,
                "name": pl.String,
                "parent": pl.String,
                "founded": pl.Int32,
                "dissolved": pl.Int32,
            },
        )

    def validity_frame(self) -> pl.DataFrame:
        """Each country code with the dates its state existed, for checks over whole periods
        (built once: normalize asks for it on every batch)."""
        if self._validity is None:
            self._validity = self.countries_frame().select("code", "name", "valid_from", "valid_to")
        return self._validity

    def warehouse_tables(self) -> tuple[dict[str, pl.DataFrame], str]:
        """The `countries` and `organizations` tables and a digest of their rows, made once: a
        load compares the digest with the one the warehouse holds before rewriting them."""
        if self._tables is None:
            tables = {
                "countries": self.countries_frame(),
                "organizations": self.organizations_frame(),
            }
            digest = hashlib.sha256(pl.__version__.encode())
            for name, frame in tables.items():
                ipc = io.BytesIO()
                frame.write_ipc(ipc, compression="uncompressed")
                digest.update(name.encode())
                digest.update(ipc.getvalue())
            self._tables = (tables, digest.hexdigest())
        return self._tables
