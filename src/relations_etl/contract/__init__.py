"""Contract: what each published table means, its version, and the metadata its Parquet carries."""

from __future__ import annotations

from typing import Any

from relations_etl.config import Kind
from relations_etl.facts import (
    EVENTS,
    METRICS,
    PRECISIONS,
    ROLES,
    STATUSES,
    TABLE,
    VISIT_TYPES,
    YEAR_OF,
    fact_columns,
)
from relations_etl.reasons import Reason

# Semantic version of the published tables and of the analyst views (from 1.2.0 on). A removed,
# renamed or retyped column (or table, or view) needs a major bump, an added one at least a
# minor bump; `relations-etl contracts` then ships schemas/history/<version>.json and
# tests/test_contract.py checks the bump against it.
CONTRACT_VERSION = "2.2.0"

REJECTED_ROWS = "rejected_rows"
# Parquet key-value metadata: the version, the table, and one entry per column.
VERSION_KEY = "contract_version"
TABLE_KEY = "contract_table"
DESCRIPTION_PREFIX = "description:"

_DATE = "DATE; a month or year is stored as its first day (start) or last day (end)"
DOCS: dict[str, str] = {
    "visit_id": "Stable id: <source>:<source_record>, plus #<n> for the n-th person of a record.",
    "membership_id": "Stable id: <source>:<first source_record of the period>.",
    "relation_id": "Stable id: <source>:<source_record>.",
    "host_country": "Alpha-3 code of the country visited.",
    "visitor_country": "Alpha-3 code of the visitor's country (NULL for heads of organizations).",
    "visitor_organization": "Organization code of a visiting head of organization.",
    "visitor_name": "Visitor's name as the list gives it, title removed.",
    "visitor_title": "Raw title as the list gives it (e.g. 'Taoiseach').",
    "visitor_role": f"Role the title means for that country: one of {', '.join(ROLES)}.",
    "visit_type": f"One of {', '.join(VISIT_TYPES)}; NULL when the list does not say.",
    "start_date": _DATE + ".",
    "end_date": _DATE + "; NULL: unknown (visits) or still in force (memberships).",
    "start_precision": f"Precision of start_date: {', '.join(PRECISIONS)}.",
    "end_precision": f"Precision of end_date: {', '.join(PRECISIONS)}.",
    "event_precision": f"Precision of event_date: {', '.join(PRECISIONS)}.",
    "city": "City of the visit, when given.",
    "event": (
        "Visits: the event attended (e.g. COP28). Relations: one of " + ", ".join(EVENTS) + "."
    ),
    "notes": "Free text from the list.",
    "country": "Alpha-3 code of the member (memberships) or of one side (relations).",
    "organization": "Organization code (organizations.csv), e.g. UN, SCO, UNESCO.",
    "body": "Code of a body inside the organization (UNSC, WHC), or NULL for the organization.",
    "status": f"One of {', '.join(STATUSES)}.",
    "counterpart": "Alpha-3 code of the other side; relations hold both ways.",
    "event_date": _DATE + ".",
    "source": "Name of the configured source the row came from.",
    "source_record": "Record id in the source (its id column, else the row number; a..b for "
    "a period collapsed from yearly rows).",
    "batch_id": "Batch that wrote the row (see load_batches).",
    "loaded_at": "When the row was written (UTC).",
    "reported_id": "Stable id: <source>:<source_record>.",
    "year": "Reported totals: the calendar year the total counts.",
    "metric": "What a reported total counts: the annual_summary column of the same name, one of "
    + ", ".join(METRICS)
    + ".",
    "value": "The total as the authority published it.",
    "publisher": "Who published the total (e.g. a foreign ministry).",
    "published_on": _DATE + "; NULL: not known.",
    "published_precision": f"Precision of published_on: {', '.join(PRECISIONS)}.",
}

# the quarantine's columns mean something else than the facts' lineage columns of the same name
REJECTED_DOCS: dict[str, str] = {
    "batch_id": "Batch that rejected the row (see load_batches).",
    "source": "Name of the configured source the row came from.",
    "kind": "Kind of fact the row was meant to become.",
    "source_file": "File the row was read from, as the source resolved it.",
    "source_row": "Row number in that file (1 = first data row).",
    "source_record": "Record id in the source (its id column, else the row number).",
    "raw": "The raw row exactly as read: a JSON object of column -> text (NULL for empty cells).",
    "errors": "Every reason the row failed: a list of {column, check, value, message}.",
    "rejected_at": "When the row was rejected (UTC).",
    "resolved_batch_id": "Batch that closed this entry; NULL while the row is still open.",
    "resolution": "loaded: the row now passes; replayed or superseded: a newer entry holds "
    "today's reasons; NULL while open.",
}

# closed value sets of the quarantine (the fact tables take theirs from the pandera schemas)
REJECTED_VALUES: dict[str, tuple[str, ...]] = {
    "kind": tuple(k.value for k in Kind),
    "resolution": ("loaded", "replayed", "superseded"),
}

