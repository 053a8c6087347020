"""Reader for the US Office of the Historian's visits XML (one file per decade).

The documents are read by the generic XML reader (`readers/xml.py`, records `<visit>`); what
is particular to this list is finding its decade files where a server cannot list a folder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import IO

import fsspec

from relations_etl.config import resolve_local
from relations_etl.errors import SourceReadError
from relations_etl.fetch import fetch_files, open_hashed
from relations_etl.rawtable import RawTable
from relations_etl.readers.xml import RecordPath, parse_xml_file, xml_files
from relations_etl.settings import Settings

FIELDS = ("id", "start-date", "end-date", "visitor", "from", "from/@id", "description")
"""The columns read from each <visit>: child elements, and the `id` attribute of <from>."""
RECORD = RecordPath(("visit",), anchored=False)
FIRST_DECADE = 1870


def decade_files(uri: str, source: str, landing: str | None) -> list[str]:
    """The decade files of a folder: listed where the server can list, else probed by name."""
    if uri.endswith(".xml"):
        return [uri]
    folder = resolve_local(source, uri, landing)
    if folder is not None:
        listed = xml_files(uri, source, landing) if folder.is_dir() else []
        if not listed:
            raise SourceReadError(f"no <decade>.xml files found at {uri}", source=source, file=uri)
        return listed
    listed = xml_files(uri, source, landing)
    if listed:
        return listed
    base = uri.rstrip("/")
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


def parse_hsg_file(
    data: bytes | IO[bytes],
    file: str,
    source: str,
    settings: Settings,
    content_hash: str | None = None,
) -> RawTable:
    """The raw table of one decade file (its bytes, or the file read as it is parsed, with its
    `content_hash`)."""
    return parse_xml_file(
        data,
        file,
        source,
        settings,
        record=RECORD,
        paths=FIELDS,
        discover=False,
        content_hash=content_hash,
    )


def read_hsg_visits(
    uri: str, source: str, settings: Settings | None = None, landing: str | None = None
) -> Iterator[RawTable]:
    """Yield one raw table per decade file of the visits list. With a `landing` folder, every
    listed file must resolve inside it (a decade file may be a link out of the folder)."""
    settings = settings or Settings()
    files, spool = fetch_files(
        decade_files(uri, source, landing), source, settings, landing=landing
    )
    try:
        for file in files:
            with open_hashed(file, source) as handle:
                yield parse_hsg_file(handle, file.uri, source, settings, file.sha256)
    finally:
        spool.remove()
