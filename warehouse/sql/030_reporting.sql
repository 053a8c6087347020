-- Reporting: views and table macros analysts query; each reads as named CTEs ending in final.

-- Pairs of countries with relations in force on a date:
--   SELECT count(*) FROM relations_in_force(DATE '2023-12-31') WHERE country = 'KAZ'
CREATE OR REPLACE MACRO relations_in_force(on_date) AS TABLE
WITH
events_until AS (
    SELECT country, counterpart, event, event_date,
           -- on one day a later-stage event wins: established < suspended < severed < restored
           list_position(['established', 'suspended', 'severed', 'restored'], event) AS stage
    FROM stg_relation_events
    WHERE event_date <= on_date
),
latest AS (
    SELECT country, counterpart, arg_max(event, (event_date, stage)) AS last_event,
           max(event_date) AS since
    FROM events_until
    GROUP BY country, counterpart
),
final AS (
    SELECT country, counterpart, last_event, since
    FROM latest
    WHERE last_event IN ('established', 'restored')
)
SELECT * FROM final;

-- Memberships, seats and chairs in force on a date:
--   SELECT count(*) FROM memberships_in_force(DATE '1950-06-30') WHERE body = 'UNSC'
CREATE OR REPLACE MACRO memberships_in_force(on_date) AS TABLE
WITH
final AS (
    SELECT *
    FROM memberships
    WHERE start_date <= on_date AND (end_date IS NULL OR end_date >= on_date)
)
SELECT * FROM final;

CREATE OR REPLACE VIEW annual_summary AS
WITH
visit_years AS (
    SELECT host_country AS country, start_year AS year FROM stg_visits
    UNION SELECT visitor_country, start_year FROM stg_visits WHERE visitor_country IS NOT NULL
),
membership_years AS (
    SELECT m.country, y.year
    FROM stg_memberships AS m,
         range(m.first_year, coalesce(m.last_year, greatest(m.first_year, year(current_date))) + 1) AS y(year)
),
relation_years AS (
    SELECT country, year(min(event_date)) AS first_year FROM stg_relation_events GROUP BY country
),
spine AS (
    SELECT country, year FROM visit_years
    UNION SELECT country, year FROM membership_years
    UNION
    SELECT r.country, y.year
    FROM relation_years AS r, range(r.first_year, year(current_date) + 1) AS y(year)
),
relation_state AS (
    SELECT s.country, s.year, e.counterpart,
           arg_max(e.event, (e.event_date,
               list_position(['established', 'suspended', 'severed', 'restored'], e.event))) AS last_event
    FROM spine AS s
    JOIN stg_relation_events AS e
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
    SELECT host_country AS country, start_year AS year,
           count(*) FILTER (WHERE is_head) AS head_visits,
           count(*) FILTER (WHERE visitor_role = 'foreign_minister') AS foreign_minister_visits,
           count(*) FILTER (WHERE visitor_role = 'head_of_organization') AS organization_head_visits
    FROM stg_visits
    GROUP BY ALL
),
outbound AS (
    SELECT visitor_country AS country, start_year AS year,
           count(*) FILTER (WHERE is_head) AS outbound_head_visits
    FROM stg_visits
    WHERE visitor_country IS NOT NULL
    GROUP BY ALL
),
seats AS (
    SELECT m.country, y.year,
           count(*) FILTER (WHERE m.status = 'chair') AS chairmanships,
           count(*) FILTER (WHERE m.status = 'elected_member') AS elected_seats
    FROM stg_memberships AS m,
         range(m.first_year, coalesce(m.last_year, greatest(m.first_year, year(current_date))) + 1) AS y(year)
    GROUP BY ALL
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
        coalesce(m.elected_seats, 0) AS elected_seats
    FROM spine AS s
    LEFT JOIN relations_at_year_end AS r USING (country, year)
    LEFT JOIN inbound AS i USING (country, year)
    LEFT JOIN outbound AS o USING (country, year)
    LEFT JOIN seats AS m USING (country, year)
)
SELECT * FROM final;

-- What a data steward should add to the reference data, most frequent first.
CREATE OR REPLACE VIEW quarantine_summary AS
WITH
open_errors AS (
    SELECT source, error_column, error_check, error_value FROM stg_rejections
),
final AS (
    SELECT source, error_column AS "column", error_check AS "check", error_value AS value,
           count(*) AS rows
    FROM open_errors
    GROUP BY ALL
    ORDER BY rows DESC, source, "column", value
)
SELECT * FROM final;
