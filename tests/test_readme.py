"""Every command of the README's ```sh blocks, read from the README, run as a new user types it.

The commands run in bash, one by one in the README's order, in a scratch folder laid out like a
clone (`examples/`, `flows/`, `.venv`, `../shared/data`) whose `warehouse/` holds the demo lists
loaded, as `make demo` leaves it (a copy of the session's demo warehouse: the nightly flow and the
library leave the same warehouse, tests/test_orchestration.py; `make demo` itself runs in
tests/test_package.py). No command reaches Prefect: PREFECT_API_URL names a closed port. What is
run elsewhere is listed in ELSEWHERE with the place, and shows as skipped with that reason
(`pytest -ra`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from relations_etl.settings import Settings
from tests.conftest import REPO, SHARED_DATA, closed_port, copy_warehouse, shared

BIN = Path(sys.executable).parent

# Commands not run here, and where they are: `make` targets build a venv or need a server.
ELSEWHERE = {
    "make demo": "tests/test_package.py runs it (with the tests' venv) in a scratch git clone",
    "make test": ".ci/run runs it from a fresh clone",
    "make deploy": "tests/test_deploy.py runs it against a real Prefect server",
    "make worker": "tests/test_deploy.py runs its worker (`prefect worker start`, once)",
    "prefect deployment run nightly/nightly": "tests/test_deploy.py runs it, then a worker",
}


def sh_commands(readme: str) -> list[str]:
    """The commands of every ```sh block: continuation lines joined, comment-only lines left out."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", readme, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if shlex.split(line, comments=True):
                commands.append(line.strip())
    return commands


def _words(command: str) -> str:
    return shlex.join(shlex.split(command, comments=True))


COMMANDS = sh_commands((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_readme_starts_with_make_demo_then_make_test() -> None:
    assert [_words(c) for c in COMMANDS[:2]] == ["make demo", "make test"]


@pytest.fixture(scope="module")
def clone(
    tmp_path_factory: pytest.TempPathFactory, demo_template: Settings
) -> tuple[Path, dict[str, str]]:
    """A folder laid out like a clone, its warehouse filled from the sample lists."""
    root = tmp_path_factory.mktemp("readme")
    folder = root / "relations_etl"
    folder.mkdir()
    for part in ("examples", "flows"):
        (folder / part).symlink_to(REPO / part)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    if SHARED_DATA.is_dir():
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(SHARED_DATA)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RELATIONS_ETL_") or key == "RELATIONS_ETL_REQUIRE_SHARED_DATA"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # the commands shown are the analyst's and the steward's: none may need a Prefect API
    env["PREFECT_API_URL"] = closed_port()
    copy_warehouse(demo_template, folder / "warehouse")
    return folder, env


@pytest.mark.parametrize("command", COMMANDS, ids=[_words(c)[:60] for c in COMMANDS])
def test_readme_command_works(command: str, clone: tuple[Path, dict[str, str]]) -> None:
    words = _words(command)
    if words in ELSEWHERE:
        pytest.skip(f"`{words}` is not run here: {ELSEWHERE[words]}")
    assert not words.startswith(("make ", "prefect ")), (
        f"README command {words!r} needs a venv build or a Prefect server: run it in a test "
        "that provides one and list it in ELSEWHERE"
    )
    for needed in re.findall(r"\.\./shared/data/([^/\s]+)", command):
        shared(needed)
    folder, env = clone
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
