"""What a user of a Python package relies on: the wheel, --version, python -m, a clean clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from prefect.settings import get_current_settings

import relations_etl
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_wheel_ships_both_packages_typed_with_the_license_and_no_generic_name(
    tmp_path: Path,
) -> None:
    pytest.importorskip("hatchling.build", reason="hatchling (a dev dependency) builds the wheel")
    # the PEP 517 hook of pyproject.toml's backend, in this environment: no index is reached
    hook = "import sys, hatchling.build as b; print(b.build_wheel(sys.argv[1]))"
    done = _run(sys.executable, "-c", hook, tmp_path, cwd=REPO)
    assert done.returncode == 0, done.stderr
    built = tmp_path / done.stdout.strip()
    with zipfile.ZipFile(built) as wheel:
        names = wheel.namelist()
        dist_info = f"relations_etl-{relations_etl.__version__}.dist-info"
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        license_text = wheel.read(f"{dist_info}/licenses/LICENSE").decode()
    assert {n.split("/")[0] for n in names} == {"relations_etl", "relations_etl_flows", dist_info}
    assert "relations_etl/py.typed" in names and "relations_etl_flows/py.typed" in names
    assert "relations_etl/_warehouse/sql" in {n.rsplit("/", 1)[0] for n in names}
    assert f"Version: {relations_etl.__version__}\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata
    assert license_text == (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in license_text


def test_version_and_python_dash_m_are_the_console_script(tmp_path: Path) -> None:
    expected = f"relations-etl {relations_etl.__version__}\n"
    commands = {
        "script": [BIN / "relations-etl", "--version"],
        "module": [sys.executable, "-m", "relations_etl", "--version"],
        "usage": [sys.executable, "-m", "relations_etl", "sql"],
    }
    # started together: three interpreters that share nothing
    started = {
        name: subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    done = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=600)
        done[name] = (process.returncode, out, err)
    assert done["script"][1] == expected
    assert done["module"][:2] == (0, expected)
    code, _, err = done["usage"]
    assert code == 2 and err.startswith("usage: relations-etl sql")


def test_run_in_a_new_folder_says_how_to_name_the_sources_file(
    tmp_path: Path, prefect_server: None
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELATIONS_ETL_")}
    env["PREFECT_API_URL"] = str(get_current_settings().api.url)
    done = _run(BIN / "relations-etl", "run", cwd=tmp_path, env=env)
    assert done.returncode == 78, done.stderr
    assert "configuration file examples/sources.yaml does not exist" in done.stderr
    assert f"(relative to {tmp_path})" in done.stderr
    assert "--config" in done.stderr and "RELATIONS_ETL_CONFIG" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make"
)
def test_make_demo_leaves_a_clean_git_status(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Makefile", ".gitignore"):
        shutil.copy2(REPO / name, clone / name)
    for folder in ("examples", "warehouse/sql", "warehouse/reference"):
        shutil.copytree(REPO / folder, clone / folder)
    for command in (
        ("git", "init", "-q"),
        ("git", "add", "-A"),
        ("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"),
    ):
        assert _run(*command, cwd=clone).returncode == 0
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELATIONS_ETL_", "PREFECT_"))}
    # a new PREFECT_HOME: the embedded API first creates its database, slowly on a busy machine
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "240"
    demo = _run("make", "demo", f"VENV={venv}", "-o", venv / ".installed", cwd=clone, env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Kazakhstan (KAZ), 2023" in demo.stdout
    written = {p.name for p in (clone / "warehouse").iterdir()}
    assert {".prefect", "relations.duckdb", "parquet", "reports", ".run.lock"} <= written
    status = _run("git", "status", "--porcelain", "--untracked-files=all", cwd=clone)
    assert status.stdout == "", status.stdout
