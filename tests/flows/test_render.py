"""The render flow end to end on the sandbox, through Prefect, from script to archive."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.media.probe import probe
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.stack.runs import run_command, start_run, wait_for_submits

from ..pipeline.render.conftest import write_story

FRAME = 1 / 24

# Prefect's API clients keep loopback connections to the test API server when a flow's event
# loop (asyncio.run) ends; the engine tests, which run the same code without Prefect, leave none.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_story_renders_drafts_two_finals_and_archives_them(run_env: Path, sandbox: SandboxHandle) -> None:
    from flows.render import render

    script = write_story(run_env, limit="33.00", finals=3, select="auto")
    summary = asyncio.run(render(script=str(script), run_id="e2e", provider="sandbox", max_in_flight=6))

    assert summary.delivered, summary
    masters = summary.masters
    drafts = [m for m in masters if m.pass_ == "draft"]
    finals = [m for m in masters if m.pass_ == "final"]
    assert len(drafts) == 6  # 2 narratives x 3 variants
    assert len(finals) == 4  # the budget allows 2 finals (variants a, b) x 2 narratives
    assert summary.selected == ("a", "b")
    scripted = {"story": 40.0, "teaser": 16.0}
    joins = {"story": 3, "teaser": 1}
    for m in masters:
        info = probe(str(m.path))
        assert abs(info.duration - scripted[m.narrative]) <= FRAME * joins[m.narrative] + 1e-6, m

    archive = run_env / "archive" / "story-test" / "e2e"
    manifests = sorted(archive.glob("*/*/*/manifest.json"))
    assert len(manifests) == 10
    ledger = sandbox.ledger()
    charged = {e.request_id: e.cost_usd for e in ledger if e.charged}
    assert all(e.charge_count == 1 for e in ledger if e.charged)
    manifest_costs: dict[str, Decimal] = {}
    for path in manifests:
        manifest = json.loads(path.read_text())
        assert (path.parent / "master.mp4").is_file()
        for seg in manifest["segments"]:
            manifest_costs[seg["request_id"]] = Decimal(seg["cost_usd"])
    assert manifest_costs == charged  # every paid request is in a manifest, at what it cost
    total = sum(charged.values(), Decimal(0))
    assert total <= Decimal("33.00")
    assert summary.charged_usd == total
    assert summary.report is not None and Path(summary.report).is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The first run submits a burst of 4 requests, then 2 a second, and is stopped once the 5th is
#: out. ``sandbox serve`` renders 4 at a time, so the 5th waits in the queue until one of the
#: first four finishes: a Ctrl-C cancels it there, and the resumed run must buy it again. The
#: kill never lands between a submit and its answer (the next one is half a second away).
KILL_AFTER = 5
#: The sandbox's latency (and the CLI's polling scale). At 0.02 a draft renders for 1.3 s at the
#: least: the 5th request queues for most of a second, time for the Ctrl-C's cancel to reach it.
#: SIGKILL cancels nothing and may run twice as fast. Either way the 12 drafts cannot all be out
#: before the kill, and each chained segment waits for the one before.
LATENCY = {"SIGKILL": "0.01", "SIGINT": "0.02"}


def _resume_script(tmp_path: Path) -> Path:
    """The story with two variants: 12 drafts (4 chained + 2 independent segments each), and a
    budget that allows exactly one final (6 segments) of the two asked for.

    Drafts 2 x 56 s x $0.084 = $9.408 and one pro final with audio 56 s x $0.168 = $9.408: $18.816
    of $18.90, less than any job costs ($0.672) to spare: a job bought twice leaves the final
    without budget, and the run fails.
    """
    script: Path = write_story(tmp_path, limit="18.90", finals=2, select="all")
    variant_c = "  - id: c\n    overrides: {seed: 3}\n"
    text = script.read_text()
    assert variant_c in text
    script.write_text(text.replace(variant_c, ""))
    return script


@pytest.fixture(scope="module")
def cli_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREFECT_HOME of the CLI runs of this module (each starts its own ephemeral server there).

    The first server on a fresh home migrates Prefect's database (tens of seconds on a busy
    2-core machine); each test's second run already reuses its first run's home, and the tests
    share one so that only the very first run pays for it.
    """
    return tmp_path_factory.mktemp("cli-prefect-home")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_run_resumes_and_pays_each_job_once(
    tmp_path: Path, repo_root: Path, cli_prefect_home: Path, how: str
) -> None:
    """SIGKILL (or Ctrl-C) in the middle of the draft pass, run again: it completes, nothing paid
    twice. Ctrl-C ends the run at once with exit 130 and says what may still be billed."""
    port = _free_port()
    env = {
        **os.environ,
        "KLINGFLOW_RUNS_DIR": str(tmp_path / "runs"),
        "KLINGFLOW_SANDBOX_URL": f"http://127.0.0.1:{port}/v1",
        "KLINGFLOW_SANDBOX_LATENCY_SCALE": LATENCY[how],
        "KLINGFLOW_SUBMIT_RATE_PER_S": "2",
        "KLINGFLOW_SUBMIT_BURST": str(KILL_AFTER - 1),
        "PREFECT_HOME": str(cli_prefect_home),
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--latency-scale",
            LATENCY[how],
            "--render-scale",
            "0.1",
            "--data-dir",
            str(tmp_path / "sandbox"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ledger_url = f"http://127.0.0.1:{port}/v1/sandbox/ledger"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(ledger_url, timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        script = _resume_script(tmp_path)
        command = run_command(script, "crash")
        first = start_run(
            script, "crash", cwd=tmp_path, env=env, log=tmp_path / "first-run.log", new_session=True
        )
        db = tmp_path / "runs" / "crash" / "jobs.db"
        wait_for_submits(db, KILL_AFTER, first)
        assert first.poll() is None, (tmp_path / "first-run.log").read_text()[-3000:]
        if how == "SIGKILL":
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
        else:
            os.killpg(first.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
            assert first.wait(60) == 130
            said = (tmp_path / "first-run.log").read_text()
            assert "interrupted:" in said
            assert "may still complete and be billed" in said
        before = httpx.get(ledger_url, timeout=5).json()
        assert KILL_AFTER <= len(before["entries"]) < 12  # killed in the middle of the draft pass

        # The resumed run is not killed: it need not space its submits for a kill to land between
        # them (the sandbox allows 50 a second).
        resume_env = {**env, "KLINGFLOW_SUBMIT_RATE_PER_S": "20", "KLINGFLOW_SUBMIT_BURST": "4"}
        second = subprocess.run(
            command, cwd=tmp_path, env=resume_env, capture_output=True, text=True, timeout=600, check=False
        )
        assert second.returncode == 0, second.stdout + second.stderr

        ledger = httpx.get(ledger_url, timeout=5).json()
        entries = ledger if isinstance(ledger, list) else ledger["entries"]
        charged = [e for e in entries if e["charged"]]
        assert len(charged) == 12 + 6  # every job bought once: 12 drafts, 1 final x 6 segments
        assert all(e["charge_count"] <= 1 for e in entries)
        # Anything else the sandbox accepted was cancelled while queued (Ctrl-C), never billed.
        assert all(e["status"] in ("cancelled", "canceled") for e in entries if not e["charged"])
        with sqlite3.connect(db) as conn:
            ids = [r[0] for r in conn.execute("select request_id from jobs where status = 'completed'")]
        assert sorted(ids) == sorted(e["request_id"] for e in charged)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


HEAD_START = """\
version: 1
name: head-start
defaults: {audio: false}
narratives:
  - id: story
    continuity: chain
    shots:
      - {duration: 10, action: "a boat leaves the harbour"}
      - {duration: 10, action: "the boat crosses a storm"}
      - {duration: 10, action: "a coastline appears"}
variants: [{id: a}]
budget: {limit_usd: 10.00, draft_tier: standard, finals: 0}
output: {archive: ARCHIVE}
"""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "prefect_at_info")
def test_a_run_started_before_its_flow_run_is_attached_and_pays_each_job_once(
    run_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # klingflow run in Prefect's ephemeral mode: the run starts as soon as it is planned, and the
    # flow run attaches once Prefect answers (pipeline/render/headstart.py). Here the flow is
    # only called after the first segment was submitted; a slow sandbox keeps the chain going.
    from prefect import flow

    from flows.render import render
    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.sandbox.server import run_sandbox
    from pipeline.render.entry import Launch, prepare_run
    from pipeline.render.headstart import HeadStart
    from pipeline.render.limits import LocalLimits
    from pipeline.render.progress import RunHooks
    from pipeline.render.runlock import SubmitGate
    from pipeline.settings import load_settings

    from .conftest import logs_and_task_runs

    caplog.set_level(logging.INFO, logger="prefect")
    monkeypatch.delenv("KLINGFLOW_GLOBAL_LIMITS")  # ephemeral mode: local limits
    script = run_env / "head-start.yaml"
    script.write_text(HEAD_START.replace("ARCHIVE", str(run_env / "archive")))
    with run_sandbox(SandboxConfig(latency_scale=0.1, render_scale=0.1, slots=4)) as slow:
        monkeypatch.setenv("KLINGFLOW_SANDBOX_URL", slow.base_url)
        prepared, settings = prepare_run(script, "head"), load_settings()
        submitted: list[tuple[int, bool]] = []  # (segment, whether the flow had attached)
        heads: list[HeadStart] = []

        @flow
        async def parent() -> Any:  # to know the render's flow run id: it is this flow's subflow
            as_state: Any = render
            launch = Launch(prepared, settings, hooks[0], heads[0])
            state = await as_state(
                script=str(script), run_id="head", provider="sandbox", launch=launch, return_state=True
            )
            return state.state_details.flow_run_id, await state.result()

        async def scenario() -> Any:
            first = asyncio.Event()

            def on_event(event: str, request: Any, detail: str) -> None:
                if event == "submitted":
                    submitted.append((request.segment, heads[0].relay.attached))
                    first.set()

            hooks.append(RunHooks(on_event=on_event))
            heads.append(
                HeadStart.begin(
                    prepared, settings, hooks[0], limits=SubmitGate(LocalLimits(4, 50, 8)), provider="sandbox"
                )
            )
            await first.wait()
            return await parent()

        hooks: list[RunHooks] = []
        flow_run_id, summary = asyncio.run(scenario())
        ledger = slow.ledger()

    assert summary.delivered, summary
    assert submitted[0] == (0, False)
    _, task_runs = asyncio.run(logs_and_task_runs(flow_run_id, wait_for=None))
    # Jobs begun after the flow attached are its task runs; the one before is not, and its events
    # were replayed into the flow run's logs (its run logger, in its context).
    relayed = {f"draft-story-a-{segment}" for segment, attached in submitted if attached}
    assert {name for name in task_runs if name.startswith("draft-")} == relayed
    assert {"master-draft-story-a", "qc-draft", "selection", "report"} <= set(task_runs), task_runs
    flow_logs = [
        r.getMessage() for r in caplog.records if str(getattr(r, "flow_run_id", "")) == str(flow_run_id)
    ]
    assert "draft story/a segment 0: submitted" in "\n".join(flow_logs), flow_logs
    # The money: one session, each segment bought and charged once, the summary the ledger's.
    assert sorted(s for s, _ in submitted) == [0, 1, 2]
    assert len(ledger) == 3 and all(e.charge_count == 1 for e in ledger)
    assert summary.charged_usd == sum((e.cost_usd for e in ledger), Decimal(0))


@pytest.mark.slow
def test_klingflow_run_submits_before_prefect_answers_and_its_flow_run_has_the_logs(
    tmp_path: Path, cli_prefect_home: Path
) -> None:
    # The command as a user runs it, in Prefect's ephemeral mode: the run starts while Prefect's
    # temporary server boots; what it did before the flow run attached is in the flow run's
    # logs on that server (its database in PREFECT_HOME), the later stages are its task runs.
    script = tmp_path / "head-start.yaml"
    script.write_text(HEAD_START.replace("ARCHIVE", str(tmp_path / "archive")))
    env = {**os.environ, "KLINGFLOW_RUNS_DIR": str(tmp_path / "runs"), "PREFECT_HOME": str(cli_prefect_home)}
    # PREFECT_LOGGING_LEVEL: the tests' conftest quiets Prefect; a user's run logs at INFO.
    for name in (
        "PREFECT_API_URL",
        "PREFECT_LOGGING_LEVEL",
        "KLINGFLOW_SANDBOX_URL",
        "KLINGFLOW_GLOBAL_LIMITS",
    ):
        env.pop(name, None)
    env.pop("RUNCOMFY_TOKEN", None)
    env["KLINGFLOW_SANDBOX_LATENCY_SCALE"] = "0.02"
    done = subprocess.run(
        run_command(script, "cli-head"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "runs" / "cli-head" / "jobs.db") as conn:
        first_submit = min(r[0] for r in conn.execute("select created_at from requests"))
    with sqlite3.connect(cli_prefect_home / "prefect.db") as conn:
        ((flow_run, created),) = conn.execute(
            "select id, created from flow_run where name = 'cli-head'"
        ).fetchall()
    # The first request went out before Prefect's server had even created the flow run.
    assert first_submit < datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp(), (
        first_submit,
        created,
    )
    with sqlite3.connect(cli_prefect_home / "prefect.db") as conn:
        logs = [r[0] for r in conn.execute("select message from log where flow_run_id = ?", (flow_run,))]
        tasks = {r[0] for r in conn.execute("select name from task_run where flow_run_id = ?", (flow_run,))}
    text = "\n".join(logs)
    for expected in ("draft story/a segment 0: submitted", "stage: draft", "run cli-head delivered"):
        assert expected in text, (expected, text[-3000:])
    assert {"qc-draft", "selection", "report"} <= tasks, tasks
