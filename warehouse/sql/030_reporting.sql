-- Reporting: views and table macros analysts query; each reads as named CTEs ending in final.
-- The views behind each figure of a year-end briefing, for any reporting country and year. No
-- view orders its rows (an ORDER BY inside a view promises its readers nothing): a query that
-- needs an order says so in its own final SELECT.

-- The rules the views below share, each written once.
-- A head is a head of state or of government (head_visits, notable_visitors).
CREATE OR REPLACE MACRO is_head_role(role) AS role IN ('head_of_state', 'head_of_government');

-- Relations hold between two countries: each event is read from both sides.
CREATE OR REPLACE MACRO relation_events() AS TABLE (
    SELECT relation_id, country, counterpart, event, event_date, event_precision FROM relations
    UNION ALL
    SELECT relation_id, counterpart AS country, country AS counterpart, event, event_date,
           event_precision
    FROM relations
);

-- The quarantine: the errors of the rejected rows no later batch resolved, one row per error.
CREATE OR REPLACE MACRO open_rejections() AS TABLE (
    SELECT * EXCLUDE (resolved_batch_id) FROM stg_rejections WHERE resolved_batch_id IS NULL
);

-- Pairs of countries with relations in force on a date (both ways), for every country:
--   SELECT count(*) FROM relations_in_force(DATE '2023-12-31') WHERE country = 'KAZ'
-- or for one country: SELECT * FROM relations_in_force('KAZ', DATE '2023-12-31')
-- pairs with relations in force on a date, every country (relations_in_force reads it)
CREATE OR REPLACE MACRO relations_in_force_all(on_date) AS TABLE (
    WITH
    events_until AS (
        SELECT country, counterpart, event, event_date,
               -- on one day a later-stage event wins: established < suspended < severed < restored
               list_position(['established', 'suspended', 'severed', 'restored'], event) AS stage
        FROM relation_events()
        WHERE event_date <= on_date
    ),
    latest AS (
        SELECT country, counterpart, arg_max(event, (event_date, stage)) AS last_event,
               max(event_date) AS since
        FROM events_until
        GROUP BY country, counterpart
    ),
    final AS (
        SELECT l.country, l.counterpart, l.last_event, l.since, c.name AS counterpart_name
        FROM latest AS l
        LEFT JOIN countries AS c ON c.code = l.counterpart
        WHERE l.last_event IN ('established', 'restored')
    )
    SELECT * FROM final
);

CREATE OR REPLACE MACRO relations_in_force(on_date) AS TABLE (
    SELECT * FROM relations_in_force_all(on_date)
),
(reporting_country, on_date) AS TABLE (
    WITH
    final AS (
        SELECT * FROM relations_in_force_all(on_date)
        WHERE country = reporting_country
    )
    SELECT * FROM final
);

-- Memberships, seats and chairs in force on a date, for every country or for one:
--   SELECT count(*) FROM memberships_in_force(DATE '1950-06-30') WHERE body = 'UNSC'
--   SELECT * FROM memberships_in_force('KAZ', DATE '2023-12-31')
CREATE OR REPLACE MACRO memberships_in_force(on_date) AS TABLE (
    WITH
    final AS (
        SELECT * EXCLUDE (first_year, last_year)
        FROM stg_memberships
        WHERE start_date <= on_date AND (end_date IS NULL OR end_date >= on_date)
    )
    SELECT * FROM final
),
(reporting_country, on_date) AS TABLE (
    WITH
    final AS (
        SELECT * EXCLUDE (first_year, last_year)
        FROM stg_memberships
        WHERE country = reporting_country
          AND start_date <= on_date AND (end_date IS NULL OR end_date >= on_date)
    )
    SELECT * FROM final
);

