"""The plan as the clip library sees it, without a provider: reuse marked from the library,
the budget counting only what is bought, and no library created by planning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.planning.plan import build_plan, plan_to_dict
from pipeline.providers.settings import ProviderSettings
from pipeline.render.library_plan import library_check, plan_with_library, provider_identity
from pipeline.render.reuse import base_dir_local, clip_identity, identity_bodies
from pipeline.script.loader import parse_script
from pipeline.settings import load_settings
from pipeline.store.library import ClipLibrary, library_url

SCRIPT = b"""\
version: 1
name: lib
defaults: {audio: false}
narratives:
  - id: n
    shots:
      - {duration: 10, action: "a boat leaves"}
      - {duration: 10, action: "a storm"}
variants: [{id: a}]
budget: {limit_usd: 5.00, draft_tier: standard, final_tier: pro, finals: 0, select: all}
"""


def test_a_plan_creates_no_library_and_marks_nothing_without_one(tmp_path: Path) -> None:
    loaded = parse_script(SCRIPT, file="lib.yaml", base_dir=tmp_path)
    settings = load_settings(run={"runs_dir": tmp_path / "runs"})
    plan = plan_with_library(loaded, settings, provider="sandbox")
    assert not any(r.reuse for r in plan.requests)
    assert plan.to_spend == plan.total
    assert not (tmp_path / "runs").exists()  # `klingflow plan` writes nothing


def _hold_first_request(tmp_path: Path, runs_dir: Path) -> None:
    """Record the script's first request in the library under ``runs_dir`` as paid by run r0."""
    loaded = parse_script(SCRIPT, file="lib.yaml", base_dir=tmp_path)
    first = build_plan(loaded.script).requests[0]
    body = identity_bodies([first], base_dir_local(tmp_path))[0]
    library = ClipLibrary.open(library_url(runs_dir, None))
    library.record(
        clip_identity("sandbox", body), provider="sandbox", body=body, file="/x.mp4", sha256="ab" * 32,
        size=1, request_id="req-1", cost=first.cost, run_id="r0",
    )  # fmt: skip
    library.close()


def test_held_requests_are_reuse_and_cost_nothing_now(tmp_path: Path) -> None:
    settings = load_settings(run={"runs_dir": tmp_path / "runs"})
    _hold_first_request(tmp_path, settings.run.runs_dir)
    loaded = parse_script(SCRIPT, file="lib.yaml", base_dir=tmp_path)
    with library_check(loaded, settings.run, settings.provider, "sandbox") as paid:
        data = plan_to_dict(build_plan(loaded.script, paid))
    assert [r["reuse"] for r in data["requests"]] == [True, False]
    assert data["to_spend_usd"] == 0.84 < data["total_usd"] == 1.68


def test_plan_shows_reuse_and_what_is_to_spend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KLINGFLOW_STORE_URL", raising=False)
    script = tmp_path / "lib.yaml"
    script.write_bytes(SCRIPT.replace(b"defaults:", b"provider: sandbox\ndefaults:"))
    _hold_first_request(tmp_path, tmp_path / "runs")
    assert main(["plan", str(script), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["reuse"] for r in data["requests"]] == [True, False]
    assert (data["to_spend_usd"], data["total_usd"]) == (0.84, 1.68)
    assert main(["plan", str(script)]) == 0
    table = capsys.readouterr().out
    assert "reuse" in table and "buy" in table
    assert "1 to buy, 1 reused from the clip library ($0.84 already paid)" in table


def test_the_identity_names_the_provider_that_would_render(tmp_path: Path) -> None:
    no_token = ProviderSettings(token_file=tmp_path / "none.json")
    assert provider_identity("sandbox", no_token) == "sandbox"
    assert provider_identity(None, no_token) == "sandbox"
    assert provider_identity("runcomfy", no_token) == "runcomfy"  # no token yet: what was asked
    # A rehearsal's clips are its own: neither a real provider's nor the plain sandbox's.
    assert provider_identity("runcomfy", no_token, rehearse=True) == "runcomfy-rehearsal"
    assert provider_identity("kling", no_token, rehearse=True) == "kling-rehearsal"
