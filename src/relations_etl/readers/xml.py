"""Reader for lists kept as XML: one element per record, columns named by relative paths.

`options.record` names the record element (`trip`, or a path ending in it: `trips/trip`);
a column is a path from the record: `start-date`, `country` (an element's text), `country/@id`
and `@who` (attributes). The document is read element by element (iterparse) and each record
is let go once read, so the tree never grows with the file. defusedxml's rules hold: a document
declaring a DTD (and so an entity, a "billion laughs" expansion, an external reference) is
refused, never resolved.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import fsspec
import polars as pl
from defusedxml import DefusedXmlException

from relations_etl.config import Mapping, resolve_local
from relations_etl.envelope import RowErrors
from relations_etl.errors import ConfigError, SourceReadError
from relations_etl.limits import check_table_size
from relations_etl.rawtable import RawTable, as_text_table, check_fields
from relations_etl.reasons import Reason
from relations_etl.settings import Settings
from relations_etl.text import shown


def _local(name: str) -> str:
    """A tag or attribute name without its namespace ({uri}trip is trip)."""
    return name.rsplit("}", 1)[-1]


@dataclass(frozen=True)
class RecordPath:
    """Which elements are records: the last tags of their path (anchored at the root if the
    option starts with '/')."""

    tags: tuple[str, ...]
    anchored: bool

    @classmethod
    def parse(cls, option: Any, source: str) -> RecordPath:
        """Read `options.record`."""
        if not isinstance(option, str) or not option.strip("/ "):
            raise ConfigError(
                "format xml needs options.record: the element that is one record",
                source=source,
                hint="Set options: {record: trip} (or a path such as trips/trip) in the mapping; "
                "the Office of the Historian's visits read with --format hsg-visits-xml.",
            )
        text = option.strip()
        tags = tuple(t for t in text.strip("/").split("/") if t)
        if any(t.startswith("@") or t in (".", "..", "*") for t in tags):
            raise ConfigError(
                f"options.record {option!r} must name elements (trips/trip), no attribute or "
                "wildcard",
                source=source,
            )
        return cls(tags, text.startswith("/"))

    def matches(self, stack: Sequence[str]) -> bool:
        """Whether the open element at the end of `stack` (tags from the root) is a record."""
        n = len(self.tags)
        if len(stack) < n or tuple(stack[-n:]) != self.tags:
            return False
        return not self.anchored or len(stack) == n


def _path_parts(path: str) -> tuple[list[str], str | None]:
    """`country/@id` -> (['country'], 'id'); `@who` -> ([], 'who'); `a/b` -> (['a', 'b'], None)."""
    steps = [s for s in path.strip().split("/") if s and s != "."]
    attribute = steps.pop()[1:] if steps and steps[-1].startswith("@") else None
    return steps, attribute


def _select(record: Element, path: str) -> list[str]:
    """Every value `path` finds from `record`: element text (nested markup's text included) or
    an attribute's value."""
    steps, attribute = _path_parts(path)
    found = [record]
    for step in steps:
        found = [child for e in found for child in e if _local(str(child.tag)) == step]
    if attribute is None:
        return ["".join(e.itertext()) for e in found]
    values: list[str] = []
    for element in found:
        for name, value in element.attrib.items():
            if _local(name) == attribute:
                values.append(value)
    return values


def _discovered(record: Element) -> list[str]:
    """The columns a record offers unasked: its attributes, its children's text and the
    children's attributes."""
    names = [f"@{_local(a)}" for a in record.attrib]
    for child in record:
        tag = _local(str(child.tag))
        names.append(tag)
        names.extend(f"{tag}/@{_local(a)}" for a in child.attrib)
    return names


def mapping_paths(mapping: Mapping) -> tuple[list[str], bool]:
    """The paths a mapping reads (columns, record id, drop rules on columns) and whether the
    reader should also offer every column a record has (no columns named, or an unpivot that
    picks columns by rule)."""
    fields = set(mapping.fields_from_columns().values())
    named = [
        *mapping.columns,
        *mapping.record_id,
        *(k for rule in mapping.drop for k in rule.when if k not in fields),
    ]
    unpivot = mapping.unpivot
    if unpivot is not None and isinstance(unpivot.columns, list):
        named.extend(unpivot.columns)
    discover = not mapping.columns or (
        unpivot is not None and not isinstance(unpivot.columns, list)
    )
    return list(dict.fromkeys(named)), discover


def parse_xml(
    data: bytes | IO[bytes],
    record: RecordPath,
    paths: Sequence[str],
    *,
    discover: bool,
    file: str,
    source: str,
    settings: Settings | None = None,
) -> tuple[pl.DataFrame, RowErrors]:
    """One row per record element: a column per path (in order), with the columns records
    offer unasked after them when `discover`. A path that finds several elements in one record
    makes a read error on that row (a column holds one value). The settings' max_columns and
    max_cells bound what records may offer. `data` is the document's bytes, or a file read
    as it is parsed."""
    limits = settings or Settings()
    columns: dict[str, list[str | None]] = {p: [] for p in paths}
    errors: RowErrors = []
    rows = 0
    stack: list[Element] = []
    tags: list[str] = []
    inside = 0  # depth of the record being read (0: outside any record)
    try:
        for event, element in SafeET.iterparse(
            io.BytesIO(data) if isinstance(data, bytes) else data,
            events=("start", "end"),
            forbid_dtd=True,
        ):
            if event == "start":
                stack.append(element)
                tags.append(_local(str(element.tag)))
                if not inside and record.matches(tags):
                    inside = len(stack)
                continue
            if inside == len(stack):
                _read_record(element, paths, discover, columns, errors, rows)
                rows += 1
                inside = 0
                check_table_size(
                    limits,
                    rows,
                    len(columns),
                    "the XML document",
                    rows_are="records",
                    source=source,
                    file=file,
                )
            stack.pop()
            tags.pop()
            if not inside and stack:
                # what is read is let go: the tree never holds more than the open elements
                stack[-1].remove(element)
    except DefusedXmlException as exc:
        raise SourceReadError(
            f"refused: the XML declares a DTD or entities ({type(exc).__name__}); they are never "
            "resolved",
            source=source,
            file=file,
            hint="Remove the DOCTYPE from the file; a list kept as XML does not need one.",
        ) from exc
    except ParseError as exc:
        line, column = exc.position
        raise SourceReadError(
            f"{file} is not well-formed XML at line {line}, column {column + 1}: "
            f"{shown(str(exc), 120, quoted=False)}",
            source=source,
            file=file,
        ) from exc
    except (LookupError, ValueError, UnicodeError) as exc:
        # expat reads UTF-8, UTF-16, ISO-8859-1 and US-ASCII; "UTF-7" or "klingon" end here
        raise SourceReadError(
            f"{file} declares an encoding the XML parser cannot read "
            f"({shown(str(exc), 80, quoted=False)})",
            source=source,
            file=file,
            hint="Save the file as UTF-8 (and say so in its XML declaration); nothing was loaded.",
        ) from exc
    if rows == 0:
        raise SourceReadError(
            f"{file} holds no <{'/'.join(record.tags)}> element: no record was read",
            source=source,
            file=file,
            hint="Check options.record: it names the element that is one record (trip, or a "
            "path such as trips/trip).",
        )
    for values in columns.values():
        values.extend([None] * (rows - len(values)))
    return pl.DataFrame(columns, schema={name: pl.String for name in columns}), errors


def _read_record(
    element: Element,
    paths: Sequence[str],
    discover: bool,
    columns: dict[str, list[str | None]],
    errors: RowErrors,
    row: int,
) -> None:
    """Append one record's values to `columns` (row number `row`, from 0)."""
    problems: list[dict[str, str | None]] = []
    wanted = list(paths)
    if discover:
        # the columns earlier records offered come last, so one this record lacks gets None
        wanted += [*_discovered(element), *columns]
    for path in dict.fromkeys(wanted):
        values = _select(element, path)
        if path not in columns:
            columns[path] = [None] * row
        if len(values) > 1 and path in paths:
            problems.append(
                {
                    "column": path,
                    "check": Reason.XML_RECORD,
                    "value": "; ".join(values),
                    "message": f"{path} finds {len(values)} elements in record {row + 1}; a "
                    "column holds one value (name one of them, e.g. with a longer path)",
                }
            )
        # a repeated child the mapping does not name is shown whole and harms nothing
        columns[path].append("; ".join(values) if values else None)
    errors.append(problems)


def xml_files(uri: str, source: str, landing: str | None) -> list[str]:
    """The files of a source: one file, or the .xml files of a folder (local, or listed by
    fsspec where the server lists); [] when a remote folder cannot be listed."""
    folder = resolve_local(source, uri, landing)
    if folder is not None:  # the path the landing check saw, listed as it is on disk
        if not folder.is_dir():
            return [uri]
        return [str(folder / n) for n in sorted(os.listdir(folder)) if n.lower().endswith(".xml")]
    if uri.lower().endswith(".xml"):
        return [uri]
    base = uri.rstrip("/")
    try:
        fs, path = fsspec.core.url_to_fs(base)
        listed = sorted(
            str(n) for n in fs.ls(path, detail=False) if str(n).lower().endswith(".xml")
        )
    except Exception:  # a raw repository address cannot be listed: the caller decides
        return []
    protocol = base.split("://", 1)[0] if "://" in base else None
    if protocol in (None, "file"):
        return listed
    return [n if "://" in n else f"{protocol}://{n}" for n in listed]


def parse_xml_file(
    data: bytes | IO[bytes],
    file: str,
    source: str,
    settings: Settings,
    *,
    record: RecordPath,
    paths: Sequence[str],
    discover: bool,
    content_hash: str | None = None,
) -> RawTable:
    """The raw table of one XML file (its bytes, or the file read as it is parsed, with its
    `content_hash`), one row per record element."""
    if content_hash is None:
        if not isinstance(data, bytes):
            raise TypeError("a file read as it is parsed needs its content_hash")
        content_hash = hashlib.sha256(data).hexdigest()
    frame, errors = parse_xml(
        data, record, paths, discover=discover, file=file, source=source, settings=settings
    )
    table = as_text_table(frame, file, content_hash, errors)
    return check_fields(table, settings, source)


def source_files(uri: str, source: str, landing: str | None = None) -> list[str]:
    """The files of a source of `format: xml`: one file, or the .xml files of a folder."""
    files = xml_files(uri, source, landing)
    if not files:
        raise SourceReadError(
            f"no .xml files found at {uri}",
            source=source,
            file=uri,
            hint="Point the source at one XML file or a folder holding .xml files.",
        )
    return files


def mapping_spec(mapping: Mapping, source: str) -> tuple[RecordPath, list[str], bool]:
    """What a source of `format: xml` reads, as its mapping names it: the record element, the
    paths, and whether records offer their other columns too (see `parse_xml_file`)."""
    record = RecordPath.parse(mapping.options.get("record"), source)
    paths, discover = mapping_paths(mapping)
    return record, paths, discover