# One real row per published table, as JSON values, taken from the demo warehouse that
# `make demo` builds from examples/; tests/test_contract.py finds each of them there.
EXAMPLES: dict[str, dict[str, Any]] = {
    "visits": {
        "visit_id": "kz-visits-2023:kz-out-02",
        "host_country": "ARE",
        "visitor_country": "KAZ",
        "visitor_organization": None,
        "visitor_name": "Kassym-Jomart Tokayev",
        "visitor_title": "President",
        "visitor_role": "head_of_state",
        "visit_type": "multilateral_event",
        "start_date": "2023-01-01",
        "start_precision": "year",
        "end_date": None,
        "end_precision": None,
        "city": "Dubai",
        "event": "COP28",
        "notes": "World Climate Action Summit of COP28; first COP attended at head-of-state level.",
        "source": "kz-visits-2023",
        "source_record": "kz-out-02",
        "batch_id": "20261129T035033-kz-visits-2023-3858c3bf",
        "loaded_at": "2026-11-29T03:50:33.763531+00:00",
    },
    "memberships": {
        "membership_id": "kz-memberships:4",
        "country": "KAZ",
        "organization": "SCO",
        "body": None,
        "status": "chair",
        "start_date": "2023-07-01",
        "start_precision": "month",
        "end_date": "2024-07-31",
        "end_precision": "month",
        "notes": "Chairmanship of the SCO (named in the 2023 briefing).",
        "source": "kz-memberships",
        "source_record": "4",
        "batch_id": "20261129T035033-kz-memberships-593fbaec",
        "loaded_at": "2026-11-29T03:50:33.948057+00:00",
    },
    "relations": {
        "relation_id": "kz-relations:1",
        "country": "KAZ",
        "counterpart": "USA",
        "event": "established",
        "event_date": "1991-12-01",
        "event_precision": "month",
        "notes": None,
        "source": "kz-relations",
        "source_record": "1",
        "batch_id": "20261129T035034-kz-relations-aec1e29c",
        "loaded_at": "2026-11-29T03:50:34.101532+00:00",
    },
    "reported_totals": {
        "reported_id": "kz-reported-totals:kz-total-02",
        "country": "KAZ",
        "metric": "head_visits",
        "value": 32,
        "publisher": "Ministry of Foreign Affairs of Kazakhstan",
        "published_on": "2023-12-25",
        "published_precision": "day",
        "notes": 'Same briefing: "welcomed 32 heads of state and government" on official visits.',
        "source": "kz-reported-totals",
        "source_record": "kz-total-02",
        "batch_id": "20261129T041455-kz-reported-totals-1f0c2a7e",
        "loaded_at": "2026-11-29T04:14:55.210347+00:00",
    },
    REJECTED_ROWS: {
        "batch_id": "20261129T035033-kz-visits-2023-3858c3bf",
        "source": "kz-visits-2023",
        "kind": "visits",
        "source_file": "examples/data/kz_visits_2023.csv",
        "source_row": 9,
        "source_record": "bad-01",
        "raw": '{"record":"bad-01","host":"Kazakhstan","visitor_country":"Atlantis",'
        '"visitor":"Unknown Envoy","title":"President","visit_type":"official","year":"2023",'
        '"city":null,"event":null,"notes":"Deliberately bad: no such country."}',
        "errors": [
            {
                "column": "visitor_country",
                "check": Reason.COUNTRY_KNOWN.value,
                "value": "Atlantis",
                "message": "country 'Atlantis' is unknown; add it to country_aliases.csv "
                "(alias,code)",
            }
        ],
        "rejected_at": "2026-11-29T03:50:33.763531+00:00",
        "resolved_batch_id": None,
        "resolution": None,
    },
}


def published_tables() -> dict[str, Kind | None]:
    """Every table published as Parquet, with its kind (None for the quarantine), in order."""
    return {**{TABLE[kind]: kind for kind in Kind}, REJECTED_ROWS: None}


def partition_column(table: str) -> str:
    """The column whose year names the table's year=YYYY folders."""
    kind = published_tables()[table]
    return YEAR_OF[kind] if kind is not None else "rejected_at"


def published_columns(table: str) -> list[str]:
    """The columns of a published Parquet file, in order (the year is in the folder name).

    A table with a column named `year` of its own (reported_totals) keeps it in the folder name
    only, as hive layouts do: a file holding it too would clash with the partition key in
    pyarrow, pandas and Spark.
    """
    kind = published_tables()[table]
    if kind is None:
        return list(REJECTED_DOCS)
    return [c for c in fact_columns(kind) if c != "year"]


def describe(table: str, column: str) -> str:
    """What a published column means; every published column has a meaning."""
    docs = DOCS if published_tables()[table] is not None else REJECTED_DOCS
    try:
        return docs[column]
    except KeyError:
        where = "DOCS" if docs is DOCS else "REJECTED_DOCS"
        raise KeyError(
            f"{table}.{column} has no meaning: add it to {where} in "
            "relations_etl/contract/__init__.py"
        ) from None


def parquet_metadata(table: str) -> dict[str, str]:
    """Key-value metadata of a published Parquet file: version, table, one description a column."""
    return {
        VERSION_KEY: CONTRACT_VERSION,
        TABLE_KEY: table,
        **{f"{DESCRIPTION_PREFIX}{c}": describe(table, c) for c in published_columns(table)},
    }


def sql_literal(text: str) -> str:
    """A SQL string literal, for the few places DuckDB takes no parameter (COPY options)."""
    return "'" + text.replace("'", "''") + "'"


def kv_metadata_option(table: str) -> str:
    """The `KV_METADATA {...}` option of DuckDB's COPY ... (FORMAT parquet) for `table`."""
    pairs = ", ".join(
        f"{sql_literal(k)}: {sql_literal(v)}" for k, v in parquet_metadata(table).items()
    )
    return f"KV_METADATA {{{pairs}}}"
