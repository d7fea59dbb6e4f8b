"""Deployments of the render flow: made from scripts' schedules; prefect.yaml agrees with them.

Registering them on a real Prefect server, and a schedule firing, are tested in test_scale.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.deploy import deployment_of, script_reference
from pipeline.cli import main
from pipeline.errors import EXIT_CONFIG, EXIT_DATAERR, EXIT_UNAVAILABLE
from pipeline.script.loader import load_script

KLINGFLOW = str(Path(sys.executable).with_name("klingflow"))


def test_prefect_yaml_deploys_the_example_scripts_on_their_own_schedules(repo_root: Path) -> None:
    project: dict[str, Any] = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    deployments = project["deployments"]
    scheduled = {s.stem for s in (repo_root / "configs").glob("*.yaml") if load_script(s).script.schedule}
    assert {d["name"] for d in deployments} == scheduled
    for d in deployments:
        script = load_script(repo_root / d["parameters"]["script"]).script
        assert script.schedule is not None and d["name"] == script.name
        (schedule,) = d["schedules"]
        assert (schedule["cron"], schedule["timezone"]) == (script.schedule.cron, script.schedule.timezone)
        assert d["work_pool"]["name"] == "klingflow"
        path, _, name = d["entrypoint"].partition(":")
        assert (repo_root / path).is_file() and f"async def {name}(" in (repo_root / path).read_text()


def test_a_script_becomes_a_deployment_with_its_cron_and_time_zone(repo_root: Path) -> None:
    made = deployment_of(str(repo_root / "configs" / "weekly-campaign.yaml"))
    d = made.deployment
    assert d.name == "weekly-campaign"
    assert d.entrypoint == "flows.render.render"  # by module path: workers have klingflow installed
    (schedule,) = d.schedules or []
    assert schedule.schedule.cron == "0 6 * * MON"  # type: ignore[union-attr]
    assert schedule.schedule.timezone == "Europe/Paris"  # type: ignore[union-attr]
    assert d.parameters == {"script": str(repo_root / "configs" / "weekly-campaign.yaml")}
    assert made.schedule == "0 6 * * MON (Europe/Paris)"


def test_a_script_without_schedule_is_deployed_on_demand(repo_root: Path) -> None:
    made = deployment_of(str(repo_root / "configs" / "bulk-ab.yaml"), provider="sandbox")
    assert not made.deployment.schedules
    assert made.schedule == "on demand"
    assert made.deployment.parameters["provider"] == "sandbox"


def test_script_references_are_absolute_paths_or_s3_uris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert script_reference("s3://bucket/scripts/a.yaml") == "s3://bucket/scripts/a.yaml"
    assert script_reference("a.yaml") == str(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy", "configs/weekly-campaign.yaml"],
        ["serve", "configs/weekly-campaign.yaml"],
        ["worker"],
        ["resume", "r1"],
    ],
)
def test_commands_that_need_a_server_say_so(
    argv: list[str], repo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo_root)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "needs a Prefect server" in err and "PREFECT_API_URL" in err


def test_a_broken_script_is_never_deployed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: Not Valid\n")
    assert main(["deploy", str(broken)]) == EXIT_DATAERR
    assert str(broken) in capsys.readouterr().err


@pytest.mark.slow
def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # the discard port: nothing answers there
        "PREFECT_CLIENT_MAX_RETRIES": "0",
        "KLINGFLOW_RUNS_DIR": str(tmp_path / "runs"),
    }
    resume = subprocess.run(
        [KLINGFLOW, "resume", "r1"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert resume.returncode == EXIT_UNAVAILABLE, resume.stderr
    assert "Prefect server at http://127.0.0.1:9/api did not answer" in resume.stderr
    assert "Traceback" not in resume.stderr
    # status still shows what the job store knows, with a warning about the server.
    status = subprocess.run(
        [KLINGFLOW, "status"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    assert "did not answer" in status.stderr and "no runs under" in status.stdout
