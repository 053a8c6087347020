"""Report data: every figure, table and chart series of one country's year, gathered once.

The text, markdown and HTML reports all render one `ReportData` through `notes` and `tables`,
so their figures cannot disagree; the HTML draws a chart instead of a table only where the table
says a chart is worth it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from relations_etl.facts import METRICS
from relations_etl.report.country import ReportCountry

LABELS = {
    "relations_count": "Countries with diplomatic relations at year end",
    "head_visits": "Heads of state or government received",
    "foreign_minister_visits": "Foreign ministers received",
    "organization_head_visits": "Heads of international organizations received",
    "outbound_head_visits": "Visits abroad by its head of state or government",
    "chairmanships": "Chairmanships held",
    "elected_seats": "Elected seats held",
    "outbound_foreign_minister_visits": "Visits abroad by its foreign minister",
    "memberships": "Organizations it is a member of at year end",
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
STATUS_LABELS = {
    "partial": "partial",
    "complete": "complete",
    "detail exceeds reported": "exceeds published",
}
# columns holding counts: right-aligned by every renderer
NUMERIC_COLUMNS = frozenset(
    {"recorded", "visits", "received", "abroad", "rows", "read", "loaded", "rejected",
     "deduplicated"}
)  # fmt: skip
MONTHS = [calendar.month_abbr[m] for m in range(1, 13)]
# a chart of months says more than a sentence once visits fall in this many different months
MONTHS_FOR_A_CHART = 3
# a chart of countries says more than a sentence from this many countries, if counts differ
COUNTRIES_FOR_A_CHART = 5
COUNTRIES_IN_A_CHART = 20


@dataclass(frozen=True)
class ReportData:
    """What the annual report of one country and year shows; frames are in display order."""

    country: str
    country_name: str
    year: int
    today: dt.date
    years: tuple[int, int] | None
    """First and last year of the country's rows in annual_summary (None: it has none)."""
    latest_visit_year: int | None
    summary: dict[str, int] | None
    reconciliation: pl.DataFrame
    visits: pl.DataFrame
    by_month: dict[str, list[int]]
    """Visits per month (12 values) and direction label; the 13th value: month not known."""
    by_role: list[tuple[str, int, int]]
    visiting_countries: list[tuple[str, int]]
    memberships: pl.DataFrame
    seats: pl.DataFrame
    rejections: pl.DataFrame
    rejected_elsewhere: int
    """Open rejected rows of the report's lists that name no cell resolving to the country."""
    batches: pl.DataFrame

    @property
    def title(self) -> str:
        """'Kazakhstan (KAZ), 2023'."""
        return f"{self.country_name} ({self.country}), {self.year}"

    @property
    def after_today(self) -> bool:
        """Whether the year is after the current one: nothing of it is recorded yet."""
        return self.year > self.today.year

    @property
    def empty(self) -> bool:
        """Whether the warehouse holds nothing to report for this country and year."""
        return self.after_today or (self.summary is None and self.reconciliation.is_empty())

    def figures(self) -> list[tuple[str, str, int]]:
        """(metric, label, value) of the annual summary; zeros when nothing is recorded."""
        values = self.summary or {}
        return [(m, LABELS[m], int(values.get(m, 0))) for m in METRICS]

    def notes(self) -> list[str]:
        """Sentences every format shows under the title: what the figures can and cannot say."""
        held = (
            f"The warehouse holds figures for {self.country_name} for "
            f"{self.years[0]}–{self.years[1]}."
            if self.years
            else f"The warehouse holds no facts about {self.country_name}."
        )
        if self.after_today:
            return [
                f"{self.year} is after the current year ({self.today.year}): the lists record "
                f"what has happened, so there are no figures for {self.year} yet. {held}"
            ]
        if self.empty:
            return [f"No facts recorded for {self.country_name} in {self.year}. {held}"]
        notes = []
        if self.year == self.today.year:
            notes.append(
                f"{self.year} is not over: the figures count what is recorded up to today "
                f"({self.today.isoformat()})."
            )
        if self.latest_visit_year is None:
            notes.append(
                f"No list holds visits of {self.country_name}: its visit figures are 0 for want "
                "of a list, not for want of visits."
            )
        elif self.year > self.latest_visit_year:
            notes.append(
                f"The lists hold no visits of {self.country_name} after "
                f"{self.latest_visit_year}: the visit figures of {self.year} are 0 because no "
                "list covers that year yet, not because no visit took place."
            )
        return notes


