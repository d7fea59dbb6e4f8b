"""Every row of the README's exit-code table, triggered through the command line.

The table is read from README.md, so a row added there without a trigger here fails
:func:`test_every_documented_code_is_triggered`. Quick codes go through :func:`pipeline.cli.main`
in this process; the rest run ``klingflow`` as a subprocess against a sandbox served from this
process (``run_sandbox``: any ``SandboxConfig`` — balance, token, faults — without a CLI flag).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.stack.runs import start_run, wait_for_submits

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def documented_codes() -> dict[int, str]:
    """The README's exit-code table: code → meaning."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


#: How each documented code is triggered here (the test that does it).
TRIGGERS = {
    0: "test_quick_codes[0] (validate) and test_run_ends_in_its_code[0] (a run that delivers)",
    1: "test_run_ends_in_its_code[1] (every generation fails)",
    3: "test_quick_codes[3] (plan over budget)",
    4: "test_run_ends_in_its_code[4] (the sandbox's balance runs out mid-run)",
    64: "test_quick_codes[64] (missing argument)",
    65: "test_quick_codes[65] (invalid script)",
    66: "test_quick_codes[66] (missing script)",
    69: "test_prefect_server_that_does_not_answer_is_69",
    70: "test_a_bug_is_70 (an unexpected exception: the last safety net)",
    73: "test_full_disk_is_73 (archive and run on a small tmpfs)",
    74: "test_archive_of_a_tampered_master_is_74",
    75: "test_lost_submit_answer_is_75",
    77: "test_run_ends_in_its_code[77] (a sandbox with a token, the run given a wrong one)",
    78: "test_quick_codes[78] (bad settings: KLINGFLOW_MAX_IN_FLIGHT=many)",
    130: "test_sigint_is_130 (and SIGTERM, klingflow cancel: tests/pipeline/cli/test_stop.py)",
}


def test_every_documented_code_is_triggered() -> None:
    codes = documented_codes()
    assert 0 in codes and 130 in codes, "the README's exit-code table was not found"
    assert sorted(codes) == sorted(TRIGGERS)


# --- quick: in this process ------------------------------------------------------------------


def _tiny_script(directory: Path, *, limit: str = "5.00", variants: int = 1, name: str = "exits") -> Path:
    """One 6 s narrative: one 6 s standard draft per variant ($0.504 each), no finals."""
    ids = "\n".join(
        f"  - id: {v}\n    overrides: {{seed: {i + 1}}}" for i, v in enumerate("abcdef"[:variants])
    )
    script = directory / f"{name}.yaml"
    script.write_text(
        f"""\
version: 1
name: {name}
defaults: {{audio: false, style: "test card"}}
narratives:
  - id: n
    shots:
      - {{duration: 3, action: "a kite rises"}}
      - {{duration: 3, action: "the kite lands"}}
variants:
{ids}
budget: {{limit_usd: {limit}, draft_tier: standard, finals: 0}}
output: {{archive: {directory / "archive"}}}
"""
    )
    return script


