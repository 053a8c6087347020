"""Prefect pull step of the deployments: enter the worker's clone of the repository."""

from __future__ import annotations

import os
from pathlib import Path

from relations_etl.errors import ConfigError
from relations_etl.settings import Settings

# an editable install leaves this package in <clone>/flows/relations_etl_flows
_INSTALLED_FROM = Path(__file__).resolve().parents[2]


def enter_checkout() -> dict[str, str]:
    """Change to the clone named by RELATIONS_ETL_REPO, else the one this package came from.

    Runs in the flow-run process on the worker's machine, so the path is the worker's own,
    never the one `prefect deploy` ran in. Returns the directory, as Prefect's steps do.
    """
    repo = Settings().repo
    candidate = repo if repo is not None else _INSTALLED_FROM
    if not (candidate / "flows" / "prefect.yaml").is_file():
        where = f"RELATIONS_ETL_REPO={repo}" if repo is not None else f"{_INSTALLED_FROM}"
        raise ConfigError(
            f"{where} is not a clone of relations_etl (no flows/prefect.yaml there)",
            hint="Start the worker with RELATIONS_ETL_REPO set to the clone it should run, "
            "e.g. `make worker` from that clone.",
        )
    os.chdir(candidate)
    return {"directory": str(candidate)}
