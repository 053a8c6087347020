-- Staging views: rename, cast, look up names and derive what the reporting layer needs (the year,
-- and the month a date's precision gives); no business rules (those are in 030_reporting.sql:
-- who is a head, a relation read from both sides, which rejections are open) and no order.

CREATE OR REPLACE VIEW stg_visits AS
SELECT
    v.*,
    year(v.start_date) AS start_year,
    -- a visit known only to the year has no month: NULL, not January
    CASE WHEN v.start_precision IN ('day', 'month') THEN month(v.start_date) END AS start_month
FROM visits AS v;

CREATE OR REPLACE VIEW stg_memberships AS
SELECT
    m.*,
    year(m.start_date) AS first_year,
    year(m.end_date) AS last_year,         -- NULL: still in force
    o.name AS organization_name,
    b.name AS body_name
FROM memberships AS m
LEFT JOIN organizations AS o ON o.code = m.organization
LEFT JOIN organizations AS b ON b.code = m.body;

CREATE OR REPLACE VIEW stg_reported_totals AS
SELECT
    reported_id, country, year, metric, value AS reported, publisher, published_on,
    published_precision, notes, source, source_record
FROM reported_totals;

-- an older warehouse has it: relation_events() in 030_reporting.sql replaced it
DROP VIEW IF EXISTS stg_relation_events;

CREATE OR REPLACE VIEW stg_rejections AS
SELECT
    r.batch_id, r.source, r.kind, r.source_file, r.source_row, r.source_record, r.rejected_at,
    e."column" AS error_column, e."check" AS error_check, e.value AS error_value,
    e.message AS error_message, r.resolved_batch_id
FROM rejected_rows AS r, unnest(r.errors) AS u(e);
