"""One exception root; every error carries the ids a user needs and says what to do."""

from __future__ import annotations


class RelationsEtlError(Exception):
    """Root of every error raised by relations_etl."""

    transient = False
    hint = ""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        batch_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.file = file
        self.row = row
        self.column = column
        self.batch_id = batch_id
        if hint is not None:
            self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [
            f"{name} {value}"
            for name, value in (
                ("source", self.source),
                ("file", self.file),
                ("row", self.row),
                ("column", self.column),
                ("batch", self.batch_id),
            )
            if value is not None
        ]
        text = f"{self.message} [{', '.join(where)}]" if where else self.message
        return f"{text}. {self.hint}" if self.hint else text


class ConfigError(RelationsEtlError):
    """A source configuration or mapping file is wrong."""

    hint = "Fix the configuration or mapping file; see the README section 'Sources and mappings'."


class SourceReadError(RelationsEtlError):
    """A raw list could not be read at all (missing file, unreadable format)."""

    hint = "Check the source URI and format; nothing was loaded for this source."


class TransientSourceError(SourceReadError):
    """A network read failed in a way that may succeed on retry."""

    transient = True
    hint = "The read is retried; if it keeps failing check the network and the server."


class ReferenceDataError(RelationsEtlError):
    """A reference data file (aliases, titles, organizations) is malformed."""

    hint = "Fix the named reference file; rows are documented in warehouse/reference/README.md."


class WarehouseError(RelationsEtlError):
    """The warehouse could not be read or written."""

    hint = "Nothing of this batch was committed; rerun once the cause is fixed."


class WarehouseLockedError(WarehouseError):
    """Another run holds the warehouse."""

    transient = True
    hint = (
        "Nothing was changed; rerun when the other run has finished, or raise "
        "RELATIONS_ETL_LOCK_TIMEOUT to wait longer."
    )