@pytest.mark.parametrize("code", [0, 3, 64, 65, 66, 78])
def test_quick_codes(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    script = _tiny_script(tmp_path)
    argv = {
        0: ["validate", str(script)],
        3: ["plan", str(_tiny_script(tmp_path, limit="0.10", name="poor"))],
        64: ["plan"],
        65: ["validate", str(ROOT / "tests/pipeline/script/broken/06-duration-zero.yaml")],
        66: ["validate", str(tmp_path / "missing.yaml")],
        78: ["run", str(script)],
    }[code]
    if code == 78:
        monkeypatch.setenv("KLINGFLOW_MAX_IN_FLIGHT", "many")
    assert main(argv) == code
    assert "Traceback" not in capsys.readouterr().err


def test_a_bug_is_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing in klingflow raises a bare exception on purpose, so a bug is simulated: the last
    safety net prints the traceback and exits 70 (sysexits' EX_SOFTWARE), never 1."""
    from pipeline.cli import script_cmds

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(script_cmds, "load_script", broken)
    assert main(["validate", str(_tiny_script(tmp_path))]) == 70
    err = capsys.readouterr().err
    assert "simulated bug" in err and "please report it" in err


def test_wrapped_errors_keep_their_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ExceptionGroup around ours, and a bare ENOSPC, end in the documented codes."""
    import errno

    from pipeline.cli import script_cmds
    from pipeline.errors import NoBalance

    def grouped(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("tasks", [NoBalance("no balance left")])

    monkeypatch.setattr(script_cmds, "load_script", grouped)
    assert main(["validate", "x.yaml"]) == 4

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/full/piece.pcm")

    monkeypatch.setattr(script_cmds, "load_script", full)
    assert main(["validate", "x.yaml"]) == 73
    assert "/somewhere/full/piece.pcm" in capsys.readouterr().err


# --- through a subprocess ----------------------------------------------------------------------


def _env(tmp_path: Path, prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KLINGFLOW_RUNS_DIR": str(tmp_path / "runs"),
        "KLINGFLOW_SANDBOX_LATENCY_SCALE": "0.01",
        "KLINGFLOW_SANDBOX_RENDER_SCALE": "0.1",
        "KLINGFLOW_SUBMIT_RATE_PER_S": "20",
        "KLINGFLOW_PROVIDER_MAX_ATTEMPTS": "1",
        "PREFECT_HOME": str(prefect_home),
        **extra,
    }
    for name in ("PREFECT_API_URL", "RUNCOMFY_TOKEN", "KLINGFLOW_SANDBOX_URL", "KLINGFLOW_STORE_URL"):
        if name not in extra:
            env.pop(name, None)
    env["KLINGFLOW_PROVIDER_TOKEN_FILE"] = str(tmp_path / "no-token.json")
    return env


def klingflow(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``klingflow ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for the module's runs: only the first pays for the database migration."""
    return tmp_path_factory.mktemp("exit-codes-prefect")


@contextlib.contextmanager
def sandbox(**config: object) -> Iterator[SandboxHandle]:
    """A sandbox served from this process (fast, small pictures) with ``config`` on top."""
    settings = {"latency_scale": 0.01, "render_scale": 0.1, **config}
    with run_sandbox(SandboxConfig.model_validate(settings)) as handle:
        yield handle


RUNS: dict[int, tuple[dict[str, Any], dict[str, str], str]] = {
    0: ({}, {}, '"report"'),
    1: ({"faults": FaultConfig(fail=1.0)}, {"KLINGFLOW_MAX_REGENERATIONS": "0"}, "jobs_not_completed"),
    # Two drafts of $0.504 against a balance of $0.60: the second submit is refused (402).
    4: ({"balance_usd": Decimal("0.60")}, {}, "balance"),
    77: ({"token": "the-right-one"}, {"RUNCOMFY_TOKEN": "a-wrong-one"}, "403"),
}


@pytest.mark.slow
@pytest.mark.parametrize("code", sorted(RUNS))
def test_run_ends_in_its_code(code: int, tmp_path: Path, prefect_home: Path) -> None:
    config, extra, said = RUNS[code]
    script = _tiny_script(tmp_path, variants=2)
    with sandbox(**config) as handle:
        if code == 77:
            # The token only reaches a provider spoken to as RunComfy (a sandbox URL is tokenless).
            extra = {**extra, "RUNCOMFY_MODEL_API_BASE": handle.base_url}
            provider = "runcomfy"
        else:
            extra = {**extra, "KLINGFLOW_SANDBOX_URL": handle.base_url}
            provider = "sandbox"
        # --json where the run ends with its outcome: one JSON object on stdout, bars on stderr.
        as_json = ["--json"] if code in (0, 1) else []
        done = klingflow(
            ["run", str(script), "--provider", provider, "--run-id", f"code-{code}", *as_json],
            _env(tmp_path, prefect_home, **extra),
            tmp_path,
        )
    output = done.stdout + done.stderr
    assert done.returncode == code, output[-3000:]
    if as_json:
        outcome = json.loads(done.stdout)
        assert outcome["delivered"] is (code == 0) and outcome["provider"] == "sandbox"
        assert outcome["run_id"] == f"code-{code}" and isinstance(outcome["charged_usd"], float)
        assert bool(outcome["jobs_not_completed"]) is (code == 1)
    assert said in output.lower() if said != "403" else said in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_prefect_server_that_does_not_answer_is_69(tmp_path: Path, prefect_home: Path) -> None:
    env = _env(tmp_path, prefect_home, PREFECT_API_URL="http://127.0.0.1:1/api")
    done = klingflow(["resume", "some-run"], env, tmp_path, timeout=120)
    assert done.returncode == 69, done.stderr[-2000:]
    assert "did not answer" in done.stderr


@pytest.mark.slow
def test_prefect_failing_under_a_started_run_is_69_and_a_rerun_pays_nothing_twice(
    tmp_path: Path, prefect_home: Path
) -> None:
    """``klingflow run`` submits while Prefect's temporary server boots
    (pipeline/render/headstart.py); when that server then fails to start, the run stops as on
    Ctrl-C (no new submit, what is queued cancelled, what may bill listed) and exits 69, and
    running it again once Prefect works finishes it, each request bought once."""
    script = _tiny_script(tmp_path, variants=4, limit="5.00")
    with sandbox(latency_scale=0.2, slots=2) as handle:
        env = _env(
            tmp_path,
            prefect_home,
            KLINGFLOW_SANDBOX_URL=handle.base_url,
            KLINGFLOW_SANDBOX_LATENCY_SCALE="0.2",
        )
        # A database the server cannot open: it exits as it starts.
        broken = {
            **env,
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db",
        }
        failed = klingflow(["run", str(script), "--provider", "sandbox", "--run-id", "p69"], broken, tmp_path)
        first = handle.ledger()
        again = klingflow(["run", str(script), "--provider", "sandbox", "--run-id", "p69"], env, tmp_path)
        ledger = handle.ledger()
    said = failed.stdout + failed.stderr
    assert failed.returncode == 69, said[-3000:]
    assert "Prefect's temporary API server exited" in said and "Traceback" not in said
    assert "the run stopped:" in said and "run the same command again to resume run p69" in said
    assert first, "the run submitted before Prefect answered"
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    charged = [e for e in ledger if e.charged]
    assert len(charged) == 4 and all(e.charge_count <= 1 for e in ledger)
    # Whatever the stopped run left queued was cancelled there, never billed.
    assert all(e.status in ("cancelled", "canceled") for e in ledger if not e.charged)


def test_lost_submit_answer_is_75(tmp_path: Path) -> None:
    """Every submit's connection drops after the request was created: unknown, maybe billed."""
    with sandbox(faults=FaultConfig(drop=1.0), token="t") as handle:
        env = _env(tmp_path, tmp_path, RUNCOMFY_MODEL_API_BASE=handle.base_url, RUNCOMFY_TOKEN="t")
        done = klingflow(
            ["generate", "--prompt", "a kite", "--duration", "3", "--provider", "runcomfy", "--out", "clips"],
            env,
            tmp_path,
            timeout=120,
        )
    assert done.returncode == 75, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, prefect_home: Path) -> Path:
    """The masters directory of one delivered run (for the archive's codes)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    script = _tiny_script(tmp_path)
    with sandbox() as handle:
        done = klingflow(
            ["run", str(script), "--provider", "sandbox", "--run-id", "done"],
            _env(tmp_path, prefect_home, KLINGFLOW_SANDBOX_URL=handle.base_url),
            tmp_path,
        )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return tmp_path / "runs" / "done" / "masters"


@pytest.mark.slow
def test_archive_of_a_tampered_master_is_74(finished_run: Path, tmp_path: Path) -> None:
    masters = tmp_path / "masters"
    shutil.copytree(finished_run, masters)
    master = next(masters.glob("*/*/*/master.mp4"))
    with master.open("ab") as f:
        f.write(b"\0")
    done = klingflow(
        ["archive", str(masters), "--to", str(tmp_path / "archive")], _env(tmp_path, tmp_path), tmp_path
    )
    assert done.returncode == 74, done.stdout + done.stderr
    assert "does not match its manifest" in done.stdout + done.stderr


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); skips the test if mount is refused."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'}): no full disk to test"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_full_disk_is_73(finished_run: Path, tmp_path: Path, prefect_home: Path) -> None:
    # The archive: a destination with room for less than one master.
    with small_tmpfs(tmp_path / "full-archive", "64k") as full:
        done = klingflow(
            ["archive", str(finished_run), "--to", str(full)], _env(tmp_path, tmp_path), tmp_path
        )
    assert done.returncode == 73, done.stdout + done.stderr
    assert str(full) in done.stdout + done.stderr and "no space left" in (done.stdout + done.stderr).lower()

    # A run whose masters directory fills up while it stitches (the clips and the job store are
    # elsewhere): the run stops with 73 and names the directory, instead of a traceback and 1.
    script = _tiny_script(tmp_path, name="fills")
    masters = tmp_path / "runs" / "fills-run" / "masters"
    with sandbox() as handle, small_tmpfs(masters, "96k"):
        done = klingflow(
            ["run", str(script), "--provider", "sandbox", "--run-id", "fills-run"],
            _env(tmp_path, prefect_home, KLINGFLOW_SANDBOX_URL=handle.base_url),
            tmp_path,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 73, output[-3000:]
    assert str(masters) in output and "no space left" in output.lower()
    assert "Traceback" not in output


@pytest.mark.slow
def test_sigint_is_130(tmp_path: Path, prefect_home: Path) -> None:
    script = _tiny_script(tmp_path, variants=4)
    run_id = f"int-{uuid.uuid4().hex[:6]}"
    # Slow renders: the run is still waiting for its clips when Ctrl-C lands.
    with sandbox(latency_scale=0.5) as handle:
        env = _env(
            tmp_path,
            prefect_home,
            KLINGFLOW_SANDBOX_URL=handle.base_url,
            KLINGFLOW_SANDBOX_LATENCY_SCALE="0.5",
        )
        proc = start_run(script, run_id, cwd=tmp_path, env=env, log=tmp_path / "run.log", new_session=True)
        wait_for_submits(tmp_path / "runs" / run_id / "jobs.db", 1, proc)
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        assert proc.wait(60) == 130
    said = (tmp_path / "run.log").read_text()
    assert "interrupted:" in said and "Traceback" not in said
