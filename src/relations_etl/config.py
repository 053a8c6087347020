"""Source configuration and column mappings, read from YAML files (a new list needs no code)."""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import polars as pl
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from relations_etl.compressed import advice, by_name
from relations_etl.errors import ConfigError
from relations_etl.kinds import Kind as Kind  # where most modules import it from
from relations_etl.limits import config_too_large
from relations_etl.settings import Settings

FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: (
        "host_country",
        "visitor_country",
        "visitor_organization",
        "visitor",
        "visitor_name",
        "visitor_title",
        "visitor_role",
        "visit_type",
        "start_date",
        "end_date",
        "city",
        "event",
        "notes",
    ),
    Kind.MEMBERSHIPS: (
        "country",
        "organization",
        "body",
        "status",
        "start_date",
        "end_date",
        "year",
        "notes",
    ),
    Kind.RELATIONS: ("country", "counterpart", "event", "event_date", "notes"),
    Kind.REPORTED_TOTALS: (
        "country",
        "year",
        "metric",
        "value",
        "publisher",
        "published_on",
        "notes",
    ),
}
"""Fields a mapping may fill per kind. `visitor` is a title and name in one text ("Prime Minister
Mark Rutte"), split through the titles table; `year` is one membership year (see `periods`), or
the year a reported total counts; `publisher` is who published a total (`source` is taken: it
names the configured list in every lineage column)."""

COUNTRY_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.VISITS: ("host_country", "visitor_country"),
    Kind.MEMBERSHIPS: ("country",),
    Kind.RELATIONS: ("country", "counterpart"),
    Kind.REPORTED_TOTALS: ("country",),
}
"""The fields of each kind that name a country (resolved through the reference data)."""
CodeSystem = Literal["iso3", "iso2", "iso-numeric", "cow", "cow-letter", "gw"]
"""How a country column is written (`codes:` in a mapping): `iso3`, the default, takes ISO
alpha-3 codes and names; the others are the code systems of country_codes.csv, resolved by date
(COW 365 is the Soviet Union to 1991-12-25 and Russia after)."""

