"""``klingflow deploy/serve/worker/resume`` (:mod:`pipeline.cli.deploy_cmds`) without a Prefect server.

Scripts are validated before anything else; with no ``PREFECT_API_URL`` the commands that need a
server exit 78 with a message saying how to get one. No server is started here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def test_deploy_without_server_exits_78_with_the_way_out(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", str(repo_root / "configs/bulk-ab.yaml")]) == EXIT_CONFIG
    err = " ".join(capsys.readouterr().err.split())
    assert "klingflow deploy needs a Prefect server" in err
    assert "PREFECT_API_URL" in err


def test_resume_without_server_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "some-run-0001"]) == EXIT_CONFIG
    assert "klingflow resume needs a Prefect server" in " ".join(capsys.readouterr().err.split())


def test_deploy_validates_scripts_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A missing script is reported as such (66), not hidden behind the missing server (78).
    assert main(["deploy", str(tmp_path / "absent.yaml")]) == EXIT_NOINPUT
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\n", encoding="utf-8")
    assert main(["deploy", str(bad)]) == EXIT_DATAERR
    err = capsys.readouterr().err
    assert "Prefect server" not in err


def test_option_limits_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--limit", "0"]) == 64
    assert main(["serve"]) == 64  # SCRIPTS is required
    capsys.readouterr()
