"""Reader for the US Office of the Historian's visits XML (one file per decade)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
import fsspec
import polars as pl
from defusedxml import DefusedXmlException

from relations_etl.config import check_uri, resolve_local
from relations_etl.errors import SourceReadError
from relations_etl.extract import RawTable, as_text_table, check_fields, read_bytes
from relations_etl.limits import too_large
from relations_etl.settings import Settings
from relations_etl.text import shown

FIELDS = ("id", "start-date", "end-date", "visitor", "from", "from-id", "description")
FIRST_DECADE = 1870


def _files(uri: str, source: str, landing: str | None) -> list[str]:
    """The decade files of a folder: listed where the server can list, else probed by name."""
    if uri.endswith(".xml"):
        return [uri]
    folder = resolve_local(source, uri, landing)
    if folder is not None:  # the folder the landing check saw, listed as it is on disk
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        if not any(name.endswith(".xml") for name in names):
            raise SourceReadError(f"no <decade>.xml files found at {uri}", source=source, file=uri)
        return [str(folder / name) for name in names if name.endswith(".xml")]
    base = uri.rstrip("/")
    try:
        fs, path = fsspec.core.url_to_fs(base)
        listed = sorted(name for name in fs.ls(path, detail=False) if str(name).endswith(".xml"))
    except Exception:  # a raw repository address cannot be listed: fall back to probing
        listed = []
    if listed:
        protocol = base.split("://", 1)[0] if "://" in base else None
        if protocol in (None, "file"):
            return [str(name) for name in listed]
        return [n if "://" in str(n) else f"{protocol}://{n}" for n in listed]
    candidates = [
        f"{base}/{decade}.xml" for decade in range(FIRST_DECADE, dt.date.today().year + 1, 10)
    ]
    found = []
    for candidate in candidates:
        try:
            fs, path = fsspec.core.url_to_fs(candidate)
            if fs.exists(path):
                found.append(candidate)
        except Exception:
            continue
    if not found:
        raise SourceReadError(
            f"no <decade>.xml files found at {uri}",
            source=source,
            file=uri,
            hint="Point the source at the 'data' folder of the visits repository.",
        )
    return found


def parse_visits(data: bytes, file: str, source: str) -> pl.DataFrame:
    """Parse one visits XML document into text columns, one row per <visit>.

    The parser is defusedxml's with DTDs forbidden: a document that declares a DOCTYPE, an
    entity (an expansion bomb) or an external reference is refused, never resolved.
    """
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SourceReadError(
            f"refused: the XML declares a DTD or entities ({type(exc).__name__}); they are never "
            "resolved",
            source=source,
            file=file,
            hint="Remove the DOCTYPE from the file; this list format does not use one.",
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
    except RecursionError:
        raise SourceReadError(
            f"{file} nests its XML elements too deeply to be read", source=source, file=file
        ) from None
    columns: dict[str, list[str | None]] = {name: [] for name in FIELDS}
    for visit in root.iter("visit"):
        for name in FIELDS:
            if name == "from-id":
                element = visit.find("from")
                value = element.get("id") if element is not None else None
            else:
                element = visit.find(name)
                value = "".join(element.itertext()) if element is not None else None
            columns[name].append(value)
    return pl.DataFrame(columns, schema={name: pl.String for name in FIELDS})


def fetch_hsg_visits(
    uri: str, source: str, settings: Settings | None = None, landing: str | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield (file, bytes) of each decade file of the visits list, unparsed.

    With a `landing` folder, every listed file must resolve inside it (a decade file may be a
    link out of the folder).
    """
    settings = settings or Settings()
    remaining = settings.max_source_bytes  # for all the files of the source together
    for file in _files(uri, source, landing):
        check_uri(source, file, settings.allowed_schemes, landing)
        if remaining <= 0:
            raise too_large(
                "reading stopped: the source's files are longer together",
                settings.max_source_bytes,
                "max_source_bytes",
                source=source,
                file=file,
            )
        data = read_bytes(file, source, settings, landing=landing, limit=remaining)
        remaining -= len(data)
        yield file, data


def parse_hsg_file(data: bytes, file: str, source: str, settings: Settings) -> RawTable:
    """The raw table of one decade file's bytes."""
    frame = parse_visits(data, file, source)
    return check_fields(
        as_text_table(frame, file, hashlib.sha256(data).hexdigest()), settings, source
    )


def read_hsg_visits(
    uri: str, source: str, settings: Settings | None = None, landing: str | None = None
) -> Iterator[RawTable]:
    """Yield one raw table per decade file of the visits list (see fetch_hsg_visits)."""
    settings = settings or Settings()
    for file, data in fetch_hsg_visits(uri, source, settings, landing):
        yield parse_hsg_file(data, file, source, settings)
