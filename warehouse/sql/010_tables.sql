-- Tables: the facts, the reference data, the quarantine and the audit of every batch.

CREATE TABLE IF NOT EXISTS countries (
    code        VARCHAR PRIMARY KEY,   -- ISO 3166-1 alpha-3, ISO 3166-3 former state, or user-assigned (XKX)
    name        VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,      -- iso3166-1 | iso3166-3 | user-assigned
    valid_from  DATE,                  -- first day the state existed (NULL: not recorded)
    valid_to    DATE                   -- the day the state ended (NULL: still exists)
);

CREATE TABLE IF NOT EXISTS organizations (
    code    VARCHAR PRIMARY KEY,
    name    VARCHAR NOT NULL,
    parent  VARCHAR,                   -- the organization a body belongs to (WHC -> UNESCO)
    founded    INTEGER,                -- year founded (COW IGO sdate where COW lists it)
    dissolved  INTEGER                 -- year dissolved (NULL: alive, or not known)
);
-- warehouses made before the years were kept
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS founded INTEGER;
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS dissolved INTEGER;

-- What countries and organizations hold: a digest of their rows as the reference data in use
-- makes them (load.refresh_reference rewrites both tables only when it changes).
CREATE TABLE IF NOT EXISTS reference_applied (
    digest  VARCHAR NOT NULL
);

