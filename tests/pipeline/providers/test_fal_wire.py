"""fal's wire format: the body for every kind of request, and every error body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import AuthError, BadRequest, NoBalance, RateLimited, TransportError, UpstreamError
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers import fal_wire
from pipeline.providers.fal_settings import FalSettings

SETTINGS = FalSettings(key=SecretStr("k"))


def spec(**kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {"tier": Tier.PRO, "prompt": "a kite", "duration": 5}
    values.update(kw)
    return GenerationSpec(**values)


def test_an_element_without_images_is_named_by_its_description() -> None:
    ghost = ElementRef("ghost", "a pale figure")
    body = fal_wire.build_body(spec(prompt="@ghost and @stranger", elements=(ghost,)), SETTINGS)
    assert body["prompt"] == "a pale figure and @stranger"  # unknown mentions stay as written
    assert "elements" not in body


def test_voices_off_leaves_the_voice_out() -> None:
    mara = ElementRef("mara", "a sailor", ("https://x/m.png",), voice_id="42")
    quiet = FalSettings(key=SecretStr("k"), voices=False)
    body = fal_wire.build_body(spec(prompt="@mara sings", elements=(mara,)), quiet)
    assert body["prompt"] == "@Element1 sings" and "voice_ids" not in body


def test_a_voice_not_yet_created_shows_its_source() -> None:
    mara = ElementRef("mara", "a sailor", ("https://x/m.png",), voice="voices/mara.wav")
    body = fal_wire.build_body(spec(shots=(ShotPrompt("@mara", 5),), elements=(mara,)), SETTINGS)
    assert body["voice_ids"] == ["voices/mara.wav"]


def test_optional_fields() -> None:
    body = fal_wire.build_body(spec(negative_prompt="blur", seed=7, cfg_scale=0.7), SETTINGS)
    assert body["negative_prompt"] == "blur" and body["cfg_scale"] == 0.7
    assert "seed" not in body  # fal's Kling 3.0 pages list no seed


@pytest.mark.parametrize(
    ("status", "error"),
    [(402, NoBalance), (401, AuthError), (408, TransportError), (404, BadRequest), (500, UpstreamError)],
)
def test_statuses(status: int, error: type[Exception]) -> None:
    found = fal_wire.error_from_response(httpx.Response(status, text="nope"), operation="x", request_id="r")
    assert isinstance(found, error) and getattr(found, "request_id", None) == "r"
    assert fal_wire.error_from_response(httpx.Response(200, json={}), operation="x") is None


def test_detail_shapes() -> None:
    problems = {"detail": [{"loc": ["body", "multi_prompt", 0, "duration"], "msg": "bad"}, "odd"]}
    assert fal_wire.detail_text(problems) == "multi_prompt.0.duration: bad; odd"
    assert fal_wire.detail_text({"detail": None}) == "" and fal_wire.detail_text([1]) == ""
    long = fal_wire.error_from_response(httpx.Response(400, json={"detail": "x" * 1000}), operation="x")
    assert long is not None and "truncated" in str(long)
    limited = fal_wire.error_from_response(httpx.Response(429, headers={"Retry-After": "3"}), operation="x")
    assert isinstance(limited, RateLimited) and limited.retry_after == 3


def test_video_url_shapes() -> None:
    assert fal_wire.video_url({"video": "https://v3.fal.media/a.mp4"}) == "https://v3.fal.media/a.mp4"
    assert fal_wire.video_url({"video": {"file_name": "a.mp4"}}) is None
    assert fal_wire.video_url({}) is None
