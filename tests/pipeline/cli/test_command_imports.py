"""Each command imports only what it needs: ``validate`` neither Prefect nor SQLAlchemy (nor the
engine), ``plan`` never Prefect. Checked in a fresh interpreter, whose ``sys.modules`` is the
command's own (this test process has imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Runs one command in-process, then lists the heavy packages it left in ``sys.modules``.
PROBE = """
import json, sys
from pipeline.cli import main
code = main(sys.argv[1:])
heavy = ("prefect", "sqlalchemy", "pipeline.render.engine", "pipeline.store.jobs", "flows")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def loaded_by(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=False, timeout=120
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == 0, done.stderr[-2000:]
    loaded: list[str] = found["loaded"]
    return loaded


@pytest.fixture
def script(repo_root: Path) -> Path:
    return repo_root / "configs" / "weekly-campaign.yaml"


def test_validate_imports_neither_prefect_nor_sqlalchemy_nor_the_engine(script: Path) -> None:
    assert loaded_by("validate", str(script)) == []


def test_plan_never_imports_prefect(script: Path) -> None:
    loaded = loaded_by("plan", str(script))
    assert "prefect" not in loaded and "flows" not in loaded


def test_the_probe_can_see_an_import() -> None:
    # The check must be able to fail: a command that does import Prefect is seen doing it.
    done = subprocess.run(
        [sys.executable, "-c", "import prefect\n" + PROBE, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "prefect" in json.loads(done.stdout.strip().splitlines()[-1])["loaded"]