-- The fact tables have no PRIMARY KEY: its index (an ART held whole in memory) took about 5 GB
-- to load 10M visits. Each id is still unique: ids are unique within a batch (split keeps one
-- row per id) and the load deletes an id's old row before it inserts the new one (load.py);
-- db.apply_sql rebuilds the tables of a warehouse made with the key.
-- row_hash: facts.row_hash_sql of the content columns (a changed fact has another); a warehouse
-- that holds the md5 text of earlier versions is hashed again by db.apply_sql.
CREATE TABLE IF NOT EXISTS visits (
    visit_id              VARCHAR NOT NULL,   -- <source>:<source_record>[#<person>]
    host_country          VARCHAR NOT NULL,
    visitor_country       VARCHAR,
    visitor_organization  VARCHAR,
    visitor_name          VARCHAR,
    visitor_title         VARCHAR,
    visitor_role          VARCHAR NOT NULL,
    visit_type            VARCHAR,
    start_date            DATE NOT NULL,
    start_precision       VARCHAR NOT NULL,
    end_date              DATE,
    end_precision         VARCHAR,
    city                  VARCHAR,
    event                 VARCHAR,
    notes                 VARCHAR,
    source                VARCHAR NOT NULL,
    source_record         VARCHAR NOT NULL,
    batch_id              VARCHAR NOT NULL,
    loaded_at             TIMESTAMPTZ NOT NULL,
    row_hash              UBIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS memberships (
    membership_id    VARCHAR NOT NULL,
    country          VARCHAR NOT NULL,
    organization     VARCHAR NOT NULL,
    body             VARCHAR,
    status           VARCHAR NOT NULL,
    start_date       DATE NOT NULL,
    start_precision  VARCHAR NOT NULL,
    end_date         DATE,                      -- NULL: current
    end_precision    VARCHAR,
    notes            VARCHAR,
    source           VARCHAR NOT NULL,
    source_record    VARCHAR NOT NULL,
    batch_id         VARCHAR NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL,
    row_hash         UBIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS relations (
    relation_id      VARCHAR NOT NULL,
    country          VARCHAR NOT NULL,
    counterpart      VARCHAR NOT NULL,
    event            VARCHAR NOT NULL,
    event_date       DATE NOT NULL,
    event_precision  VARCHAR NOT NULL,
    notes            VARCHAR,
    source           VARCHAR NOT NULL,
    source_record    VARCHAR NOT NULL,
    batch_id         VARCHAR NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL,
    row_hash         UBIGINT NOT NULL
);

-- Totals an authority published (a ministry's "relations with 186 countries"), set beside the
-- counts of the detail rows by the reconciliation view.
CREATE TABLE IF NOT EXISTS reported_totals (
    reported_id          VARCHAR NOT NULL,
    country              VARCHAR NOT NULL,
    year                 INTEGER NOT NULL,   -- the calendar year the total counts
    metric               VARCHAR NOT NULL,   -- an annual_summary column: relations_count, head_visits, ...
    value                BIGINT NOT NULL,
    publisher            VARCHAR NOT NULL,   -- who published it (`source` is the list's lineage)
    published_on         DATE,
    published_precision  VARCHAR,
    notes                VARCHAR,
    source               VARCHAR NOT NULL,
    source_record        VARCHAR NOT NULL,
    batch_id             VARCHAR NOT NULL,
    loaded_at            TIMESTAMPTZ NOT NULL,
    row_hash             UBIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS rejected_rows (
    batch_id       VARCHAR NOT NULL,
    source         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    source_file    VARCHAR NOT NULL,
    source_row     BIGINT NOT NULL,
    source_record  VARCHAR,
    raw            JSON NOT NULL,
    errors         STRUCT("column" VARCHAR, "check" VARCHAR, "value" VARCHAR, message VARCHAR)[] NOT NULL,
    rejected_at    TIMESTAMPTZ NOT NULL,
    resolved_batch_id VARCHAR,         -- the batch that closed this entry (NULL: still open)
    resolution     VARCHAR             -- loaded: the row now passes; replayed or superseded: a
                                       -- newer entry (replay, edited row) holds today's reasons
);

CREATE TABLE IF NOT EXISTS load_batches (
    batch_id           VARCHAR PRIMARY KEY,
    source             VARCHAR NOT NULL,
    kind               VARCHAR NOT NULL,
    source_uri         VARCHAR NOT NULL,
    content_hash       VARCHAR,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    status             VARCHAR NOT NULL,   -- running | succeeded | skipped | failed | abandoned
    rows_read          BIGINT NOT NULL,
    rows_loaded        BIGINT NOT NULL,
    rows_rejected      BIGINT NOT NULL,
    rows_deduplicated  BIGINT NOT NULL,
    facts_written      BIGINT NOT NULL DEFAULT 0,
    rows_dropped       BIGINT DEFAULT 0,   -- removed by the mapping's drop rules (dropped_rows)
    flow_run_id        VARCHAR,
    error              VARCHAR,            -- why a failed batch failed
    source_config      JSON,               -- the source entry and mapping used, for replays
    fingerprint        VARCHAR             -- inputs: file hashes, source entry, reference, code
);

-- warehouses created before fingerprints (a source whose fingerprint equals its last
-- successful batch's is skipped)
ALTER TABLE load_batches ADD COLUMN IF NOT EXISTS fingerprint VARCHAR;
-- warehouses created before drop rules (read = loaded + rejected + deduplicated + dropped)
ALTER TABLE load_batches ADD COLUMN IF NOT EXISTS rows_dropped BIGINT DEFAULT 0;

-- Rows a batch dropped by its mapping's own rules (`drop:`), counted per reason, never kept:
-- "not a member that year" is the list's -9, not a fact, and not a fault to fix.
CREATE TABLE IF NOT EXISTS dropped_rows (
    batch_id  VARCHAR NOT NULL,
    source    VARCHAR NOT NULL,
    reason    VARCHAR NOT NULL,   -- the rule's reason, as the mapping writes it
    rows      BIGINT NOT NULL,
    PRIMARY KEY (batch_id, reason)
);

-- The list each source name stands for: bound by the name's first committed load, moved only by
-- a load that declares the move (moved_from), so two lists never mix under one name.
CREATE TABLE IF NOT EXISTS source_bindings (
    source      VARCHAR PRIMARY KEY,
    uri         VARCHAR NOT NULL,   -- canonical: an absolute local path (links resolved), or the URL
    batch_id    VARCHAR NOT NULL,   -- the batch that bound it (or moved it here)
    bound_at    TIMESTAMPTZ NOT NULL,
    moved_from  VARCHAR             -- the URI it was bound to before a declared move
);

-- Parquet years committed but not yet published: written with the data in one transaction,
-- removed once the files are in place, so a crash in between is repaired by the next run.
CREATE TABLE IF NOT EXISTS publish_queue (
    table_name  VARCHAR NOT NULL,
    year        INTEGER NOT NULL,
    batch_id    VARCHAR NOT NULL,
    PRIMARY KEY (table_name, year)
);

-- What each published Parquet file must be, recorded when it is written: a file replaced,
-- damaged or removed from outside is found by the next run (size, time, then digest) and
-- written again from the tables.
CREATE TABLE IF NOT EXISTS published_files (
    table_name   VARCHAR NOT NULL,
    year         INTEGER NOT NULL,
    rows         BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    sha256       VARCHAR NOT NULL,
    modified_ns  BIGINT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (table_name, year)
);

-- Facts a snapshot source's list no longer holds (see README "Snapshots and feeds"): moved out
-- of their fact table by the batch that loaded that version, in the same transaction, whole
-- and with their lineage, so nothing a list once said is lost.
CREATE TABLE IF NOT EXISTS retired_facts (
    batch_id       VARCHAR NOT NULL,   -- the batch whose list no longer held the fact
    source         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    fact_id        VARCHAR NOT NULL,   -- visit_id, membership_id, relation_id or reported_id
    source_record  VARCHAR NOT NULL,
    year           INTEGER,            -- the Parquet year the fact was published under
    retired_at     TIMESTAMPTZ NOT NULL,
    fact           JSON NOT NULL       -- the row as it was, its own batch_id and loaded_at included
);

-- facts each batch retired (0 for a feed, a replay or a failed batch)
ALTER TABLE load_batches ADD COLUMN IF NOT EXISTS rows_retired BIGINT DEFAULT 0;
