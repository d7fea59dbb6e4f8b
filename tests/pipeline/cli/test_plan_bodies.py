"""``plan --json`` per request: the provider and the exact body its adapter would submit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.plan_bodies import add_bodies
from pipeline.errors import EXIT_USAGE
from pipeline.planning.plan import build_plan, plan_to_dict
from pipeline.providers import bodies
from pipeline.script.loader import load_script


def plan_json(repo_root: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> dict:  # type: ignore[type-arg]
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_fal_requests_carry_a_storyboard_summing_to_their_duration(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = plan_json(repo_root, capsys, "--provider", "fal")
    assert data["provider"] == "fal"
    storyboards = [r for r in data["requests"] if len(r["multi_prompt"]) >= 2]
    assert storyboards
    for r in data["requests"]:
        assert r["provider"] == "fal"
        body = r["body"]
        if len(r["multi_prompt"]) >= 2:
            shots = body["multi_prompt"]
            assert [int(s["duration"]) for s in shots] == [s["duration"] for s in r["multi_prompt"]]
            assert sum(int(s["duration"]) for s in shots) == r["duration"] == int(body["duration"])
        else:
            assert "multi_prompt" not in body and body["prompt"]


def test_images_are_shown_by_path_and_sha256(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(repo_root, capsys, "--provider", "runcomfy")
    first = data["requests"][0]
    assert first["provider"] == "runcomfy" and first["body"]["prompt"] == first["prompt"]
    start = [v for v in first["body"].values() if isinstance(v, dict) and v.get("path") == "assets/deck.png"]
    digest = hashlib.sha256((repo_root / "configs/assets/deck.png").read_bytes()).hexdigest()
    assert start == [{"path": "assets/deck.png", "sha256": digest}]
    chained = data["requests"][1]
    assert {"path": "<last frame of segment 0>", "sha256": None} in chained["body"].values()


def test_a_missing_adapter_leaves_the_body_null_and_says_why(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> bodies.BodyBuilder:
        raise ImportError("No module named 'pipeline.providers.fal_wire'")

    monkeypatch.setitem(bodies._REGISTRY, "fal", missing)
    loaded = load_script(repo_root / "configs/long-form-story.yaml")
    plan = build_plan(loaded.script, provider="fal")
    data = plan_to_dict(plan)
    add_bodies(data["requests"], plan.requests, loaded.base_dir)
    assert all(r["body"] is None for r in data["requests"])
    assert "the fal adapter cannot build request bodies here" in data["requests"][0]["body_error"]


def test_plan_refuses_a_provider_it_does_not_know(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--provider", "replicate"])
        == EXIT_USAGE
    )
    assert "'replicate' is not one of 'sandbox', 'runcomfy', 'fal', 'kling'" in capsys.readouterr().err
