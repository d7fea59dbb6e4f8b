"""A job's identity takes images by content, never by the URL they were uploaded to."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.planning.plan import build_plan
from pipeline.render.job import JobResult, image_identity, job_body
from pipeline.script.loader import load_script

from .test_engine_fake import req


def test_image_identity(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    assert image_identity(None) is None
    assert image_identity("https://x.invalid/a.png") == "https://x.invalid/a.png"
    assert image_identity(str(image)) == "sha256:" + hashlib.sha256(b"png").hexdigest()


def test_job_body_changes_with_the_image_content_only(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"one")
    request = req(0)
    first = job_body(request, str(image), None)
    moved = tmp_path / "b.png"
    image.rename(moved)
    assert job_body(request, str(moved), None) == first  # the same picture elsewhere
    moved.write_bytes(b"two")
    assert job_body(request, str(moved), None) != first
    assert first["prompt"] == request.prompt and first["end_image"] is None


def test_a_result_is_ok_only_with_a_clip() -> None:
    assert not JobResult(req(0), "failed", error="x").ok


def test_a_jobs_identity_is_unchanged_since_runs_were_first_resumed(repo_root: Path) -> None:
    """Resuming a run written by an earlier version must find its jobs: the body is pinned."""
    request = build_plan(load_script(repo_root / "configs/weekly-campaign.yaml").script).requests[0]
    spec = request.spec()
    assert job_body(request, None, None) == {
        "model_id": spec.model_id,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "duration": spec.duration,
        "aspect_ratio": spec.aspect_ratio,
        "cfg_scale": spec.cfg_scale,
        "generate_audio": spec.generate_audio,
        "seed": spec.seed,
        "start_image": None,
        "end_image": None,
    }
