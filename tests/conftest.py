"""Shared fixtures: a temporary warehouse, a Prefect test server, the public-domain lists."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from relations_etl.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RELATIONS_ETL_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(path: str) -> Path:
    """A file of ../shared/data; skipped when absent, a failure when CI requires it."""
    target = SHARED_DATA / path
    if not target.exists():
        if os.environ.get("RELATIONS_ETL_REQUIRE_SHARED_DATA"):
            pytest.fail(f"{target} is missing and CI requires the shared data")
        pytest.skip(f"{target} is absent: the public-domain lists live in ../shared/data")
    return target


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a fresh warehouse under tmp_path."""
    return Settings(home=tmp_path / "warehouse")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for the whole session (real flow runs, no mocks)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
