"""Report data: every figure, table and chart series of one country's year, gathered once.

The text, markdown and HTML reports all render one `ReportData`, so their figures cannot disagree.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from relations_etl.facts import METRICS

LABELS = {
    "relations_count": "Countries with diplomatic relations at year end",
    "head_visits": "Heads of state or government received",
    "foreign_minister_visits": "Foreign ministers received",
    "organization_head_visits": "Heads of international organizations received",
    "outbound_head_visits": "Visits abroad by its head of state or government",
    "chairmanships": "Chairmanships held",
    "elected_seats": "Elected seats held",
}
assert tuple(LABELS) == METRICS, "every metric has a label"
ROLE_LABELS = {
    "head_of_state": "head of state",
    "head_of_government": "head of government",
    "foreign_minister": "foreign minister",
    "other_minister": "other minister",
    "head_of_organization": "head of organization",
    "other": "other",
}
DIRECTIONS = {"inbound": "received", "outbound": "abroad"}
# columns holding counts: right-aligned by every renderer
NUMERIC_COLUMNS = frozenset(
    {
        "recorded",
        "reported",
        "difference",
        "visits",
        "received",
        "abroad",
        "rows",
        "read",
        "loaded",
        "rejected",
        "deduplicated",
    }
)
MONTHS = [*(calendar.month_abbr[m] for m in range(1, 13)), "month not known"]


@dataclass(frozen=True)
class ReportData:
    """What the annual report of one country and year shows; frames are in display order."""

    country: str
    country_name: str | None
    year: int
    summary: dict[str, int] | None
    reconciliation: pl.DataFrame
    notable_visitors: pl.DataFrame
    visits: pl.DataFrame
    by_month: dict[str, list[int]]
    by_role: list[tuple[str, int]]
    visiting_countries: list[tuple[str, int]]
    memberships: pl.DataFrame
    seats: pl.DataFrame
    rejections: pl.DataFrame
    batches: pl.DataFrame

    @property
    def title(self) -> str:
        """'Kazakhstan (KAZ), 2023'."""
        return f"{self.country_name or self.country} ({self.country}), {self.year}"

    def figures(self) -> list[tuple[str, str, int]]:
        """(metric, label, value) of the annual summary; zeros when nothing is recorded."""
        values = self.summary or {}
        return [(m, LABELS[m], int(values.get(m, 0))) for m in METRICS]


def _frame(conn: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> pl.DataFrame:
    frame: pl.DataFrame = conn.sql(query, params=params).pl()
    return frame


def gather(conn: duckdb.DuckDBPyConnection, country: str, year: int) -> ReportData:
    """Read everything the report of `country` in `year` shows from the reporting views."""
    code = country.strip().upper()
    at = [code, year]
    named = conn.sql("SELECT name FROM countries WHERE code = ?", params=[code]).fetchall()
    summary = _frame(conn, "SELECT * FROM annual_summary WHERE country = ? AND year = ?", at)
    metrics = "[" + ", ".join(f"'{m}'" for m in METRICS) + "]"
    reconciliation = _frame(
        conn,
        f"""SELECT metric, reported, recorded, difference, coverage, detail_exceeds_reported,
                   status, publisher, published_on, published_precision
            FROM reconciliation WHERE country = ? AND year = ?
            ORDER BY list_position({metrics}, metric), publisher""",
        at,
    )
    notable = _frame(
        conn,
        """SELECT start_date, start_precision, visitor_title, visitor_name, visitor_country,
                  visitor_country_name, visit_type, city, event
           FROM notable_visitors WHERE reporting_country = ? AND year = ?
           ORDER BY start_date, visitor_country_name, visitor_name""",
        at,
    )
    visits = _frame(
        conn,
        """SELECT direction, start_date, start_precision, visitor_role, visitor_title,
                  visitor_name, counterpart_name, event
           FROM (SELECT * FROM visits_inbound UNION ALL BY NAME SELECT * FROM visits_outbound)
           WHERE reporting_country = ? AND year = ?
             AND visitor_role IN ('head_of_state', 'head_of_government', 'foreign_minister',
                                  'head_of_organization')
           ORDER BY direction, start_date, counterpart_name, visitor_name""",
        at,
    )
    cells = _frame(
        conn,
        """SELECT direction, month, visitor_role, visits FROM visits_by_role_month
           WHERE reporting_country = ? AND year = ?""",
        at,
    )
    by_month = {
        label: [
            int(
                cells.filter(
                    (pl.col("direction") == direction)
                    & (pl.col("month") == month if month <= 12 else pl.col("month").is_null())
                )
                .get_column("visits")
                .sum()
            )
            for month in range(1, 14)
        ]
        for direction, label in DIRECTIONS.items()
    }
    roles = cells.group_by("direction", "visitor_role").agg(pl.col("visits").sum())
    by_role = [
        (f"{ROLE_LABELS.get(role, role)} ({DIRECTIONS[direction]})", int(n))
        for direction in DIRECTIONS
        for role in ROLE_LABELS
        for (n,) in roles.filter(
            (pl.col("direction") == direction) & (pl.col("visitor_role") == role)
        )
        .select("visits")
        .rows()
    ]
    countries = conn.sql(
        """SELECT counterpart_name, count(*) AS visits FROM visits_inbound
           WHERE reporting_country = ? AND year = ?
           GROUP BY ALL ORDER BY visits DESC, counterpart_name""",
        params=at,
    ).fetchall()
    memberships = _frame(
        conn,
        """SELECT organization, coalesce(body_name, organization_name, organization) AS name,
                  body, status, start_date, start_precision, end_date, end_precision
           FROM stg_memberships WHERE country = ?
           ORDER BY start_date, organization, body NULLS FIRST""",
        [code],
    )
    seats = _frame(
        conn,
        """SELECT status, coalesce(body_name, organization_name, organization) AS name,
                  start_date, end_date
           FROM stg_memberships
           WHERE country = ? AND status IN ('chair', 'vice_chair', 'elected_member')
             AND first_year <= ? AND (last_year IS NULL OR last_year >= ?)
           ORDER BY status, name""",
        [code, year, year],
    )
    rejections = _frame(
        conn,
        'SELECT source, kind, "column", "check", rows, "values" FROM rejections_by_reason',
        [],
    )
    batches = _frame(
        conn,
        """SELECT source, kind, status, rows_read, rows_loaded, rows_rejected, rows_deduplicated,
                  finished_at
           FROM load_batches
           -- the batch that last read the list: a skipped one read nothing, it only checked
           WHERE status IN ('succeeded', 'failed')
           QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at DESC) = 1
           ORDER BY source""",
        [],
    )
    return ReportData(
        country=code,
        country_name=str(named[0][0]) if named else None,
        year=year,
        summary=summary.row(0, named=True) if summary.height else None,
        reconciliation=reconciliation,
        notable_visitors=notable,
        visits=visits,
        by_month=by_month,
        by_role=by_role,
        visiting_countries=[(str(name), int(n)) for name, n in countries],
        memberships=memberships,
        seats=seats,
        rejections=rejections,
        batches=batches,
    )


def when(day: object, precision: object) -> str:
    """A date as precise as the source gave it: 2023-05-12, 2023-05 or 2023."""
    if day is None:
        return ""
    text = str(day)
    return {"year": text[:4], "month": text[:7]}.get(str(precision), text)


@dataclass(frozen=True)
class Table:
    """One table of the report, its cells already written as text for every renderer."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def tables(data: ReportData) -> list[Table]:
    """The report's tables, in order; text, markdown and HTML all show exactly these cells."""
    recon = data.reconciliation.rows(named=True)
    month_rows = [
        [MONTHS[i], str(data.by_month["received"][i]), str(data.by_month["abroad"][i])]
        for i in range(13)
        if data.by_month["received"][i] or data.by_month["abroad"][i]
    ]
    return [
        Table(
            "summary",
            "Summary",
            ["figure", "recorded"],
            [[label, str(value)] for _, label, value in data.figures()],
            "" if data.summary else "No facts recorded for this country and year.",
        ),
        Table(
            "reconciliation",
            "Published totals and the detail rows",
            [
                "figure",
                "reported",
                "recorded",
                "difference",
                "coverage",
                "status",
                "publisher",
                "published on",
            ],
            [
                [
                    LABELS.get(r["metric"], r["metric"]),
                    str(r["reported"]),
                    str(r["recorded"]),
                    f"{r['difference']:+d}",
                    r["coverage"],
                    r["status"],
                    _text(r["publisher"]),
                    when(r["published_on"], r["published_precision"]),
                ]
                for r in recon
            ],
            "" if recon else "No published totals recorded for this country and year.",
        ),
        Table(
            "notable-visitors",
            "Heads of state and government received",
            ["date", "visitor", "country"],
            [
                [
                    when(r["start_date"], r["start_precision"]),
                    " ".join(p for p in (r["visitor_title"], r["visitor_name"]) if p),
                    f"{_text(r['visitor_country_name'])} ({_text(r['visitor_country'])})",
                ]
                for r in data.notable_visitors.rows(named=True)
            ],
        ),
        Table(
            "visits",
            "Visits behind these numbers",
            ["way", "date", "role", "visitor", "from / to", "event"],
            [
                [
                    DIRECTIONS[r["direction"]],
                    when(r["start_date"], r["start_precision"]),
                    ROLE_LABELS.get(r["visitor_role"], r["visitor_role"]),
                    " ".join(p for p in (r["visitor_title"], r["visitor_name"]) if p),
                    _text(r["counterpart_name"]),
                    _text(r["event"]),
                ]
                for r in data.visits.rows(named=True)
            ],
        ),
        Table("by-month", "Visits by month", ["month", "received", "abroad"], month_rows),
        Table(
            "by-role", "Visits by role", ["role", "visits"], [[k, str(v)] for k, v in data.by_role]
        ),
        Table(
            "visiting-countries",
            "Visits received, by visiting country",
            ["country", "visits"],
            [[k, str(v)] for k, v in data.visiting_countries],
        ),
        Table(
            "seats",
            f"Chairs and seats held in {data.year}",
            ["standing", "organization or body", "from", "until"],
            [
                [
                    r["status"].replace("_", " "),
                    r["name"],
                    _text(r["start_date"]),
                    _text(r["end_date"]) or "current",
                ]
                for r in data.seats.rows(named=True)
            ],
        ),
        Table(
            "rejections",
            "Data quality: open rejected rows by reason (whole warehouse)",
            ["source", "kind", "column", "check", "rows", "values"],
            [[_text(v) for v in row] for row in data.rejections.rows()],
            "Fix the list or the reference data, then run `relations-etl quarantine replay`.",
        ),
        Table(
            "batches",
            "Data quality: last batch that read each source",
            ["source", "kind", "status", "read", "loaded", "rejected", "deduplicated", "finished"],
            [[_text(v) for v in row] for row in data.batches.rows()],
        ),
    ]
