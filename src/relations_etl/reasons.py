"""Reason codes: every `check` a row error can carry, one enum instead of literals per stage.

The values are stored in the warehouse (rejected_rows.errors, the quarantine's error_check)
and named in the contract, so a value never changes; a new check is a new member. pandera
names its built-in checks itself: their names are listed here so that a reader of the enum
sees every reason a rejected row can give.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The check a row failed (the `check` of its error record)."""

    # reading: a row that could not be read as written (readers/)
    FIELD_COUNT = "field_count"
    JSON_LINE = "json_line"
    JSON_RECORD = "json_record"
    XML_RECORD = "xml_record"
    # mapping
    PEOPLE_SPLIT = "people_split"
    # normalize (and reference.py's resolutions)
    DATE_FORMAT = "date_format"
    NOT_IN_FUTURE = "not_in_future"
    WHOLE_NUMBER = "whole_number"
    IN_RANGE = "in_range"
    """Also pandera's name for Check.in_range."""
    COUNTRY_KNOWN = "country_known"
    COUNTRY_AMBIGUOUS = "country_ambiguous"
    COUNTRY_AT_DATE = "country_at_date"
    ORGANIZATION_KNOWN = "organization_known"
    BODY_OF_ORGANIZATION = "body_of_organization"
    TITLE_KNOWN = "title_known"
    # validate: rows across a source, and the schema's row checks
    DUPLICATE_RECORD = "duplicate_record"
    END_AFTER_START = "end_after_start"
    VISITOR_KNOWN = "visitor_known"
    VISITOR_NOT_HOST = "visitor_not_host"
    PUBLISHED_AFTER_YEAR_BEGAN = "published_after_year_began"
    COUNTERPART_NOT_SELF = "counterpart_not_self"
    # validate: pandera's built-in column checks, by the names pandera gives them
    NOT_NULLABLE = "not_nullable"
    ISIN = "isin"
    STR_MATCHES = "str_matches"
    GREATER_THAN_OR_EQUAL_TO = "greater_than_or_equal_to"
    LESS_THAN_OR_EQUAL_TO = "less_than_or_equal_to"
    # split: one record id, raw rows of different content
    RECORD_UNIQUE = "record_unique"
