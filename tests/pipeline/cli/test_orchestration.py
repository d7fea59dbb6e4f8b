"""The command line finds the flows through the installed entry point, never by importing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pipeline.cli import orchestration as module
from pipeline.errors import EXIT_DATAERR, EXIT_UNAVAILABLE, StackError


def test_the_installed_flows_are_found() -> None:
    found = module.orchestration()
    assert type(found).__module__ == "flows.commands"
    assert callable(found.render) and callable(found.server_configured)


def test_without_the_flows_the_command_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "entry_points", lambda **_: [])
    with pytest.raises(StackError, match="pip install") as info:
        module.orchestration()
    assert info.value.exit_code == EXIT_UNAVAILABLE


# --- Prefect's temporary server, started before Prefect is imported ---------------------------


@pytest.fixture
def no_server_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PREFECT_API_URL in the environment, an empty Prefect home, a directory without
    prefect.toml/.env/pyproject.toml."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", module.EARLY_SERVER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_server_named_anywhere_leaves_the_start_to_prefect(
    no_server_anywhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not module.server_may_be_configured()
    home = no_server_anywhere / "home"
    home.mkdir()
    (home / "profiles.toml").write_text('[profiles.local]\nPREFECT_API_URL = "http://h:4200/api"\n')
    assert module.server_may_be_configured()
    (home / "profiles.toml").unlink()
    (no_server_anywhere / "pyproject.toml").write_text('[tool.prefect]\napi.url = "http://h:4200/api"\n')
    assert module.server_may_be_configured()
    (no_server_anywhere / "pyproject.toml").unlink()
    monkeypatch.setenv("PREFECT_API_URL", "http://h:4200/api")
    assert module.server_may_be_configured()
    assert module.start_early_server() is None


def test_once_prefect_is_imported_it_is_not_started_early(
    no_server_anywhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prefect read its settings when imported: a URL set now would not reach it.
    monkeypatch.setitem(sys.modules, "prefect", types.ModuleType("prefect"))
    assert module.start_early_server() is None
    assert "PREFECT_API_URL" not in os.environ


def test_a_server_that_exits_as_it_starts_is_a_stack_error_and_the_environment_is_given_back(
    no_server_anywhere: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with log.open("wb") as out:  # the server's output stays off the terminal, in its log
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('port in use'); raise SystemExit(3)"], stdout=out
        )
    server = module.EarlyServer(proc, 1, {"PREFECT_API_URL": None, module.EARLY_SERVER_ENV: None}, log)
    monkeypatch.setenv("PREFECT_API_URL", server.api_url)
    monkeypatch.setenv(module.EARLY_SERVER_ENV, server.api_url)
    with pytest.raises(StackError, match="exited with code 3") as info:
        server.wait_ready(timeout=60)
    assert info.value.exit_code == EXIT_UNAVAILABLE
    assert "port in use" in str(info.value)  # what it said reaches the user with the error
    assert not log.exists()  # and its log is gone with it
    assert "PREFECT_API_URL" not in os.environ and module.EARLY_SERVER_ENV not in os.environ


#: In a fresh interpreter (this one may have imported Prefect): start the server early, import
#: the flows, and say what Prefect and the flows make of it. What it pins against Prefect 3.8.8
#: (the installed package's prefect/server/api/server.py, SubprocessASGIServer._run_uvicorn_command:
#: uvicorn on prefect.server.api.server:create_app with PREFECT_UI_ENABLED=0,
#: PREFECT__SERVER_EPHEMERAL=1, PREFECT__SERVER_FINAL=1; and prefect/client/orchestration
#: get_client: a PREFECT_API_URL read at import is used as it is) is that this server answers
#: /api/health and is the one Prefect's settings name.
EARLY_START = """
import json, os, sys
from pipeline.cli.orchestration import EARLY_SERVER_ENV, release_early_server, start_early_server
server = start_early_server()
assert server is not None and "prefect" not in sys.modules
url = os.environ["PREFECT_API_URL"]
import flows.commands, httpx
from prefect.settings import PREFECT_API_URL
from flows.limits import server_configured
server.wait_ready(300)
health = httpx.get(url + "/health").status_code
seen = (PREFECT_API_URL.value(), server_configured())
release_early_server()
print(json.dumps({"url": url, "health": health, "prefect_url": seen[0], "configured": seen[1],
                  "after": os.environ.get("PREFECT_API_URL")}))
"""


@pytest.mark.slow
def test_the_early_server_is_prefects_temporary_server_to_prefect_and_to_the_flows(
    no_server_anywhere: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(no_server_anywhere / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, "-c", EARLY_START], env=env, capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["health"] == 200
    assert found["prefect_url"] == found["url"]  # Prefect talks to it
    assert found["configured"] is False  # still ephemeral mode: local limits, no UI choice
    assert found["after"] is None  # the environment given back once the run is over


BAD_INPUT = """
import json, os, sys
from pipeline.cli import main
from pipeline.processes import descendants
code = main(["run", sys.argv[1]])
print(json.dumps({"code": code, "children": descendants(os.getpid()), "url": os.environ.get("PREFECT_API_URL"),
                  "prefect": "prefect" in sys.modules}))
"""


def test_bad_input_stops_the_early_server_at_once(no_server_anywhere: Path, repo_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(no_server_anywhere / "home")
    broken = repo_root / "tests/pipeline/script/broken/06-duration-zero.yaml"
    done = subprocess.run(
        [sys.executable, "-c", BAD_INPUT, str(broken)], env=env, capture_output=True, text=True, timeout=120
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == EXIT_DATAERR
    assert found == {"code": EXIT_DATAERR, "children": [], "url": None, "prefect": False}
