"""fal.ai's contract, fact by fact, each with the page or client file it was read from.

Sources (read 2026-11-30):

- [T2V] https://fal.ai/models/fal-ai/kling-video/v3/standard/text-to-video/llms.txt
- [PRO] https://fal.ai/docs/model-api-reference/video-generation-api/kling-video-v3-pro
- [I2V] https://fal.ai/explore/image-to-video-apis ("Kling 3.0 Pro takes start_image_url")
- [VOICE] https://fal.ai/models/fal-ai/kling-video/create-voice/llms.txt
- [CLIENT] fal-ai/fal projects/fal_client/src/fal_client/client.py
- [QUEUE] https://docs.fal.ai/documentation/model-apis/inference/queue and
  https://fal.ai/docs/inference-api/queue/cancel
- [LOCKED] fal-ai/fal issues #1147, #1162 (403 "User is locked. Reason: Exhausted balance")

Facts the sources leave open are FalSettings fields marked *open* (README "fal.ai").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.capabilities import capabilities_for
from pipeline.errors import NoBalance, RateLimited
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier, provider_request_cost
from pipeline.providers import fal_wire
from pipeline.providers.fal import FalProvider
from pipeline.providers.fal_settings import (
    DEFAULT_CDN_DOMAINS,
    DEFAULT_QUEUE_URL,
    DEFAULT_VOICE_APP,
    FalSettings,
)
from tests.pipeline.providers.conftest import run

SETTINGS = FalSettings(key=SecretStr("k"))


def spec(**kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {"tier": Tier.STANDARD, "prompt": "a kite", "duration": 5}
    values.update(kw)
    return GenerationSpec(**values)


def test_apps_and_queue_paths() -> None:
    # [T2V] Model ID fal-ai/kling-video/v3/standard/text-to-video; [CLIENT] QUEUE_URL_FORMAT is
    # https://queue.fal.run/ and submit POSTs to QUEUE_URL_FORMAT + application.
    assert DEFAULT_QUEUE_URL == "https://queue.fal.run"
    assert fal_wire.app_id(SETTINGS, spec()) == "fal-ai/kling-video/v3/standard/text-to-video"
    assert fal_wire.app_id(SETTINGS, spec(tier=Tier.PRO, start_image_url="https://x/a.png")) == (
        "fal-ai/kling-video/v3/pro/image-to-video"
    )
    # [CLIENT] AsyncRequestHandle.from_request_id: {queue}/{owner}/{alias}/requests/{id}, no
    # endpoint path; [QUEUE] cancel page: "Do not add the endpoint path".
    assert fal_wire.requests_base(SETTINGS, "fal-ai/kling-video/v3/pro/text-to-video") == (
        "https://queue.fal.run/fal-ai/kling-video/requests"
    )


def test_prompt_or_multi_prompt_and_duration_as_a_string() -> None:
    # [T2V] "Either prompt or multi_prompt must be provided, but not both"; duration is a
    # DurationEnum given as "5" in [PRO]'s example, with shot_type "customize".
    prose = fal_wire.build_body(spec(), SETTINGS)
    assert prose["prompt"] == "a kite" and "multi_prompt" not in prose and prose["duration"] == "5"
    board = fal_wire.build_body(spec(shots=(ShotPrompt("a", 2), ShotPrompt("b", 3))), SETTINGS)
    assert "prompt" not in board and board["shot_type"] == "customize"
    assert [s["duration"] for s in board["multi_prompt"]] == ["2", "3"]  # *open*: setting
    ints = FalSettings(key=SecretStr("k"), shot_duration_as_string=False)
    assert [
        s["duration"] for s in fal_wire.build_body(spec(shots=(ShotPrompt("a", 5),)), ints)["multi_prompt"]
    ] == [5]


def test_elements_are_referenced_as_element_n() -> None:
    # [PRO] "Elements (characters/objects) … Reference in prompt as @Element1, @Element2, etc.",
    # each an image set: a frontal image plus reference images.
    leo = ElementRef("leo", "a fisherman", ("https://x/leo1.png", "https://x/leo2.png"))
    mara = ElementRef("mara", "a sailor", ("https://x/mara.png",))
    body = fal_wire.build_body(
        spec(start_image_url="https://x/s.png", prompt="@mara greets @leo", elements=(leo, mara)), SETTINGS
    )
    assert body["prompt"] == "@Element2 greets @Element1"
    assert body["elements"] == [
        {"frontal_image_url": "https://x/leo1.png", "reference_image_urls": ["https://x/leo2.png"]},
        {"frontal_image_url": "https://x/mara.png"},
    ]


def test_image_to_video_fields() -> None:
    # [I2V] "Kling 3.0 Pro takes start_image_url"; [PRO] end image as end_image_url.
    body = fal_wire.build_body(
        spec(start_image_url="https://x/s.png", end_image_url="https://x/e.png"), SETTINGS
    )
    assert body["start_image_url"] == "https://x/s.png" and body["end_image_url"] == "https://x/e.png"
    assert "aspect_ratio" not in body
    assert fal_wire.build_body(spec(), SETTINGS)["aspect_ratio"] == "16:9"


def test_voices_are_created_by_their_own_app() -> None:
    # [VOICE] fal-ai/kling-video/create-voice: input voice_url (5–30 s), output voice_id.
    assert DEFAULT_VOICE_APP == "fal-ai/kling-video/create-voice"
    mara = ElementRef("mara", "a sailor", ("https://x/m.png",), voice="v.wav", voice_id="829877809978941442")
    body = fal_wire.build_body(spec(generate_audio=True, prompt="@mara sings", elements=(mara,)), SETTINGS)
    # *open*: the field and the prompt token (Kling's own <<<voice_1>>> form) are settings.
    assert body["voice_ids"] == ["829877809978941442"]
    assert body["prompt"] == "@Element1 <<<voice_1>>> sings"


def test_prices_and_the_voice_control_rate() -> None:
    # [T2V] "$0.084 (audio off) or $0.126 (audio on), if voice control is used … $0.154.
    # For example, a 5s video with audio on and voice control will cost $0.77".
    assert provider_request_cost("fal", Tier.STANDARD, 5, audio=True, voice=True) == Decimal("0.770")
    assert provider_request_cost("fal", Tier.STANDARD, 5, audio=False) == Decimal("0.420")
    caps = capabilities_for("fal")
    assert caps.source.startswith("https://fal.ai/models/fal-ai/kling-video/v3/")


def test_status_words_and_result_shape() -> None:
    # [CLIENT] _parse_status: IN_QUEUE, IN_PROGRESS, COMPLETED; [T2V] output {"video": File}.
    assert (fal_wire.IN_QUEUE, fal_wire.IN_PROGRESS, fal_wire.COMPLETED) == (
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",
    )
    assert (
        fal_wire.video_url({"video": {"url": "https://v3.fal.media/f.mp4"}}) == "https://v3.fal.media/f.mp4"
    )
    # [CLIENT] CDN_URL = "https://v3.fal.media": results come from fal.media hosts.
    assert DEFAULT_CDN_DOMAINS == ("fal.media",)


def test_cancel_is_a_put_with_fal_answers() -> None:
    # [CLIENT] cancel(): PUT cancel_url; [QUEUE] answers CANCELLATION_REQUESTED, ALREADY_COMPLETED.
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        if request.method == "PUT":
            return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
        return httpx.Response(200, json={"status": "IN_QUEUE"})

    fal = FalProvider(SETTINGS, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    assert run(fal.cancel("r1")).cancelled
    assert methods == ["GET", "PUT"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        # [LOCKED] the account lock on an exhausted balance is a 403 with this detail.
        (
            403,
            {
                "detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
            },
            NoBalance,
        ),
        # [CLIENT] RETRY_CODES include 429: a refusal, safe to retry.
        (429, {"detail": "rate limited"}, RateLimited),
    ],
)
def test_error_bodies_carry_detail(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    # [CLIENT] _raise_for_status reads response.json()["detail"].
    found = fal_wire.error_from_response(httpx.Response(status, json=body), operation="submit")
    assert isinstance(found, error) and str(body["detail"])[:20] in str(found)
