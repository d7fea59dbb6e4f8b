"""Kling wire mechanics: token renewal, id shortening, images, answers that cannot be read."""

from __future__ import annotations

import httpx
import jwt
import pytest
from pydantic import SecretStr

from pipeline.errors import BadRequest, ConfigError, NoBalance, TransportError, UpstreamError
from pipeline.generation import GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers import kling_wire as kw
from pipeline.providers.wire import UnreadableAnswer

SECRET = "z" * 40


def test_the_token_is_kept_until_close_to_expiry_then_signed_anew() -> None:
    auth = kw.KlingJwtAuth(SecretStr("ak"), SecretStr(SECRET), ttl_s=1800)
    first = auth.token()
    assert auth.token() == first
    auth._renew_at = 0.0  # as if the renewal point had passed
    renewed = auth.token()
    assert jwt.decode(renewed, SECRET, algorithms=["HS256"])["iss"] == "ak"
    request = next(auth.auth_flow(httpx.Request("GET", "https://api.klingai.com/v1/videos/text2video/1")))
    assert request.headers["authorization"] == f"Bearer {renewed}"
    assert SECRET not in repr(auth) and "ak" not in repr(auth).replace("access_key", "")


def test_short_external_ids_go_unchanged_long_ones_shortened_deterministically() -> None:
    assert kw.external_task_id("job-1", 64) == "job-1"
    long = "run-" + "x" * 100 + "-1"
    short = kw.external_task_id(long, 40)
    assert len(short) == 40 and short == kw.external_task_id(long, 40)
    assert short != kw.external_task_id(long.replace("-1", "-2"), 40)  # another attempt, another id


def test_images_travel_as_urls_or_raw_base64() -> None:
    assert kw.image_value("https://example.com/a.png") == "https://example.com/a.png"
    assert kw.image_value("data:image/jpeg;base64,/9j/4AAQ") == "/9j/4AAQ"


def test_mentions_become_names_since_elements_travel_as_descriptions() -> None:
    spec = GenerationSpec(tier=Tier.STANDARD, prompt="@mara waves at @tom", duration=3)
    assert kw.build_body(spec, model_name="kling-v3")["prompt"] == "mara waves at tom"


def test_the_4k_tier_is_not_sold_on_this_api() -> None:
    spec = GenerationSpec(tier=Tier.K4, prompt="p", duration=3)
    assert any("std and pro" in p for p in kw.check_spec(spec))
    with pytest.raises(ConfigError, match="no 4k tier"):
        kw.build_body(spec, model_name="kling-v3")


def test_a_storyboard_within_the_limits_has_no_problems() -> None:
    shots = (ShotPrompt("a", 2), ShotPrompt("b", 3))
    assert kw.check_spec(GenerationSpec(tier=Tier.PRO, prompt="p", duration=5, shots=shots)) == []


def test_answers_without_a_task_cannot_be_read() -> None:
    with pytest.raises(UnreadableAnswer, match=r"no data\.task_id"):
        kw.task_of({"task_status": "submitted"}, "submit")
    with pytest.raises(UnreadableAnswer):
        kw.task_of(None, "submit")


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(200, text="<html>"), UnreadableAnswer),  # 200 but not Kling's JSON
        (httpx.Response(200, json={"code": 5000, "message": "busy"}), UpstreamError),
        (httpx.Response(402, text="pay"), NoBalance),
        (httpx.Response(408, text="slow"), TransportError),
        (httpx.Response(404, json={"code": 1203, "message": "no such task"}), BadRequest),
        (httpx.Response(502, text="bad gateway"), UpstreamError),
    ],
)
def test_answers_by_http_status_when_no_code_decides(
    response: httpx.Response, error: type[Exception]
) -> None:
    assert type(kw.error_of(response, operation="query")) is error


def test_only_a_duplicate_id_refusal_counts_as_a_duplicate() -> None:
    assert kw.is_duplicate(BadRequest("submit: HTTP 400 code 1201: external_task_id x already exists"))
    assert not kw.is_duplicate(BadRequest("submit: HTTP 400 code 1201: duration must be a string"))
    assert not kw.is_duplicate(UpstreamError("external_task_id x already exists"))