-- Visits received, one row per visit of one person, relative to the host (reporting) country.
CREATE OR REPLACE VIEW visits_inbound AS
WITH
received AS (
    SELECT * FROM stg_visits
),
final AS (
    SELECT
        r.host_country AS reporting_country,
        'inbound' AS direction,
        r.visit_id,
        r.start_year AS year,
        r.start_month AS month,            -- NULL: the list gives only the year
        r.start_date, r.start_precision, r.end_date, r.end_precision,
        r.visitor_role, is_head_role(r.visitor_role) AS is_head, r.visitor_name, r.visitor_title,
        r.visitor_country AS counterpart_country,
        r.visitor_organization AS counterpart_organization,
        coalesce(c.name, o.name, r.visitor_country, r.visitor_organization) AS counterpart_name,
        r.visit_type, r.city, r.event
    FROM received AS r
    LEFT JOIN countries AS c ON c.code = r.visitor_country
    LEFT JOIN organizations AS o ON o.code = r.visitor_organization
)
SELECT * FROM final;

-- Visits abroad, one row per visit of one person, relative to the visitor's (reporting) country.
CREATE OR REPLACE VIEW visits_outbound AS
WITH
abroad AS (
    SELECT * FROM stg_visits WHERE visitor_country IS NOT NULL
),
final AS (
    SELECT
        a.visitor_country AS reporting_country,
        'outbound' AS direction,
        a.visit_id,
        a.start_year AS year,
        a.start_month AS month,
        a.start_date, a.start_precision, a.end_date, a.end_precision,
        a.visitor_role, is_head_role(a.visitor_role) AS is_head, a.visitor_name, a.visitor_title,
        a.host_country AS counterpart_country,
        NULL::VARCHAR AS counterpart_organization,
        coalesce(c.name, a.host_country) AS counterpart_name,
        a.visit_type, a.city, a.event
    FROM abroad AS a
    LEFT JOIN countries AS c ON c.code = a.host_country
)
SELECT * FROM final;

-- Visits per reporting country, direction, year, month (NULL: month not known) and role.
CREATE OR REPLACE VIEW visits_by_role_month AS
WITH
both_ways AS (
    SELECT reporting_country, direction, year, month, visitor_role FROM visits_inbound
    UNION ALL
    SELECT reporting_country, direction, year, month, visitor_role FROM visits_outbound
),
final AS (
    SELECT reporting_country, direction, year, month, visitor_role, count(*) AS visits
    FROM both_ways
    GROUP BY ALL
)
SELECT * FROM final;

-- Heads of state and government received, by date, with the names of their countries.
CREATE OR REPLACE VIEW notable_visitors AS
WITH
heads AS (
    SELECT * FROM visits_inbound WHERE is_head
),
final AS (
    SELECT
        reporting_country, year, start_date, start_precision, end_date,
        visitor_title, visitor_name, visitor_role,
        counterpart_country AS visitor_country, counterpart_name AS visitor_country_name,
        visit_type, city, event, visit_id
    FROM heads
)
SELECT * FROM final;

-- Chairs and vice-chairs of organizations and their bodies, with names, by period.
CREATE OR REPLACE VIEW chairmanships AS
WITH
chairs AS (
    SELECT * FROM stg_memberships WHERE status IN ('chair', 'vice_chair')
),
final AS (
    SELECT
        country, organization, organization_name, body, body_name, status,
        start_date, start_precision, end_date, end_precision,
        first_year, last_year,             -- last_year NULL: still in office
        notes, membership_id
    FROM chairs
)
SELECT * FROM final;

