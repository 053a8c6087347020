"""One exception root: every error carries the ids a user needs, a hint and an exit code.

Exit codes follow sysexits(3), so a scheduler can tell "retry later" (75) from "fix the data"
(65), "the input is not there" (66) and "fix the configuration" (78); see README "Exit codes".
"""

from __future__ import annotations

EX_SOURCES_FAILED = 1
EX_PUBLISH_PENDING = 3
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


def sentence(text: str) -> str:
    """`text` ending as a sentence: one full stop added only where no punctuation ends it."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", ":")) else f"{text}."


def join_sentences(text: str, then: str) -> str:
    """`then` after `text`: on the same line, or on its own line after a multi-line message
    (DuckDB's errors end with the query and a caret under the error)."""
    if "\n" in text.strip():
        return f"{text.rstrip()}\n{then}"
    return f"{sentence(text)} {then}"


class RelationsEtlError(Exception):
    """Root of every error raised by relations_etl."""

    transient = False
    hint = ""
    exit_code = EX_SOFTWARE

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

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only ids do not survive Exception's default pickling (a child process reader
        # sends its errors back pickled): rebuild from the message and restore every attribute
        return (_restore, (type(self), self.message, dict(self.__dict__)))

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
        return join_sentences(text, self.hint) if self.hint else text


def _restore(cls: type[RelationsEtlError], message: str, state: dict[str, object]) -> Exception:
    error = cls(message)
    error.__dict__.update(state)
    return error


class ConfigError(RelationsEtlError):
    """A source configuration or mapping file is wrong."""

    hint = "Fix the configuration or mapping file; see the README section 'Sources and mappings'."
    exit_code = EX_CONFIG


class SourceBoundError(ConfigError):
    """A source name is bound to one list and was given another URI."""

    hint = (
        "Nothing was loaded. If this is another list, give it another name (ingest --name); "
        "if the list moved, declare it: ingest --moved-from OLD_URI, or moved_from: OLD_URI in "
        "the source's entry."
    )


class SourceReadError(RelationsEtlError):
    """A raw list could not be read at all (unreadable format, broken file)."""

    hint = "Check the source URI and format; nothing was loaded for this source."
    exit_code = EX_DATAERR


class SourceMissingError(SourceReadError):
    """The raw list is not there: no such file, or the server answered 404/410."""

    hint = "Check that the file or URL exists; nothing was loaded for this source."
    exit_code = EX_NOINPUT


class ColumnsMissingError(SourceReadError, ConfigError):
    """The list lacks columns its mapping needs: either the list or the mapping is wrong."""

    hint = "Fix the mapping's column names, or ask for the list with those columns."
    exit_code = EX_DATAERR


class LimitError(SourceReadError):
    """An input is larger than a limit of the settings allows (bytes, fields, columns, cells)."""

    hint = (
        "Nothing was loaded for this source. If the input is what you expect, raise the setting "
        "named above (README 'Limits'); otherwise fix or replace the file."
    )
    exit_code = EX_DATAERR


class TransientSourceError(SourceReadError):
    """A read failed in a way that may succeed on retry (network, server error, file in flux)."""

    transient = True
    hint = "The read is retried; if it keeps failing check the network and the server."
    exit_code = EX_TEMPFAIL


class BatchRejectedError(RelationsEtlError):
    """Every row of a batch, or more than its source's max_rejected_share, was rejected."""

    exit_code = EX_DATAERR
    _hint = (
        "Nothing of this batch was loaded and what the source loaded before is unchanged; its "
        "rejected rows are in quarantine (relations-etl quarantine{only}): fix the list or its "
        "mapping and run it again, or add the missing values to the reference data and run "
        "relations-etl quarantine replay{only}."
    )
    hint = _hint.format(only="")

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        batch_id: str | None = None,
        rows_read: int = 0,
        rows_rejected: int = 0,
        hint: str | None = None,
    ) -> None:
        self.rows_read = rows_read
        self.rows_rejected = rows_rejected
        only = f" --source {source}" if source else ""
        hint = hint if hint is not None else self._hint.format(only=only)
        super().__init__(message, source=source, batch_id=batch_id, hint=hint)


class ReferenceDataError(RelationsEtlError):
    """A reference data file (aliases, titles, organizations) is malformed."""

    hint = "Fix the named reference file; rows are documented in warehouse/reference/README.md."
    exit_code = EX_CONFIG


class WarehouseError(RelationsEtlError):
    """The warehouse could not be read or written."""

    hint = "Nothing of this batch was committed; rerun once the cause is fixed."
    exit_code = EX_IOERR


class SourcesFailedError(RelationsEtlError):
    """Some sources of a nightly run failed; the others were loaded."""

    hint = "The other sources were loaded; see each failed source's message and the audit table."
    exit_code = EX_SOURCES_FAILED


class PublishPendingError(RelationsEtlError):
    """Batches were committed, but the disk refused their Parquet files; the next run writes
    them (their years wait in publish_queue)."""

    hint = (
        "The rows are loaded (load_batches: succeeded) and `relations-etl sql` sees them; the "
        "Parquet files other teams read are not updated yet. Free space or fix the permissions "
        "of the home's parquet/ folder, then run again: any run, even one that skips every "
        "source, writes what waits."
    )
    exit_code = EX_PUBLISH_PENDING


class WarehouseLockedError(WarehouseError):
    """Another run holds the warehouse."""

    transient = True
    exit_code = EX_TEMPFAIL
    hint = (
        "Nothing was changed; rerun when the other run has finished, or raise "
        "RELATIONS_ETL_LOCK_TIMEOUT to wait longer."
    )


class PrefectUnavailableError(RelationsEtlError):
    """The Prefect API a flow run reports to could not be started or reached."""

    transient = True
    exit_code = EX_TEMPFAIL
    hint = (
        "Nothing was loaded; rerun later, raise RELATIONS_ETL_PREFECT_STARTUP_TIMEOUT if the "
        "embedded API starts slowly on a busy machine, or set PREFECT_API_URL to a running "
        "Prefect server (`prefect server start`). `relations-etl ingest` needs no Prefect API."
    )


class QueryError(RelationsEtlError):
    """An analyst's query was refused (not read-only) or failed; the warehouse is unchanged."""

    hint = "Check the SQL: `sql` runs one read-only query (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN)."
    exit_code = EX_USAGE


class OutputError(RelationsEtlError):
    """A file the user asked for (a report) could not be written."""

    hint = "Give a path in a folder that exists and that you can write to."
    exit_code = EX_CANTCREAT


class UnknownCountryError(RelationsEtlError):
    """A country a command asks for (a report's) is unknown, ambiguous, or did not exist then."""

    hint = (
        "Give an ISO 3166 alpha-3 code (KAZ), an ISO name (Kazakhstan) or an alias of "
        "country_aliases.csv; a label of your own goes into <home>/reference/country_aliases.csv."
    )
    exit_code = EX_USAGE


class ClusterUnavailableError(RelationsEtlError):
    """The Dask scheduler a run was to use could not be started or reached."""

    transient = True
    exit_code = EX_TEMPFAIL
    hint = (
        "Nothing was loaded; check RELATIONS_ETL_DASK_ADDRESS (tcp://host:8786) and that its "
        "scheduler runs, or unset it for a temporary local cluster, or run without "
        "--task-runner dask."
    )
