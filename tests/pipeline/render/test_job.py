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


def test_native_elements_enter_the_identity_by_content_and_go_out_as_urls(repo_root: Path) -> None:
    import asyncio

    from pipeline.render.job import native_spec
    from pipeline.render.reuse import base_dir_local

    configs = repo_root / "configs"
    plan = build_plan(load_script(configs / "long-form-story.yaml").script, provider="fal")
    request = next(r for r in plan.requests if r.elements)
    local = base_dir_local(configs)
    body = job_body(request, None, None, local)
    digest = hashlib.sha256((configs / request.elements[0].images[0]).read_bytes()).hexdigest()
    assert body["elements"][0]["images"] == ["sha256:" + digest]

    async def upload(path: str) -> str:
        return "https://uploads.invalid/" + Path(path).name

    spec = asyncio.run(native_spec(request, "https://s.invalid/start.png", None, local, upload))
    assert [e.image_urls for e in spec.elements] == [
        ("https://uploads.invalid/" + Path(e.images[0]).name,) for e in request.elements
    ]
    assert spec.shots == request.shot_prompts


def test_a_fal_job_is_never_a_runcomfy_job(repo_root: Path) -> None:
    from pipeline.render.reuse import base_dir_local

    script = load_script(repo_root / "configs/weekly-campaign.yaml").script
    runcomfy, fal = (build_plan(script, provider=p).requests[0] for p in ("runcomfy", "fal"))
    local = base_dir_local(repo_root / "configs")
    assert "provider" not in job_body(runcomfy, None, None, local)
    assert job_body(fal, None, None, local)["provider"] == "fal"