FORMATS = ("csv", "tsv", "xlsx", "json", "ndjson", "parquet", "xml", "hsg-visits-xml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def linear_regex(pattern: str) -> str:
    """Accept a user's regular expression only if polars' engine (Rust `regex`: linear time,
    no look-around or back-references) compiles it; Python's `re` would backtrack on
    `(a+)+b` for minutes."""
    try:
        pl.select(pl.lit("").str.contains(pattern))
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(
            f"{pattern!r} is not a regular expression this project runs (Rust regex syntax, "
            f"linear time: no look-around, no back-references): {first[-1] if first else exc}"
        ) from None
    return pattern


class Pattern(_Strict):
    """A regular expression over a field; the first pattern that matches gives the value."""

    match: str
    value: str

    @field_validator("match")
    @classmethod
    def _linear(cls, value: str) -> str:
        return linear_regex(value)


class Derive(_Strict):
    """Fill a field from another field's text by patterns (e.g. visit type from a description)."""

    source: str = Field(alias="from")
    patterns: list[Pattern]
    default: str | None = None


class DateOptions(_Strict):
    """How the dates of one list are written."""

    order: Literal["ymd", "dmy", "mdy"] | None = None
    excel_serial: bool = False
    century_pivot: int | None = Field(default=None, ge=0, le=100)
    """Two-digit years (31/12/99): below the pivot 20xx, from it 19xx; unset, a row error."""


class Columns(_Strict):
    """Which raw columns a rule takes: those matching `match` (a linear regex over the header),
    all of them when `match` is unset, less those in `exclude`."""

    match: str | None = None
    exclude: list[str] = Field(default_factory=list)

    @field_validator("match")
    @classmethod
    def _linear(cls, value: str | None) -> str | None:
        return None if value is None else linear_regex(value)


class Unpivot(_Strict):
    """A wide table made long: each chosen column's cell becomes a row of its own, holding the
    column's header in `name` and the cell in `value`, beside the columns not chosen."""

    columns: list[str] | Columns
    name: str
    value: str

    @model_validator(mode="after")
    def _two_names(self) -> Unpivot:
        if self.name == self.value:
            raise ValueError(f"unpivot.name and unpivot.value are both {self.name!r}")
        return self


class Drop(_Strict):
    """Rows that are not facts by the list's own rules: every `when` column (a raw column, or
    the field a column is mapped to) holds one of its values (numbers compared as numbers, ''
    an empty cell). Dropped rows are counted by `reason`, not quarantined."""

    when: dict[str, list[str]] = Field(min_length=1)
    reason: str = Field(min_length=1)

    @field_validator("when", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        # YAML reads -1 and 1.0 as numbers: the rule means the text a list writes
        if isinstance(value, dict):
            return {
                k: [v if isinstance(v, str) else _yaml_text(v) for v in vs]
                if isinstance(vs, list)
                else [vs if isinstance(vs, str) else _yaml_text(vs)]
                for k, vs in value.items()
            }
        return value


def _yaml_text(value: Any) -> Any:
    """A bare YAML scalar (-1, 2.0) as the text it was written as; booleans stay refused."""
    if isinstance(value, bool) or value is None:
        return value
    return str(value) if isinstance(value, int | float) else value


class AliasRow(_Strict):
    """A dated country alias in a mapping: the columns of the shared country_aliases.csv."""

    alias: str
    code: str
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    note: str | None = None


class OrganizationRow(_Strict):
    """An organization a mapping declares: the columns of the shared organizations.csv."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    parent: str | None = None
    note: str | None = None


DEFAULT_PEOPLE_SEPARATOR = r"\s+(?:and|&)\s+|\s*[,;]\s+"


class Mapping(_Strict):
    """How one raw list becomes rows of one kind; every part is optional."""

    name: str | None = None
    description: str | None = None
    format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, str] = Field(default_factory=dict)
    record_id: list[str] = Field(default_factory=list)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    derive: dict[str, Derive] = Field(default_factory=dict)
    corrections: dict[str, dict[str, str]] = Field(default_factory=dict)
    people_separator: str | None = DEFAULT_PEOPLE_SEPARATOR
    dates: DateOptions = Field(default_factory=DateOptions)
    periods: Literal["as_given", "yearly"] = "as_given"
    country_aliases: dict[str, str] | list[AliasRow] = Field(default_factory=dict)
    """Label -> code, or rows with the columns of country_aliases.csv (dates for a label that
    meant another state before)."""
    organization_aliases: dict[str, str] = Field(default_factory=dict)
    titles: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    unpivot: Unpivot | None = None
    drop: list[Drop] = Field(default_factory=list)
    codes: dict[str, CodeSystem] = Field(default_factory=dict)
    """Country field -> the code system its column is written in (`{country: cow}`)."""
    organizations: list[OrganizationRow] = Field(default_factory=list)
    """The list's own organizations and bodies, on top of the shared ones."""

    @field_validator("people_separator")
    @classmethod
    def _linear_separator(cls, value: str | None) -> str | None:
        return None if value is None else linear_regex(value)

    @model_validator(mode="before")
    @classmethod
    def _record_id_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("record_id"), str):
            data = {**data, "record_id": [data["record_id"]]}
        return data

    @field_validator("values", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        # `{status: {1: member, -9: missing}}`: YAML reads the codes as numbers
        if isinstance(value, dict):
            return {
                field: {_yaml_text(k): _yaml_text(v) for k, v in table.items()}
                if isinstance(table, dict)
                else table
                for field, table in value.items()
            }
        return value

    @model_validator(mode="after")
    def _one_column_per_field(self) -> Mapping:
        filled: dict[str, str] = {}
        if self.unpivot is not None:
            for column in (self.unpivot.name, self.unpivot.value):
                if column not in self.columns:  # else it is checked as a mapped column
                    filled.setdefault(column, column)
        for column, field in self.columns.items():
            twin = filled.setdefault(field, column)
            if twin != column:
                raise ValueError(
                    f"columns {twin!r} and {column!r} both map to field {field!r}; map one of "
                    "them (a field is filled from one column)"
                )
        return self

    def fields_from_columns(self) -> dict[str, str]:
        """Column -> field as the mapping names them, the unpivoted name and value included
        (a name or value that is a field fills that field unless `columns` maps it)."""
        columns = dict(self.columns)
        if self.unpivot is not None:
            for column in (self.unpivot.name, self.unpivot.value):
                columns.setdefault(column, column)
        return columns

    def check_fields(self, kind: Kind, where: str) -> None:
        """Raise ConfigError if the mapping fills a field that `kind` does not have."""
        allowed = set(FIELDS[kind])
        if self.unpivot is not None:
            for column in (self.unpivot.name, self.unpivot.value):
                if column not in self.columns and column not in allowed:
                    raise ConfigError(
                        f"mapping {where}: unpivot names {column!r}, which is no {kind.value} "
                        f"field; name a field or map {column!r} in columns "
                        f"(fields: {sorted(allowed)})"
                    )
        named = (
            set(self.columns.values())
            | set(self.constants)
            | set(self.values)
            | set(self.derive)
            | {f for fixes in self.corrections.values() for f in fixes}
        )
        unknown = sorted(named - allowed)
        if unknown:
            raise ConfigError(
                f"mapping {where} names field(s) {unknown} that {kind.value} rows do not have; "
                f"allowed: {sorted(allowed)}"
            )
        not_countries = sorted(set(self.codes) - set(COUNTRY_FIELDS[kind]))
        if not_countries:
            raise ConfigError(
                f"mapping {where}: codes names {not_countries}, which are not country fields of "
                f"{kind.value} rows; country fields: {list(COUNTRY_FIELDS[kind])}"
            )
        if self.periods == "yearly" and kind is not Kind.MEMBERSHIPS:
            raise ConfigError(f"mapping {where}: periods: yearly applies to memberships only")
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"mapping {where}: unknown format {self.format!r}; one of {FORMATS}")


class Source(_Strict):
    """One configured raw list: its name, kind, location, format and mapping."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Kind
    uri: str
    format: str | None = None
    mapping: Mapping = Field(default_factory=Mapping)
    landing: str | None = None
    """Folder a local URI must stay inside (checked again when read); None: not confined."""
    max_rejected_share: float = Field(default=1.0, ge=0.0, le=1.0)
    """A batch with a larger share of its rows rejected fails and loads nothing; at 1.0 only a
    batch with every row rejected fails."""
    moved_from: str | None = None
    """The URI this source's name was bound to before the list moved: declares the move, so the
    name is bound to `uri` from this load on (see `relations_etl.bindings`)."""
    mode: Literal["snapshot", "append"] = "snapshot"
    """snapshot: each version of the list is the whole truth, so a fact of this source that the
    new version no longer holds is retired (see `relations_etl.retire`); append: a feed, whose
    rows absent from a new version say nothing and stay."""
    storage_options: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)
    """s3fs arguments for an `s3://` URI (endpoint_url, key, secret, anon, client_kwargs, ...);
    never written to the audit or a fingerprint, since they may hold credentials."""

    @model_validator(mode="after")
    def _known_format(self) -> Source:
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; one of {FORMATS}")
        return self

    @property
    def resolved_format(self) -> str:
        """The format given, else the mapping's, else guessed from the URI's extension."""
        return self.format or self.mapping.format or guess_format(self.uri)


def guess_format(uri: str) -> str:
    """Guess a reader from a URI's extension."""
    suffix = uri.rstrip("/").rsplit(".", 1)[-1].lower() if "." in uri.rsplit("/", 1)[-1] else ""
    guesses = {
        "csv": "csv",
        "tsv": "tsv",
        "txt": "csv",
        "xlsx": "xlsx",
        "json": "json",
        "ndjson": "ndjson",
        "jsonl": "ndjson",
        "parquet": "parquet",
        "xml": "xml",
    }
    if suffix not in guesses:
        packed = by_name(uri.rstrip("/").rsplit("/", 1)[-1])
        if packed is not None:
            raise ConfigError(
                f"{uri!r} is named as a {packed[0]}-compressed file", hint=advice(*packed)
            )
        raise ConfigError(
            f"cannot tell the format of {uri!r} from its name; give --format (one of {FORMATS})"
        )
    return guesses[suffix]


class _BudgetLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing past a number of nodes."""

    budget = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.budget -= 1
        if self.budget < 0:
            raise _OverBudgetError
        return super().compose_node(parent, index)


class _OverBudgetError(Exception):
    pass


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document once every alias is replaced by what it names (stops past `limit`).

    Aliases are the same node objects in PyYAML's graph, so each node's size is computed once:
    linear in the graph, however much it would expand. A node inside itself (`&a [*a]`) would
    expand forever and counts as over the limit.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if done:
            open_nodes.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return limit + 1
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def safe_yaml(text: str, limit: int, where: str) -> Any:
    """Parse YAML safely within a budget of nodes, aliases expanded (a 'billion laughs' file is
    refused before it is built, and before pydantic or Prefect would expand it)."""
    loader = _BudgetLoader(text)
    loader.budget = limit
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _expanded_size(root, limit) > limit:
            raise _OverBudgetError
        return loader.construct_document(root)
    except _OverBudgetError:
        raise config_too_large(
            f"{where}: the YAML document has more nodes once its aliases are expanded",
            limit,
            "max_yaml_nodes",
            "nodes",
        ) from None
    except RecursionError:
        raise ConfigError(f"{where} nests its YAML too deeply to be read") from None
    finally:
        loader.dispose()


def _read_yaml(path: Path, settings: Settings | None = None) -> Any:
    limit = (settings or Settings()).max_yaml_nodes
    try:
        return safe_yaml(path.read_text(encoding="utf-8"), limit, f"configuration file {path}")
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc


def _explain(exc: ValidationError, where: str) -> ConfigError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']} "
        f"(got {err.get('input')!r}"
        + (
            "; YAML reads bare yes/no/on/off as booleans: quote them"
            if isinstance(err.get("input"), bool)
            else ""
        )
        + ")"
        for err in exc.errors()
    )
    return ConfigError(f"{where} is not a valid configuration: {problems}")


def load_mapping(path: Path, kind: Kind, settings: Settings | None = None) -> Mapping:
    """Read a mapping file (YAML) and check it against `kind`."""
    data = _read_yaml(path, settings) or {}
    if not isinstance(data, AbcMapping):
        raise ConfigError(f"mapping file {path} must hold a YAML mapping")
    data = {k: v for k, v in data.items() if k != "kind"}
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, f"mapping file {path}") from exc
    mapping.check_fields(kind, str(path))
    return mapping


def builtin_mapping(fmt: str, kind: Kind) -> Mapping:
    """The mapping shipped for a named reader (e.g. hsg-visits-xml), or an empty one."""
    resource = resources.files("relations_etl.readers").joinpath(f"{fmt}.yaml")
    if not resource.is_file():
        return Mapping()
    data = yaml.safe_load(resource.read_text(encoding="utf-8"))
    mapping = Mapping.model_validate(data)
    mapping.check_fields(kind, f"built-in mapping for {fmt}")
    return mapping


_TOP_LEVEL = {"sources", "allowed_schemes", "landing", "confine_to_landing"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def uri_scheme(uri: str) -> str:
    """The scheme of a URI; a plain path (or a Windows drive letter) is `file`."""
    found = _SCHEME.match(uri)
    return found.group(1).lower() if found else "file"


def _local_form(uri: str, name: str | None = None) -> tuple[Path, bool] | None:
    """The path a local URI writes and whether it was written as a `file:` URI; None for a
    remote URI. `file://host/...` names another machine and is refused (only an empty host or
    `localhost` is this one): read relative to the working folder it named the wrong file."""
    if uri_scheme(uri) != "file":
        return None
    if uri[:5].lower() != "file:":
        return Path(uri), False
    rest = uri[5:]
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host.lower() not in ("", "localhost"):
            raise ConfigError(
                f"{uri!r} names the host {host!r}; a file URI reads this machine only",
                source=name,
                hint="Write file:///absolute/path (three slashes), file:relative/path, or a plain "
                "path; a relative path is taken from the landing folder or the sources file's "
                "folder.",
            )
        rest = slash + path
    if "?" in rest or "#" in rest:
        raise ConfigError(
            f"{uri!r}: a file URI has no query or fragment (write ? and # as %3F and %23)",
            source=name,
        )
    text = unquote(rest)
    if "\0" in text or not text:
        raise ConfigError(f"{uri!r} names no file", source=name)
    return Path(text), True


def local_path(uri: str) -> Path | None:
    """The local path a URI writes (not resolved), or None for a remote one."""
    form = _local_form(uri)
    return form[0] if form else None


def resolve_local(
    name: str, uri: str, landing: str | Path | None = None, base: Path | None = None
) -> Path | None:
    """The one resolution of a local URI, used both to check it and to read it.

    Every form (`file:relative`, `file:///abs`, `file://localhost/abs`, plain relative and
    absolute paths) becomes an absolute path with `..` and links resolved; a relative one is
    taken from the landing folder (else `base`, else the working folder). With a landing folder
    the result must lie inside it. None for a remote URI.
    """
    form = _local_form(uri, name)
    if form is None:
        return None
    path = form[0]
    if not path.is_absolute():
        path = Path(landing or base or Path.cwd()) / path
    target = Path(os.path.realpath(path))
    if landing is not None:
        root = Path(os.path.realpath(landing))
        if not target.is_relative_to(root):
            raise ConfigError(
                f"{uri!r} resolves to {target}, outside the landing folder {root}",
                source=name,
                hint="Put the file inside the landing folder; `..`, absolute paths and links "
                "out of it are refused.",
            )
    return target


def check_uri(name: str, uri: str, allowed: Sequence[str], landing: str | None = None) -> None:
    """Refuse a URI whose scheme is not allowed, a file URI naming another host, or a local
    path that leaves its landing folder (resolved with its links: `../..` and a symlink
    pointing outside both fail)."""
    scheme = uri_scheme(uri)
    if scheme not in allowed:
        raise ConfigError(
            f"URI scheme {scheme!r} of {uri!r} is not allowed; allowed: {sorted(allowed)}",
            source=name,
            hint="Use an allowed scheme, or add it to allowed_schemes in the sources file "
            "and to RELATIONS_ETL_ALLOWED_SCHEMES.",
        )
    resolve_local(name, uri, landing)


def _allowed(data: AbcMapping[str, Any], path: Path, settings: Settings) -> tuple[str, ...]:
    """The sources file may narrow the schemes the settings allow, never widen them."""
    listed = data.get("allowed_schemes")
    if listed is None:
        return settings.allowed_schemes
    if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
        raise ConfigError(f"configuration file {path}: allowed_schemes must be a list of names")
    wider = sorted({x.lower() for x in listed} - set(settings.allowed_schemes))
    if wider:
        raise ConfigError(
            f"configuration file {path}: allowed_schemes {wider} are not allowed by the settings "
            f"(RELATIONS_ETL_ALLOWED_SCHEMES: {list(settings.allowed_schemes)})"
        )
    return tuple(x.lower() for x in listed)


def _landing(value: Any, base: Path, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: landing must be a folder path")
    return (base / value).resolve()


def load_sources(path: Path, settings: Settings | None = None) -> list[Source]:
    """Read a sources file; relative URIs and mapping files are taken from the file's folder.

    Top-level `landing` (a folder) is where relative local URIs are taken from instead; with
    `confine_to_landing` (default true) no local URI may leave it. `allowed_schemes` narrows
    the URI schemes of the settings.
    """
    settings = settings or Settings()
    if not path.exists():
        # the usual first contact: `run` in a folder that is not the repository's root
        raise ConfigError(
            f"configuration file {path} does not exist"
            + ("" if path.is_absolute() else f" (relative to {Path.cwd()})"),
            hint="Name the sources file with `relations-etl run --config FILE` or "
            "RELATIONS_ETL_CONFIG (the nightly flow: its `config` parameter); "
            "examples/sources.yaml in the repository is a sample.",
        )
    data = _read_yaml(path, settings)
    if not isinstance(data, AbcMapping) or not isinstance(data.get("sources"), list):
        raise ConfigError(f"configuration file {path} must have a top-level 'sources:' list")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"configuration file {path}: unknown top-level key(s) {unknown}; "
            f"only {sorted(_TOP_LEVEL)} are read"
        )
    allowed = _allowed(data, path, settings)
    confine = data.get("confine_to_landing", True)
    if not isinstance(confine, bool):
        raise ConfigError(f"configuration file {path}: confine_to_landing must be true or false")
    base = path.parent
    top_landing = _landing(data.get("landing"), base, str(path))
    sources: list[Source] = []
    for position, entry in enumerate(data["sources"], start=1):
        if not isinstance(entry, AbcMapping):
            raise ConfigError(f"{path}: sources entry {position} must be a mapping")
        entry = dict(entry)
        where = f"{path}: source {entry.get('name', position)!r}"
        if isinstance(entry.get("mapping"), str):
            entry["mapping"] = _read_yaml(base / entry["mapping"], settings) or {}
        landing = _landing(entry.get("landing"), base, where) or top_landing
        entry.pop("landing", None)
        if isinstance(entry.get("uri"), str):
            check_uri(str(entry.get("name", position)), entry["uri"], allowed)
            entry["uri"] = resolve_uri(entry["uri"], landing or base)
            if landing is not None and confine:
                entry["landing"] = str(landing)
                check_uri(str(entry.get("name", position)), entry["uri"], allowed, str(landing))
        if isinstance(entry.get("moved_from"), str):
            # only compared with the bound URI, never read: resolved as `uri` is, not confined
            entry["moved_from"] = resolve_uri(entry["moved_from"], landing or base)
        try:
            source = Source.model_validate(entry)
        except ValidationError as exc:
            raise _explain(exc, where) from exc
        source.mapping.check_fields(source.kind, where)
        sources.append(source)
    names = [s.name for s in sources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{path}: source names must be unique; repeated: {duplicated}")
    return sources


def resolve_uri(uri: str, base: Path) -> str:
    """Make a relative local path (plain or `file:relative`) absolute against `base`; absolute
    paths, absolute file URIs and URLs pass through as written (they name themselves)."""
    form = _local_form(uri)
    if form is None or form[0].is_absolute():
        return uri
    return str(resolve_local(uri, uri, base=base))


def canonical_uri(uri: str) -> str:
    """One spelling per list: a local path absolute with its links resolved and no `file://`
    (a relative path is taken from the working folder), a URL with its scheme and host in
    lower case and no trailing slash."""
    path = local_path(uri)
    if path is not None:
        return str(path.resolve())
    scheme, rest = uri.split(":", 1)
    if rest.startswith("//"):
        host, _, tail = rest[2:].partition("/")
        rest = f"//{host.lower()}/{tail}" if tail else f"//{host.lower()}"
    return f"{scheme.lower()}:{rest.rstrip('/')}"


def derived_name(uri: str) -> str:
    """A source name from a file name, valid by the name rule: "visités 2023.csv" is
    `visites-2023` (accents dropped, anything else outside [A-Za-z0-9_.-] a hyphen)."""
    path = uri.split("?", 1)[0].split("#", 1)[0] if uri_scheme(uri) != "file" else uri
    base = path.rstrip("/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    letters = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", letters).strip("-_.")
    return slug or "source"


def source_for(
    kind: Kind,
    uri: str,
    fmt: str | None,
    mapping_path: Path | None,
    name: str | None = None,
    settings: Settings | None = None,
    moved_from: str | None = None,
    mode: Literal["snapshot", "append"] | None = None,
) -> Source:
    """Build the Source for a one-off `ingest` from its command-line parts.

    `moved_from` declares that the name's list moved from that URI (`ingest --moved-from`);
    `mode` is `ingest --mode` (None: the Source's default, snapshot).
    """
    check_uri(name or uri, uri, (settings or Settings()).allowed_schemes)
    mapping = load_mapping(mapping_path, kind, settings) if mapping_path else None
    resolved = fmt or (mapping.format if mapping and mapping.format else guess_format(uri))
    if mapping is None:
        mapping = builtin_mapping(resolved, kind)
    if name is None and mapping.name:
        name = mapping.name
    try:
        return Source(
            name=name or derived_name(uri),
            kind=kind,
            uri=resolve_uri(uri, Path.cwd()),
            format=resolved,
            mapping=mapping,
            moved_from=resolve_uri(moved_from, Path.cwd()) if moved_from else None,
            **({"mode": mode} if mode else {}),
        )
    except ValidationError as exc:
        raise _explain(exc, f"ingest of {uri}") from exc
