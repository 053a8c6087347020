"""Prefect flows that orchestrate relations_etl; the only place Prefect is imported."""

import os

# A closed network: no analytics calls home, no update checks, quiet server logs. These are
# defaults only; a deployment may still set its own PREFECT_* values.
for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
}.items():
    os.environ.setdefault(_name, _value)
