"""The sandbox's fal dialect, driven by the real fal adapter over loopback."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import AuthError, BadRequest, NoBalance
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers.base import JobState
from pipeline.providers.fal import FalProvider
from pipeline.providers.fal_settings import FalSettings
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from tests.pipeline.providers.conftest import FAST, run, solid_png

TOKEN = "fal-sandbox-key"


@pytest.fixture(scope="module")
def fal_sandbox() -> Iterator[SandboxHandle]:
    config = SandboxConfig(
        latency_scale=FAST, render_scale=0.1, token=SecretStr(TOKEN), balance_usd=Decimal(50)
    )
    with run_sandbox(config) as handle:
        yield handle


def adapter(handle: SandboxHandle, key: str | None = TOKEN) -> FalProvider:
    settings = FalSettings(key=SecretStr(key) if key else None, queue_url=handle.origin, max_attempts=3)
    return FalProvider(settings, download_origins=(handle.origin,))


def submit(handle: SandboxHandle, spec: GenerationSpec, key: str | None = TOKEN) -> str:
    """Submit ``spec`` with a fresh adapter (closed afterwards); the request id."""

    async def go() -> str:
        fal = adapter(handle, key)
        try:
            return (await fal.submit(spec)).request_id
        finally:
            await fal.aclose()

    return run(go())


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


async def finish(fal: FalProvider, spec: GenerationSpec, dest: Path) -> tuple[str, Any]:
    try:
        sub = await fal.submit(spec)
        for _ in range(600):
            if (await fal.status(sub.request_id)).state.is_terminal:
                break
            await asyncio.sleep(0.02)
        res = await fal.result(sub.request_id)
        assert res.state is JobState.COMPLETED, res.error
        assert res.video_url is not None
        return sub.request_id, await fal.download(res.video_url, dest, spec)
    finally:
        await fal.aclose()


def test_a_storyboard_with_elements_and_a_voice(fal_sandbox: SandboxHandle, tmp_path: Path) -> None:
    red, blue = solid_png(tmp_path / "r.png", "red"), solid_png(tmp_path / "b.png", "blue")
    voice = tmp_path / "mara.wav"
    voice.write_bytes(b"RIFF....WAVEfmt ")
    spec = GenerationSpec(
        tier=Tier.STANDARD,
        prompt="unused",
        duration=5,
        generate_audio=True,
        start_image_url=data_uri(red),
        shots=(ShotPrompt("@leo pulls a rope", 2), ShotPrompt('@mara says: "hold on"', 3)),
        elements=(
            ElementRef("leo", "a fisherman", (data_uri(blue),)),
            ElementRef("mara", "a sailor", (data_uri(red), data_uri(blue)), voice=str(voice)),
        ),
    )
    rid, clip = run(finish(adapter(fal_sandbox), spec, tmp_path / "clip.mp4"))
    assert abs(clip.duration - 5) < 0.3 and clip.has_audio
    entry = next(e for e in fal_sandbox.requests() if e["request_id"] == rid)
    assert entry["dialect"] == "fal" and entry["shots"] == [2, 3] and entry["voices"] == 1
    assert [[i["kind"] for i in images] for images in entry["elements"]] == [
        ["data-uri"],
        ["data-uri", "data-uri"],
    ]
    assert "data:" not in str(entry)  # summaries only, never a URI
    ledger = next(e for e in fal_sandbox.ledger() if e.request_id == rid)
    # fal's voice-control rate: 5 s × $0.154 (the standard text-to-video page).
    assert ledger.dialect == "fal" and ledger.cost_usd == Decimal("0.770") and ledger.charged


def test_prose_prompt_without_key_or_with_a_wrong_one(fal_sandbox: SandboxHandle) -> None:
    spec = GenerationSpec(tier=Tier.PRO, prompt="a kite", duration=3)
    with pytest.raises(AuthError):
        submit(fal_sandbox, spec, key=None)
    with pytest.raises(AuthError):
        submit(fal_sandbox, spec, key="wrong")


def test_validation_lists_every_problem(fal_sandbox: SandboxHandle) -> None:
    body = {
        "prompt": "x",
        "multi_prompt": [{"prompt": "a", "duration": "2"}],
        "duration": 5,
        "elements": "no",
    }
    answer = httpx.post(
        f"{fal_sandbox.origin}/fal-ai/kling-video/v3/pro/text-to-video",
        json=body,
        headers={"Authorization": f"Key {TOKEN}"},
    )
    assert answer.status_code == 422
    fields = {tuple(p["loc"][1:2]) for p in answer.json()["detail"]}
    assert {("duration",), ("prompt",), ("elements",)} <= fields
    spec = GenerationSpec(tier=Tier.PRO, prompt="@Element3 waves", duration=3)
    with pytest.raises(BadRequest, match="Element3"):
        submit(fal_sandbox, spec)


def test_no_balance_is_fal_s_account_lock(tmp_path: Path) -> None:
    config = SandboxConfig(
        latency_scale=FAST, render_scale=0.1, token=SecretStr(TOKEN), balance_usd=Decimal("0.10")
    )
    with run_sandbox(config) as handle, pytest.raises(NoBalance):
        submit(handle, GenerationSpec(tier=Tier.PRO, prompt="a kite", duration=3))


def test_cancel_a_queued_request(tmp_path: Path) -> None:
    config = SandboxConfig(latency_scale=5.0, render_scale=0.1, slots=1, token=SecretStr(TOKEN))
    with run_sandbox(config) as handle:

        async def go() -> tuple[bool, bool, str]:
            fal = adapter(handle)
            try:
                sub = await fal.submit(GenerationSpec(tier=Tier.STANDARD, prompt="a kite", duration=3))
                outcome = await fal.cancel(sub.request_id)
                raw = (await fal.status(sub.request_id)).raw_status
            finally:
                await fal.aclose()
            return outcome.cancelled, outcome.still_billing, raw

        assert run(go()) == (True, False, "COMPLETED")
        assert [e.status for e in handle.ledger()] == ["cancelled"]