def _frame(conn: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> pl.DataFrame:
    frame: pl.DataFrame = conn.sql(query, params=params).pl()
    return frame


def _sources(conn: duckdb.DuckDBPyConnection, code: str, year: int) -> list[str]:
    """The lists whose facts this report counts: visits and membership periods of the year,
    relation events up to its end (they decide the count at year end), its published totals."""
    rows = conn.sql(
        """SELECT DISTINCT source FROM (
               SELECT source FROM visits
               WHERE (host_country = $c OR visitor_country = $c) AND year(start_date) = $y
               UNION ALL SELECT source FROM stg_memberships
               WHERE country = $c AND first_year <= $y AND coalesce(last_year, $y) >= $y
               UNION ALL SELECT source FROM relations
               WHERE (country = $c OR counterpart = $c) AND event_date <= make_date($y, 12, 31)
               UNION ALL SELECT source FROM reported_totals WHERE country = $c AND year = $y
           ) ORDER BY source""",
        params={"c": code, "y": year},
    ).fetchall()
    return [str(source) for (source,) in rows]


def _rejections(
    conn: duckdb.DuckDBPyConnection, country: ReportCountry, sources: list[str]
) -> tuple[pl.DataFrame, int, list[str]]:
    """Open rejected rows with a raw cell naming the country, by reason (from any list: a list
    whose every row failed has no fact to place it); how many other open rejected rows the
    lists of `sources` hold; and the lists the first come from."""
    cells = conn.sql(
        """SELECT DISTINCT cell FROM (
               SELECT unnest(json_extract_string(raw, '$.*')) AS cell FROM rejected_rows
               WHERE resolved_batch_id IS NULL)
           WHERE cell IS NOT NULL AND length(cell) <= 200"""
    ).fetchall()
    # each distinct value resolved once, by the resolver every list's labels go through
    naming = [str(cell) for (cell,) in cells if country.named_by(str(cell))]
    named = """SELECT source, source_file, source_row FROM rejected_rows
               WHERE resolved_batch_id IS NULL
                 AND list_has_any(json_extract_string(raw, '$.*'), $n)"""
    reasons: pl.DataFrame = conn.sql(
        f"""SELECT e.source, e.kind, e.error_column AS "column", e.error_check AS "check",
                   count(DISTINCT (e.source_file, e.source_row)) AS rows,
                   string_agg(DISTINCT e.error_value, ', ' ORDER BY e.error_value) AS "values"
            FROM stg_rejections AS e SEMI JOIN ({named}) AS r
                 USING (source, source_file, source_row)
            GROUP BY ALL ORDER BY rows DESC, e.source, "column", "check" """,
        params={"n": naming},
    ).pl()
    (elsewhere,) = conn.sql(
        f"""SELECT count(*) FROM rejected_rows AS r
            WHERE resolved_batch_id IS NULL AND list_contains($s, source)
              AND NOT EXISTS (SELECT 1 FROM ({named}) AS n
                              WHERE (n.source, n.source_file, n.source_row)
                                  = (r.source, r.source_file, r.source_row))""",
        params={"s": sources, "n": naming},
    ).fetchall()[0]
    return reasons, int(elsewhere), sorted(set(reasons.get_column("source")))


def gather(conn: duckdb.DuckDBPyConnection, country: ReportCountry, year: int) -> ReportData:
    """Read everything the report of `country` in `year` shows from the reporting views."""
    code = country.code
    at = [code, year]
    (today,) = conn.sql("SELECT current_date").fetchall()[0]
    first, last, latest_visit = conn.sql(
        """SELECT (SELECT min(year) FROM annual_summary WHERE country = $c),
                  (SELECT max(year) FROM annual_summary WHERE country = $c),
                  (SELECT max(year) FROM (
                      SELECT year FROM visits_inbound WHERE reporting_country = $c
                      UNION ALL SELECT year FROM visits_outbound WHERE reporting_country = $c))""",
        params={"c": code},
    ).fetchall()[0]
    summary = _frame(conn, "SELECT * FROM annual_summary WHERE country = ? AND year = ?", at)
    metrics = "[" + ", ".join(f"'{m}'" for m in METRICS) + "]"
    reconciliation = _frame(
        conn,
        f"""SELECT metric, reported, recorded, coverage, status, publisher, published_on,
                   published_precision
            FROM reconciliation WHERE country = ? AND year = ?
            ORDER BY list_position({metrics}, metric), publisher""",
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
    roles = cells.group_by("visitor_role", "direction").agg(pl.col("visits").sum())
    count = {(r, d): int(n) for r, d, n in roles.rows()}
    by_role = [
        (ROLE_LABELS[role], count.get((role, "inbound"), 0), count.get((role, "outbound"), 0))
        for role in ROLE_LABELS
        if count.get((role, "inbound")) or count.get((role, "outbound"))
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
                  body, status, start_date, start_precision, end_date, end_precision,
                  first_year <= $2 AND (last_year IS NULL OR last_year >= $2) AS in_year
           FROM stg_memberships WHERE country = $1
           ORDER BY start_date, organization, body NULLS FIRST""",
        at,
    )
    # the periods that annual_summary counts in this year (chairs and elected seats)
    seats = memberships.filter(
        pl.col("in_year") & pl.col("status").is_in(["chair", "vice_chair", "elected_member"])
    ).sort("status", "name")
    sources = _sources(conn, code, year)
    rejections, elsewhere, rejecting = _rejections(conn, country, sources)
    batches = _frame(
        conn,
        """SELECT source, kind, status, rows_read, rows_loaded, rows_rejected, rows_deduplicated,
                  finished_at
           FROM load_batches
           -- the batch that last read the list: a skipped one read nothing, it only checked
           WHERE status IN ('succeeded', 'failed') AND list_contains(?, source)
           QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at DESC) = 1
           ORDER BY source""",
        [sorted({*sources, *rejecting})],
    )
    return ReportData(
        country=code,
        country_name=country.name,
        year=year,
        today=today,
        years=(int(first), int(last)) if first is not None else None,
        latest_visit_year=int(latest_visit) if latest_visit is not None else None,
        summary=summary.row(0, named=True) if summary.height else None,
        reconciliation=reconciliation,
        visits=visits,
        by_month=by_month,
        by_role=by_role,
        visiting_countries=[(str(name), int(n)) for name, n in countries],
        memberships=memberships,
        seats=seats,
        rejections=rejections,
        rejected_elsewhere=elsewhere,
        batches=batches,
    )


def when(day: object, precision: object) -> str:
    """A date as precise as the source gave it: 2023-05-12, 2023-05 or 2023."""
    if day is None:
        return ""
    text = str(day)
    return {"year": text[:4], "month": text[:7]}.get(str(precision), text)


def until(day: object, precision: object) -> str:
    """The end of a period as precise as the source gave it, or 'ongoing' when it has none."""
    return when(day, precision) or "ongoing"


@dataclass(frozen=True)
class Table:
    """One table of the report, its cells already written as text for every renderer.

    `note` is said in every format; a table without rows is only its note. `chart` marks a
    table the HTML draws as a chart (the values are written on the chart).
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    chart: bool = False


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _listed(items: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _summary(data: ReportData) -> Table:
    published: dict[str, list[dict[str, object]]] = {}
    for r in data.reconciliation.rows(named=True):
        published.setdefault(str(r["metric"]), []).append(r)
    publishers = sorted(
        {
            ", ".join(
                p
                for p in (_text(r["publisher"]), when(r["published_on"], r["published_precision"]))
                if p
            )
            for r in data.reconciliation.rows(named=True)
        }
    )
    # one publisher is said once, under the table; several get a column
    several = len(publishers) > 1
    width = 4 if several else (3 if publishers else 2)
    rows = []
    for metric, label, value in data.figures():
        if metric not in published:
            rows.append([label, str(value), "", ""][:width])
        for r in published.get(metric, []):
            by = (_text(r["publisher"]), when(r["published_on"], r["published_precision"]))
            row = [
                label,
                f"{r['recorded']}, above the {r['reported']} published"
                if r["status"] == "detail exceeds reported"
                else f"{r['coverage']} published",
                STATUS_LABELS.get(str(r["status"]), str(r["status"])),
            ]
            rows.append([*row, ", ".join(p for p in by if p)] if several else row)
    note = (
        "Recorded: counted from the detail rows in this warehouse. Where an authority published "
        "a total, the count stands beside it (partial: rows missing; exceeds published: a wrong "
        "figure, a wrong row or a different definition)."
        if publishers
        else "Recorded: counted from the detail rows in this warehouse; no published total of "
        f"{data.year} is loaded to set beside them."
    )
    if len(publishers) == 1:
        note = f"Published totals: {publishers[0]}. {note}"
    return Table(
        "summary", "Summary", ["figure", "recorded", "status", "published by"][:width], rows, note
    )


def _by_month(data: ReportData) -> Table:
    received, abroad = data.by_month["received"], data.by_month["abroad"]
    months = [i for i in range(12) if received[i] or abroad[i]]
    unknown = [
        f"{n} {label}" for label, n in (("received", received[12]), ("abroad", abroad[12])) if n
    ]
    if not months:
        total = received[12] + abroad[12]
        visits = "the visit" if total == 1 else f"all {total} visits"
        return Table(
            "by-month",
            "Visits by month",
            [],
            [],
            f"The lists give only the year of {visits} ({_listed(unknown)}): there is no "
            "breakdown by month."
            if total
            else "No visits recorded.",
        )
    unknown_note = (
        f" Known only by the year, so not by month: {_listed(unknown)}." if unknown else ""
    )
    if len(months) < MONTHS_FOR_A_CHART:
        said = [
            f"{calendar.month_name[i + 1]}: "
            + ", ".join(f"{n} {label}" for label, n in (("received", received[i]),
                                                        ("abroad", abroad[i])) if n)
            for i in months
        ]  # fmt: skip
        return Table("by-month", "Visits by month", [], [], "; ".join(said) + "." + unknown_note)
    return Table(
        "by-month",
        "Visits by month",
        ["month", "received", "abroad"],
        [[MONTHS[i], str(received[i]), str(abroad[i])] for i in months],
        unknown_note.strip(),
        chart=True,
    )


def _visiting_countries(data: ReportData) -> Table:
    items = data.visiting_countries
    title = "Visits received, by visiting country"
    if not items:
        return Table("visiting-countries", title, [], [], "No visits received recorded.")
    counts = {n for _, n in items}
    if len(items) < COUNTRIES_FOR_A_CHART or len(counts) == 1:
        if counts == {1}:
            said = f"One visit each from {_listed([name for name, _ in items])}."
        else:
            said = "; ".join(f"{name}: {n}" for name, n in items) + "."
        return Table("visiting-countries", title, [], [], said)
    return Table(
        "visiting-countries",
        title,
        ["country", "visits"],
        [[name, str(n)] for name, n in items],
        chart=True,
    )


def _visits(data: ReportData) -> Table:
    rows = [
        [
            DIRECTIONS[r["direction"]],
            when(r["start_date"], r["start_precision"]),
            ROLE_LABELS.get(r["visitor_role"], r["visitor_role"]),
            " ".join(p for p in (r["visitor_title"], r["visitor_name"]) if p),
            _text(r["counterpart_name"]),
            _text(r["event"]),
        ]
        for r in data.visits.rows(named=True)
    ]
    columns = ["way", "date", "role", "visitor", "country or organization", "event"]
    if not any(row[-1] for row in rows):  # a column empty in every row says nothing
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    return Table(
        "visits",
        "Visits of heads, foreign ministers and heads of organizations",
        columns,
        rows,
        "" if rows else f"None recorded in {data.year}.",
    )


def _quality(data: ReportData) -> list[Table]:
    """The data-quality tables: the lists behind the report and the rejected rows naming the
    country (of any year: a rejected row's date may be the very value that failed)."""
    return [
        Table(
            "batches",
            "Data quality: the lists behind this report, as last read",
            ["source", "kind", "status", "read", "loaded", "rejected", "deduplicated", "finished"],
            [[_text(v) for v in row] for row in data.batches.rows()],
            "" if data.batches.height else "No list holds facts for this country and year.",
        ),
        Table(
            "rejections",
            f"Data quality: open rejected rows that name {data.country_name}",
            ["source", "kind", "column", "check", "rows", "values"],
            [[_text(v) for v in row] for row in data.rejections.rows()],
            " ".join(
                part
                for part in (
                    "" if data.rejections.height else "None.",
                    f"The lists behind this report hold {data.rejected_elsewhere} other open "
                    f"rejected row(s) with no cell that names {data.country_name}; a label that "
                    "failed to resolve may be among them (`relations-etl quarantine` lists them)."
                    if data.rejected_elsewhere
                    else "",
                    "Fix the list or the reference data, then run "
                    "`relations-etl quarantine replay`."
                    if data.rejections.height or data.rejected_elsewhere
                    else "",
                )
                if part
            ),
        ),
    ]


def tables(data: ReportData) -> list[Table]:
    """The report's tables, in order; text, markdown and HTML all show exactly these cells.

    A year after the current one has none; a year without facts shows only the rejected rows
    that name the country, when there are any, since they may be why it has no facts.
    """
    if data.after_today:
        return []
    if data.empty:
        return _quality(data) if data.rejections.height else []
    year = data.year
    return [
        _summary(data),
        Table(
            "by-role",
            "Visits by role",
            ["role", "received", "abroad"],
            [[role, str(inbound), str(outbound)] for role, inbound, outbound in data.by_role],
            "" if data.by_role else "No visits recorded.",
        ),
        _by_month(data),
        _visiting_countries(data),
        _visits(data),
        Table(
            "memberships",
            "Memberships, seats and chairs over time",
            ["organization or body", "standing", "from", "until"],
            [
                [
                    r["name"],
                    str(r["status"]).replace("_", " "),
                    when(r["start_date"], r["start_precision"]),
                    until(r["end_date"], r["end_precision"]),
                ]
                for r in data.memberships.rows(named=True)
            ],
            "" if data.memberships.height else "None recorded.",
            chart=True,
        ),
        Table(
            "seats",
            f"Chairs and seats counted in {year}",
            ["standing", "organization or body", "from", "until"],
            [
                [
                    str(r["status"]).replace("_", " "),
                    r["name"],
                    when(r["start_date"], r["start_precision"]),
                    until(r["end_date"], r["end_precision"]),
                ]
                for r in data.seats.rows(named=True)
            ],
            "" if data.seats.height else f"None held in {year}.",
        ),
        *_quality(data),
    ]
