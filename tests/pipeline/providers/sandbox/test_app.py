"""Contract tests: the adapter against the sandbox over real loopback HTTP, every path and fault."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import (
    AuthError,
    BadRequest,
    DownloadIncomplete,
    GenerationFailed,
    NoBalance,
    RateLimited,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)
from pipeline.media.probe import probe
from pipeline.media.run import ffmpeg
from pipeline.pricing import Tier
from pipeline.providers.base import JobState
from pipeline.providers.jobs import JobOutcome, run_job
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.render import RenderJob, frame_size, render
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.providers.selection import upload_to_sandbox

FAST = 0.005


@pytest.fixture
def faulty() -> Any:
    """A private sandbox (fresh ledger) with the given faults: ``faulty(FaultConfig(...), **config)``."""
    stack: list[Any] = []

    def start(faults: FaultConfig | None = None, **config: Any) -> SandboxHandle:
        values: dict[str, Any] = {"latency_scale": FAST, "render_scale": 0.1, **config}
        cm = run_sandbox(SandboxConfig(faults=faults or FaultConfig(), **values))
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def post(handle: SandboxHandle, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{handle.base_url}{path}", json=body)


# --- happy path and documented shapes ---------------------------------------------------------


def test_full_job_matches_the_request(
    sandbox: SandboxHandle, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    spec = make_spec(generate_audio=True, aspect_ratio="9:16")
    report = call(sandbox, lambda p: run_job(p, spec, tmp_path / "a.mp4", policy=policy))
    assert report.outcome is JobOutcome.COMPLETED, report.error
    assert report.clip is not None and report.result is not None
    assert (report.clip.width, report.clip.height) == frame_size(Tier.STANDARD, "9:16", 0.1)
    assert report.clip.has_audio and report.clip.duration == pytest.approx(3.0, abs=0.05)
    assert str(report.result.cost_usd) == "0.378"  # 3 s × 0.126 with audio
    (entry,) = [e for e in sandbox.ledger() if e.request_id == report.request_id]
    assert entry.charged and entry.charge_count == 1 and entry.cost_usd == report.result.cost_usd


def test_raw_answers_have_the_documented_shape(sandbox: SandboxHandle) -> None:
    answer = post(sandbox, "/models/kling/kling-3.0/pro/text-to-video", {"prompt": "x", "duration": 3})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    rid = body["request_id"]
    assert body["status_url"] == f"{sandbox.base_url}/requests/{rid}/status"
    status = httpx.get(body["status_url"]).json()
    assert status["request_id"] == rid and status["status"] in {"in_queue", "in_progress", "completed"}
    result = httpx.get(body["result_url"], params={"include_cost": "true"}).json()
    assert {"request_id", "status", "output", "created_at", "finished_at", "error", "cost"} <= set(result)
    info = httpx.get(f"{sandbox.base_url}/models/kling/kling-3.0/pro/text-to-video").json()
    assert info["base_price_usd"] == 0.112 and info["price_unit"] == "second"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/models/kling/kling-3.0/standard/text-to-video", {"prompt": "x", "duration": 2}, "duration"),
        ("/models/kling/kling-3.0/standard/text-to-video", {"prompt": "x", "duration": 16}, "duration"),
        (
            "/models/kling/kling-3.0/standard/text-to-video",
            {"prompt": "x", "aspect_ratio": "5:4"},
            "aspect_ratio",
        ),
        ("/models/kling/kling-3.0/standard/text-to-video", {"duration": 5}, "prompt"),
        ("/models/kling/kling-3.0/pro/image-to-video", {"prompt": "x"}, "start_image_url"),
        (
            "/models/kling/kling-3.0/pro/image-to-video",
            {"prompt": "x", "image_url": "https://elsewhere.example/a.png"},
            "start_image_url",
        ),
    ],
)
def test_bad_input_is_422(sandbox: SandboxHandle, path: str, body: dict[str, Any], field: str) -> None:
    answer = post(sandbox, path, body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error_code"] == 422001
    assert any(problem["loc"] == ["body", field] for problem in error["detail"])


def test_adapter_maps_422_unknown_model_and_unknown_id(
    sandbox: SandboxHandle, call: Any, make_spec: Any
) -> None:
    with pytest.raises(BadRequest) as info:
        call(sandbox, lambda p: p.submit(make_spec(duration=20)))
    assert info.value.status_code == 422 and info.value.error_code == 422001
    answer = post(sandbox, "/models/kling/kling-9/pro/text-to-video", {"prompt": "x"})
    assert answer.status_code == 400 and answer.json()["error_code"] == 400001
    with pytest.raises(BadRequest) as missing:
        call(sandbox, lambda p: p.status("no-such-request"))
    assert missing.value.error_code == 404001


def test_start_image_shows_in_the_first_frames(
    sandbox: SandboxHandle, make_provider: Any, make_spec: Any, policy: Any, png: Any, tmp_path: Path
) -> None:
    image = png(tmp_path / "red.png", "red", "320x180")  # 16:9: fills the frame, no bars

    async def scenario() -> Any:
        async with httpx.AsyncClient() as client:
            url = await upload_to_sandbox(client, sandbox.base_url, image)
        spec = make_spec(start_image_url=url, tier=Tier.PRO)
        async with make_provider(sandbox) as provider:
            return await run_job(provider, spec, tmp_path / "i2v.mp4", policy=policy)

    report = asyncio.run(scenario())
    assert report.outcome is JobOutcome.COMPLETED, report.error
    assert report.submission is not None and report.submission.model_id.endswith("image-to-video")
    first = tmp_path / "first.rgb"
    ffmpeg(
        [
            "-i",
            str(tmp_path / "i2v.mp4"),
            "-frames:v",
            "1",
            "-vf",
            "scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-y",
            str(first),
        ]
    )
    r, g, b = first.read_bytes()[:3]
    assert r > 200 and g < 60 and b < 60


def test_same_inputs_and_seed_give_the_same_file(tmp_path: Path) -> None:
    width, height = frame_size(Tier.STANDARD, "1:1", 0.1)
    job = RenderJob("0badc0de", Tier.STANDARD, "1:1", 3, True, 9, "Shot 1: a. Shot 2: b", width, height)
    a = render(job, tmp_path / "a.mp4").read_bytes()
    b = render(job, tmp_path / "b.mp4").read_bytes()
    c = render(dataclasses.replace(job, seed=10), tmp_path / "c.mp4").read_bytes()
    assert a == b and a != c


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tier", "aspect", "size"),
    [
        (Tier.STANDARD, "16:9", (1920, 1080)),
        (Tier.K4, "16:9", (3840, 2160)),
        (Tier.PRO, "9:16", (1080, 1920)),
    ],
)
def test_full_scale_resolution(tmp_path: Path, tier: Tier, aspect: str, size: tuple[int, int]) -> None:
    width, height = frame_size(tier, aspect)
    job = RenderJob("feedface", tier, aspect, 3, False, 1, "a", width, height)
    info = probe(render(job, tmp_path / "full.mp4"))
    assert info.video is not None and (info.video.width, info.video.height) == size
    assert info.video.codec_name == "h264" and info.audio is None
    assert info.duration == pytest.approx(3.0, abs=0.05)


# --- errors and limits ------------------------------------------------------------------------


def test_auth(faulty: Any, call: Any, make_spec: Any) -> None:
    handle = faulty(token="right")
    with pytest.raises(AuthError) as missing:
        call(handle, lambda p: p.submit(make_spec()))
    assert missing.value.status_code == 401
    with pytest.raises(AuthError) as wrong:
        call(handle, lambda p: p.submit(make_spec()), token="wrong")
    assert wrong.value.status_code == 403 and wrong.value.error_code == 403001
    assert call(handle, lambda p: p.submit(make_spec()), token="right").request_id


def test_no_balance(faulty: Any, call: Any, make_spec: Any) -> None:
    handle = faulty(balance_usd="0.30")

    async def twice(provider: Any) -> None:
        await provider.submit(make_spec())  # 0.252
        await provider.submit(make_spec())

    with pytest.raises(NoBalance) as info:
        call(handle, twice)
    assert info.value.error_code == 400002 and info.value.exit_code == 4
    assert len(handle.ledger()) == 1


def test_in_flight_limit_answers_429_with_retry_after(faulty: Any) -> None:
    handle = faulty(max_in_flight=1, latency_scale=1.0)
    path = "/models/kling/kling-3.0/standard/text-to-video"
    assert post(handle, path, {"prompt": "a", "duration": 3}).status_code == 200
    refused = post(handle, path, {"prompt": "b", "duration": 3})
    assert refused.status_code == 429 and refused.json()["error_code"] == 429001
    assert float(refused.headers["Retry-After"]) >= 1 and int(refused.headers["retry-after-ms"]) > 0


def test_submit_rate_limit_is_waited_out(faulty: Any, call: Any, make_spec: Any) -> None:
    import stamina

    handle = faulty(submit_rate_per_s=20.0, submit_burst=1)

    async def two(provider: Any) -> tuple[Any, Any]:
        return await provider.submit(make_spec(prompt="one")), await provider.submit(make_spec(prompt="two"))

    with stamina.set_testing(False):  # really wait the Retry-After the sandbox asks for
        first, second = call(handle, two)
    assert first.request_id != second.request_id
    assert len(handle.ledger()) == 2


def test_cancel_queued_and_running(faulty: Any, call: Any, make_spec: Any) -> None:
    handle = faulty(latency_scale=1.0, slots=1)  # queue wait of seconds: time to cancel

    async def steps(provider: Any) -> tuple[Any, Any, Any]:
        queued = await provider.submit(make_spec(prompt="queued"))
        outcome = await provider.cancel(queued.request_id)
        status = await provider.status(queued.request_id)
        return outcome, status, await provider.cancel(queued.request_id)

    outcome, status, again = call(handle, steps)
    assert outcome.cancelled and not outcome.still_billing and outcome.state is JobState.CANCELLED
    assert status.state is JobState.CANCELLED
    assert not again.cancelled and not again.still_billing
    (entry,) = handle.ledger()
    assert entry.status == "cancelled" and not entry.charged


def test_running_job_is_not_cancellable_and_still_bills(
    sandbox: SandboxHandle, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    async def steps(provider: Any) -> Any:
        report = await run_job(provider, make_spec(prompt="done already"), tmp_path / "d.mp4", policy=policy)
        assert report.request_id is not None
        return await provider.cancel(report.request_id)

    outcome = call(sandbox, steps)
    assert not outcome.cancelled and outcome.still_billing and outcome.raw_outcome == "not_cancellable"


# --- faults -----------------------------------------------------------------------------------


def test_dropped_submit_is_unknown_and_never_resubmitted(
    faulty: Any, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    handle = faulty(FaultConfig(drop=1.0))
    report = call(handle, lambda p: run_job(p, make_spec(), tmp_path / "x.mp4", policy=policy))
    assert report.outcome is JobOutcome.UNKNOWN and isinstance(report.error, SubmitOutcomeUnknown)
    assert len(handle.ledger()) == 1  # the request exists (and will bill): the answer was lost


def test_resubmitting_unknown_is_an_explicit_opt_in(
    faulty: Any, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    handle = faulty(FaultConfig(drop=1.0))
    report = call(
        handle, lambda p: run_job(p, make_spec(), tmp_path / "x.mp4", policy=policy, resubmit_unknown=True)
    )
    assert report.abandoned_unknown == 1 and report.outcome is JobOutcome.UNKNOWN
    assert len(handle.ledger()) == 2


def test_5xx_on_submit_is_unknown_and_created_nothing(faulty: Any, call: Any, make_spec: Any) -> None:
    handle = faulty(FaultConfig(server_error=1.0))
    with pytest.raises(SubmitOutcomeUnknown) as info:
        call(handle, lambda p: p.submit(make_spec()))
    assert info.value.status_code in {500, 502, 503}
    assert handle.ledger() == []


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (FaultConfig(server_error=1.0), UpstreamError),
        (FaultConfig(error_in_200=1.0), UpstreamError),
        (FaultConfig(drop=1.0), TransportError),
        (FaultConfig(rate_limit=1.0), RateLimited),
    ],
)
def test_free_calls_retry_then_surface_the_fault(
    faulty: Any, call: Any, make_spec: Any, faults: FaultConfig, kind: type[Exception]
) -> None:
    handle = faulty()
    seen: dict[str, Any] = {}

    async def steps(provider: Any) -> None:
        submission = await provider.submit(make_spec())
        seen["counter"], seen["id"] = provider.calls, submission.request_id
        handle.set_faults(faults)
        await provider.status(submission.request_id)

    with pytest.raises(kind):
        call(handle, steps, max_attempts=3)
    assert seen["counter"].get(seen["id"], "status") == 3


def test_failed_generation_is_not_charged(
    faulty: Any, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    handle = faulty(FaultConfig(fail=1.0))
    report = call(handle, lambda p: run_job(p, make_spec(), tmp_path / "f.mp4", policy=policy))
    assert report.outcome is JobOutcome.FAILED and isinstance(report.error, GenerationFailed)
    assert "injected" in str(report.error)
    (entry,) = handle.ledger()
    assert entry.status == "failed" and not entry.charged


@pytest.mark.parametrize(
    ("faults", "kind"),
    [(FaultConfig(truncate=1.0), TransportError), (FaultConfig(corrupt=1.0), DownloadIncomplete)],
)
def test_bad_downloads_are_retried_then_reported(
    faulty: Any,
    call: Any,
    make_spec: Any,
    policy: Any,
    tmp_path: Path,
    faults: FaultConfig,
    kind: type[Exception],
) -> None:
    handle = faulty(faults)
    report = call(handle, lambda p: run_job(p, make_spec(), tmp_path / "t.mp4", policy=policy))
    assert report.outcome is JobOutcome.FAILED and isinstance(report.error, kind)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    (entry,) = handle.ledger()
    assert entry.charged  # the generation itself succeeded and was paid once


def test_slow_download_still_arrives(
    faulty: Any, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    handle = faulty(FaultConfig(slow=1.0, slow_delay_s=0.01))
    report = call(handle, lambda p: run_job(p, make_spec(), tmp_path / "s.mp4", policy=policy))
    assert report.outcome is JobOutcome.COMPLETED, report.error


def test_output_videos_list_is_followed(
    faulty: Any, call: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    handle = faulty(output_field="videos")
    report = call(handle, lambda p: run_job(p, make_spec(), tmp_path / "v.mp4", policy=policy))
    assert report.outcome is JobOutcome.COMPLETED, report.error


def test_ledger_endpoint_matches_the_file(sandbox: SandboxHandle) -> None:
    body = httpx.get(f"{sandbox.base_url}/sandbox/ledger").json()
    assert [e["request_id"] for e in body["entries"]] == [e.request_id for e in sandbox.ledger()]
    assert Path(body["file"]).is_file()


# --- the lenient sandbox's images, model info and request log ---------------------------------


def test_lenient_sandbox_takes_uploads_and_data_uris_and_logs_them(
    faulty: Any, png: Any, tmp_path: Path
) -> None:
    import base64
    import hashlib

    handle = faulty()
    image = png(tmp_path / "g.png", "green", "64x36").read_bytes()
    uploaded = httpx.post(f"{handle.base_url}/sandbox/uploads", content=image).json()["url"]
    path = "/models/kling/kling-3.0/pro/image-to-video"
    inline = f"data:image/png;base64,{base64.b64encode(image).decode()}"
    by_upload = post(handle, path, {"prompt": "a", "image_url": uploaded, "aspect_ratio": "1:1", "extra": 1})
    by_data = post(handle, path, {"prompt": "b", "start_image_url": inline})
    refused = post(handle, path, {"prompt": "c", "start_image_url": "https://elsewhere.example/a.png"})
    assert (by_upload.status_code, by_data.status_code, refused.status_code) == (200, 200, 422)
    log = httpx.get(f"{handle.base_url}/sandbox/requests").json()["requests"]
    assert [(e["refused"], e["status"]) for e in log] == [(False, 200), (False, 200), (True, 422)]
    assert log[0]["images"]["image_url"]["kind"] == "upload" and log[0]["fields"] == [
        "aspect_ratio",
        "extra",
        "image_url",
        "prompt",
    ]
    assert log[1]["images"]["start_image_url"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert log[1]["request_id"] == by_data.json()["request_id"]
    assert log[2]["images"]["start_image_url"]["kind"] == "https" and log[2]["request_id"] is None
    # The job keeps a digest of a data URI's picture, not the (megabytes of) URI itself.
    job = handle.app.state.jobs[log[1]["request_id"]]
    assert job.inp.start_image_url == f"data:image/png;sha256,{hashlib.sha256(image).hexdigest()}"


def test_lenient_model_info_keeps_the_official_shape(sandbox: SandboxHandle) -> None:
    info = httpx.get(f"{sandbox.base_url}/models/kling/kling-3.0/standard/image-to-video").json()
    assert {"model_id", "display_name", "categories", "base_price_usd", "price_unit", "input_schema"} <= set(
        info
    )
    assert info["input_schema"]["additionalProperties"] is True  # extra fields are ignored here
    assert "aspect_ratio" in info["input_schema"]["properties"]
    listing = httpx.get(f"{sandbox.base_url}/models").json()
    assert listing["total"] == 6
