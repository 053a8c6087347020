"""Compressed inputs told apart by name and by first bytes, for an error that says what they are."""

from __future__ import annotations

# (name, suffixes, first bytes, the command that makes the list readable)
_KINDS = (
    ("gzip", ("gz", "tgz"), b"\x1f\x8b", "gunzip"),
    ("zip", ("zip",), b"PK\x03\x04", "unzip"),
    ("bzip2", ("bz2",), b"BZh", "bunzip2"),
    ("xz", ("xz",), b"\xfd7zXZ\x00", "unxz"),
    ("zstd", ("zst", "zstd"), b"\x28\xb5\x2f\xfd", "unzstd"),
    ("7z", ("7z",), b"7z\xbc\xaf\x27\x1c", "7z x"),
)


def by_name(name: str) -> tuple[str, str] | None:
    """The compression a file name's last suffix stands for, and the command that unpacks it
    (a tar archive's for .tar.gz and the like); None if none."""
    stem, _, suffix = name.lower().rpartition(".")
    for kind, suffixes, _, command in _KINDS:
        if stem and suffix in suffixes:
            tar = suffix == "tgz" or stem.endswith(".tar")
            return kind, "tar -xf" if tar else command
    return None


# after "BZh" and its block size (1-9): the magic of a first block, or of an empty stream's end
_BZIP2_NEXT = (b"1AY&SY", b"\x17rE8P\x90")


def by_content(first: bytes) -> tuple[str, str] | None:
    """The compression a file's first bytes show, and its command; None if none."""
    for name, _, magic, command in _KINDS:
        if not first.startswith(magic):
            continue
        # "BZh" alone may begin a text list: a header named BZh_code, say
        if name != "bzip2" or (first[3:4].isdigit() and first[4:10] in _BZIP2_NEXT):
            return name, command
    return None


def advice(name: str, command: str) -> str:
    """What to do with a compressed list: lists are read as they are, never unpacked here."""
    return (
        f"Lists are read as they are: unpack it first ({command}) and point the source at the "
        f"file inside (relations-etl never unpacks a {name} archive itself). Nothing was loaded "
        "for this source."
    )