-- One row per (country, year) from the country's first fact up to the current year, with the
-- state at year end (relations, memberships, chairs, seats) and the year's visits both ways. A
-- year after the current one has no row: the lists record what happened, so nothing is known of
-- it yet (a term that ends in 2027 is a plan until then), and a relation in force today is not
-- counted ahead.
CREATE OR REPLACE VIEW annual_summary AS
WITH
horizon AS (
    SELECT year(current_date) AS last_year
),
visit_years AS (
    SELECT reporting_country AS country, year FROM visits_inbound
    UNION SELECT reporting_country, year FROM visits_outbound
),
membership_years AS (
    SELECT m.country, y.year
    FROM stg_memberships AS m, horizon AS h,
         range(m.first_year, least(coalesce(m.last_year, h.last_year), h.last_year) + 1) AS y(year)
),
relation_years AS (
    SELECT country, year(min(event_date)) AS first_year FROM relation_events() GROUP BY country
),
spine AS (
    SELECT country, year FROM visit_years, horizon WHERE year <= last_year
    UNION SELECT country, year FROM membership_years
    UNION
    SELECT r.country, y.year
    FROM relation_years AS r, horizon AS h, range(r.first_year, h.last_year + 1) AS y(year)
),
relation_state AS (
    SELECT s.country, s.year, e.counterpart,
           arg_max(e.event, (e.event_date,
               list_position(['established', 'suspended', 'severed', 'restored'], e.event))) AS last_event
    FROM spine AS s
    JOIN relation_events() AS e
      ON e.country = s.country AND e.event_date <= make_date(s.year::BIGINT, 12, 31)
    GROUP BY s.country, s.year, e.counterpart
),
relations_at_year_end AS (
    SELECT country, year,
           count(*) FILTER (WHERE last_event IN ('established', 'restored')) AS relations_count
    FROM relation_state
    GROUP BY country, year
),
inbound AS (
    SELECT reporting_country AS country, year,
           count(*) FILTER (WHERE is_head) AS head_visits,
           count(*) FILTER (WHERE visitor_role = 'foreign_minister') AS foreign_minister_visits,
           count(*) FILTER (WHERE visitor_role = 'head_of_organization') AS organization_head_visits
    FROM visits_inbound
    GROUP BY ALL
),
outbound AS (
    SELECT reporting_country AS country, year,
           count(*) FILTER (WHERE is_head) AS outbound_head_visits,
           count(*) FILTER (WHERE visitor_role = 'foreign_minister')
               AS outbound_foreign_minister_visits
    FROM visits_outbound
    GROUP BY ALL
),
seats AS (
    SELECT m.country, y.year,
           count(*) FILTER (WHERE m.status = 'chair') AS chairmanships,
           count(*) FILTER (WHERE m.status = 'elected_member') AS elected_seats
    FROM stg_memberships AS m, horizon AS h,
         range(m.first_year, least(coalesce(m.last_year, h.last_year), h.last_year) + 1) AS y(year)
    GROUP BY ALL
),
-- organizations the country is a full member of on 31 December (seats on bodies, chairs,
-- associates, observers and partners are not memberships); an end known to the year is stored
-- as its last day, so a membership that ends "2020" counts at the end of 2020
members_at_year_end AS (
    SELECT s.country, s.year, count(DISTINCT m.organization) AS memberships
    FROM spine AS s
    JOIN stg_memberships AS m
      ON m.country = s.country AND m.status = 'member' AND m.body IS NULL
     AND m.start_date <= make_date(s.year::BIGINT, 12, 31)
     AND (m.end_date IS NULL OR m.end_date >= make_date(s.year::BIGINT, 12, 31))
    GROUP BY s.country, s.year
),
final AS (
    SELECT
        s.country,
        s.year::INTEGER AS year,
        coalesce(r.relations_count, 0) AS relations_count,
        coalesce(i.head_visits, 0) AS head_visits,
        coalesce(i.foreign_minister_visits, 0) AS foreign_minister_visits,
        coalesce(i.organization_head_visits, 0) AS organization_head_visits,
        coalesce(o.outbound_head_visits, 0) AS outbound_head_visits,
        coalesce(m.chairmanships, 0) AS chairmanships,
        coalesce(m.elected_seats, 0) AS elected_seats,
        coalesce(o.outbound_foreign_minister_visits, 0) AS outbound_foreign_minister_visits,
        coalesce(y.memberships, 0) AS memberships
    FROM spine AS s
    LEFT JOIN relations_at_year_end AS r USING (country, year)
    LEFT JOIN inbound AS i USING (country, year)
    LEFT JOIN outbound AS o USING (country, year)
    LEFT JOIN seats AS m USING (country, year)
    LEFT JOIN members_at_year_end AS y USING (country, year)
)
SELECT * FROM final;

