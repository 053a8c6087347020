"""XLSX: one named sheet, a header below merged title rows, cached formula values, all as text.

Before calamine sees a workbook, its ZIP directory and the chosen sheet's XML are inspected
here in plain Python: the declared uncompressed sizes against max_decompressed_bytes, and the
span of the used cells against max_columns and max_cells (calamine allocates the whole span
at once: one cell at XFD1048576 asked for 512 GiB and aborted the process). calamine itself
runs in the reader child process (readers/isolated.py).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import polars as pl
from defusedxml import DefusedXmlException

from relations_etl.errors import SourceReadError
from relations_etl.limits import amount, check_table_size, too_large
from relations_etl.readers.isolated import run_isolated
from relations_etl.readers.isolated_readers import sheet_cells
from relations_etl.settings import Settings
from relations_etl.text import shown

_NOT_XLSX = "not a readable XLSX workbook (truncated, or another format under an .xlsx name)"
_OFFICE_DOCUMENT = "/officeDocument"
_CHUNK = 1 << 20
# a cell or row start tag (any namespace prefix) with its attributes (quoted values may hold
# '>'), and its r="..."
_PREFIX = rb"(?:[A-Za-z_][\w.-]*:)?"
_TAG = re.compile(
    rb"<" + _PREFIX + rb"""(row|c)((?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(/?)>"""
)
_REF = re.compile(rb"""(?:^|\s)r\s*=\s*["']([A-Za-z]*)(\d*)["']""")
# the common case, every cell written with r="...": one findall per chunk
_CELL_REF = re.compile(rb"<" + _PREFIX + rb"""c\s[^>]*?\br="([A-Z]{1,7})(\d{1,10})"[^>]*?(/?)>""")
_CELL_ANY = re.compile(rb"<" + _PREFIX + rb"c[\s/>]")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(book: zipfile.ZipFile, name: str) -> Element:
    try:
        root: Element = SafeET.fromstring(book.read(name), forbid_dtd=True)
    except (KeyError, ParseError, DefusedXmlException, zipfile.BadZipFile, ValueError) as exc:
        raise _Broken(f"{name}: {type(exc).__name__}") from exc
    return root


class _Broken(Exception):
    pass


def _relations(book: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """A part's relationships: id -> (type, target path inside the archive)."""
    folder, _, name = part.rpartition("/")
    rels = f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"
    if rels not in book.namelist():
        return {}
    found = {}
    for element in _xml(book, rels).iter():
        if _local(element.tag) != "Relationship":
            continue
        target = element.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else f"{folder}/{target}".lstrip("/")
        found[element.get("Id", "")] = (element.get("Type", ""), _normalize(path))
    return found


def _normalize(path: str) -> str:
    parts: list[str] = []
    for piece in path.split("/"):
        if piece == "..":
            if parts:
                parts.pop()
        elif piece and piece != ".":
            parts.append(piece)
    return "/".join(parts)


def _sheets(book: zipfile.ZipFile) -> list[tuple[str, str | None]]:
    """(name, worksheet part) of every sheet in workbook order."""
    document = next(
        (t for kind, t in _relations(book, "").values() if kind.endswith(_OFFICE_DOCUMENT)),
        "xl/workbook.xml",
    )
    targets = _relations(book, document)
    sheets = []
    for element in _xml(book, document).iter():
        if _local(element.tag) != "sheet":
            continue
        rid = next((v for k, v in element.attrib.items() if _local(k) == "id"), "")
        sheets.append((element.get("name", ""), targets.get(rid, ("", None))[1]))
    return sheets


def _column_number(letters: bytes) -> int:
    number = 0
    for byte in letters.upper()[:8]:  # eight letters already pass any limit
        number = number * 26 + byte - 64
    return number


def _chunks(book: zipfile.ZipFile, part: str) -> Iterator[bytes]:
    """The part decompressed in chunks, each ending before a tag that might be cut."""
    tail = b""
    with book.open(part) as stream:
        while block := stream.read(_CHUNK):
            block = tail + block
            cut = block.rfind(b"<")
            tail, block = (block[cut:], block[:cut]) if cut >= 0 else (b"", block)
            yield block
    if tail:
        yield tail


def _span(book: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """(rows, columns) from the first to the last used cell: what calamine allocates."""
    rows: list[int] = []
    columns: list[int] = []
    for chunk in _chunks(book, part):
        cells = _CELL_REF.findall(chunk)
        if len(cells) != len(_CELL_ANY.findall(chunk)):
            return _span_in_order(book, part)  # positions implied by order: count them
        used = [(letters, digits) for letters, digits, empty in cells if not empty]
        if used:
            numbers = [int(d) for _, d in used]
            letters = {c for c, _ in used}
            rows += [min(numbers), max(numbers)]
            columns += [min(map(_column_number, letters)), max(map(_column_number, letters))]
    if not rows:
        return 0, 0
    return max(rows) - min(rows) + 1, max(columns) - min(columns) + 1


def _span_in_order(book: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """The same where rows or cells omit r="...": a row follows the previous one, a cell the
    previous cell of its row (OOXML's rule, and calamine's)."""
    row = column = 0
    low_row = low_column = 1 << 62
    high_row = high_column = 0
    for chunk in _chunks(book, part):
        for tag, attributes, empty in _TAG.findall(chunk):
            ref = _REF.search(attributes)
            if tag == b"row":
                row = int(ref.group(2)[:12]) if ref and ref.group(2) else row + 1
                column = 0
                continue
            if ref and ref.group(1):
                column = _column_number(ref.group(1))
                if ref.group(2):
                    row = int(ref.group(2)[:12])
            else:
                column += 1
            if not empty:
                low_row, high_row = min(low_row, row), max(high_row, row)
                low_column, high_column = min(low_column, column), max(high_column, column)
    if not high_row:
        return 0, 0
    return high_row - low_row + 1, high_column - low_column + 1


def inspect(data: bytes, sheet: Any, settings: Settings, uri: str, source: str) -> str:
    """Check the workbook against the limits before it is read; return the sheet to read."""
    try:
        book = zipfile.ZipFile(io.BytesIO(data))
        infos = book.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise SourceReadError(
            f"{_NOT_XLSX}: not a ZIP archive ({shown(str(exc), 80, quoted=False)})",
            source=source,
            file=uri,
            hint="Export the list again from the spreadsheet program; nothing was loaded.",
        ) from exc
    declared = sum(info.file_size for info in infos)
    if declared > settings.max_decompressed_bytes:
        biggest = max(infos, key=lambda info: info.file_size)
        raise too_large(
            f"the workbook decompresses to {amount(declared)} ({shown(biggest.filename)} alone "
            f"{amount(biggest.file_size)}, from {amount(len(data))} on disk)",
            settings.max_decompressed_bytes,
            "max_decompressed_bytes",
            source=source,
            file=uri,
        )
    try:
        sheets = _sheets(book)
    except _Broken as exc:
        raise SourceReadError(
            f"{_NOT_XLSX}: {shown(str(exc), 80, quoted=False)}",
            source=source,
            file=uri,
            hint="Export the list again from the spreadsheet program; nothing was loaded.",
        ) from exc
    names = [name for name, _ in sheets]
    if not names:
        raise SourceReadError(f"{_NOT_XLSX}: it lists no sheet", source=source, file=uri)
    if sheet is None and len(names) > 1:
        raise SourceReadError(
            f"the workbook has {len(names)} sheets {[shown(n, quoted=False) for n in names[:20]]}"
            "; say which one to read",
            source=source,
            file=uri,
            hint="Set options.sheet in the mapping to a sheet name (or its 0-based position).",
        )
    chosen = 0 if sheet is None else sheet
    if isinstance(chosen, bool) or not (
        (isinstance(chosen, str) and chosen in names)
        or (isinstance(chosen, int) and 0 <= chosen < len(names))
    ):
        raise SourceReadError(
            f"the workbook has no sheet {chosen!r}; its sheets are "
            f"{[shown(n, quoted=False) for n in names[:20]]}",
            source=source,
            file=uri,
        )
    name, part = sheets[chosen] if isinstance(chosen, int) else sheets[names.index(chosen)]
    if part is not None and part in book.namelist():
        try:
            rows, columns = _span(book, part)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceReadError(
                f"{_NOT_XLSX}: sheet {shown(name)} cannot be decompressed ({exc})",
                source=source,
                file=uri,
            ) from exc
        check_table_size(settings, rows, columns, f"sheet {shown(name)}", source=source, file=uri)
    return name


def read_xlsx(
    data: bytes, *, sheet: Any, skip_rows: int, uri: str, source: str, settings: Settings
) -> pl.DataFrame:
    """Read one sheet; the header is the first row after `skip_rows` rows (merged titles).

    A formula cell gives the value Excel cached when it last saved the file; a formula without a
    cached value reads as empty. A workbook of several sheets needs `options.sheet`.
    """
    chosen = inspect(data, sheet, settings, uri, source)
    table = run_isolated(
        sheet_cells,
        (data, chosen, uri, source),
        what="XLSX",
        settings=settings,
        source=source,
        file=uri,
    )
    cells = pl.DataFrame(pl.from_arrow(table))
    if cells.height <= skip_rows:
        raise SourceReadError(
            f"sheet {shown(chosen)} is empty"
            + (f" below its first {skip_rows} row(s)" if skip_rows else ""),
            source=source,
            file=uri,
        )
    header_cells = cells.row(skip_rows)
    header = [
        str(v).strip() if v is not None and str(v).strip() else f"column_{n}"
        for n, v in enumerate(header_cells, start=1)
    ]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise SourceReadError(
            f"header (sheet {shown(chosen)}, row {skip_rows + 1}) repeats column name(s) "
            f"{[shown(r, quoted=False) for r in repeated[:20]]}",
            source=source,
            file=uri,
            column=shown(repeated[0], quoted=False),
            hint="Rename the repeated columns; a title above the header is skipped with "
            "options.skip_rows.",
        )
    body = cells.slice(skip_rows + 1)
    body.columns = header
    return body.filter(~pl.all_horizontal(pl.all().is_null()))