-- Each published total beside the count of the detail rows, by metric name: the metric of a
-- reported total is the annual_summary column it is compared with. difference = recorded -
-- reported (negative: detail rows missing); detail_exceeds_reported flags more detail than the
-- authority published, which means a wrong figure, a wrong row or a different definition.
CREATE OR REPLACE VIEW reconciliation AS
WITH
reported AS (
    SELECT * FROM stg_reported_totals
),
recorded AS (
    UNPIVOT annual_summary ON COLUMNS(* EXCLUDE (country, year))
    INTO NAME metric VALUE recorded
),
compared AS (
    SELECT r.*, coalesce(d.recorded, 0) AS recorded
    FROM reported AS r
    LEFT JOIN recorded AS d USING (country, year, metric)
),
final AS (
    SELECT
        c.country, n.name AS country_name, c.year, c.metric,
        c.reported, c.recorded,
        c.recorded - c.reported AS difference,
        format('{} of {}', c.recorded, c.reported) AS coverage,
        CASE WHEN c.reported > 0 THEN round(c.recorded / c.reported, 4) END AS coverage_ratio,
        c.recorded > c.reported AS detail_exceeds_reported,
        CASE WHEN c.recorded > c.reported THEN 'detail exceeds reported'
             WHEN c.recorded = c.reported THEN 'complete'
             ELSE 'partial' END AS status,
        c.publisher, c.published_on, c.published_precision, c.reported_id, c.source
    FROM compared AS c
    LEFT JOIN countries AS n ON n.code = c.country
)
SELECT * FROM final;

-- What a data steward should add to the reference data (ORDER BY rows DESC: most frequent first).
-- No column is named with an SQL reserved word (column, check), so no query has to quote one.
CREATE OR REPLACE VIEW quarantine_summary AS
WITH
open_errors AS (
    SELECT source, error_column, error_check, error_value FROM open_rejections()
),
final AS (
    SELECT source, error_column AS column_name, error_check AS check_name, error_value AS value,
           count(*) AS rows
    FROM open_errors
    GROUP BY ALL
)
SELECT * FROM final;

-- Open rejected rows by reason (source, column, check): a row with two reasons counts under both.
CREATE OR REPLACE VIEW rejections_by_reason AS
WITH
open_errors AS (
    SELECT source, kind, source_file, source_row, error_column, error_check, error_value
    FROM open_rejections()
),
final AS (
    SELECT source, kind, error_column AS column_name, error_check AS check_name,
           count(DISTINCT (source_file, source_row)) AS rows,
           string_agg(DISTINCT error_value, ', ' ORDER BY error_value) AS "values"
    FROM open_errors
    GROUP BY ALL
)
SELECT * FROM final;

-- Rows dropped by the mapping's drop rules, per source and reason: the last successful batch's
-- count (what the list holds today) and the sum over every batch that ran.
CREATE OR REPLACE VIEW dropped_by_reason AS
WITH
batches AS (
    SELECT d.source, d.reason, d.rows, b.batch_id, b.started_at
    FROM dropped_rows AS d
    JOIN load_batches AS b USING (batch_id)
    WHERE b.status = 'succeeded'
),
latest AS (
    SELECT source, max(started_at) AS started_at FROM batches GROUP BY source
),
final AS (
    SELECT b.source, b.reason,
           coalesce(sum(b.rows) FILTER (WHERE b.started_at = l.started_at), 0)::BIGINT AS rows,
           any_value(b.batch_id) FILTER (WHERE b.started_at = l.started_at) AS last_batch_id,
           count(*) AS batches,
           sum(b.rows)::BIGINT AS rows_all_batches
    FROM batches AS b JOIN latest AS l USING (source)
    GROUP BY ALL
)
SELECT * FROM final;
