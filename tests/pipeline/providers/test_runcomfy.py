"""The RunComfy adapter against httpx.MockTransport: bodies, retries, the never-pay-twice rule."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    KlingflowError,
    RateLimited,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import JobState
from pipeline.providers.runcomfy import (
    NOT_SENT_ERRORS,
    RunComfyProvider,
    build_request_body,
    translate_httpx_error,
)
from pipeline.providers.settings import ProviderSettings
from pipeline.providers.wire import UnreadableAnswer

BASE = "https://model-api.runcomfy.net/v1"
TOKEN = "sk-test-secret-123"
SUBMITTED = {
    "request_id": "req-1",
    "status_url": f"{BASE}/requests/req-1/status",
    "result_url": f"{BASE}/requests/req-1/result",
    "cancel_url": f"{BASE}/requests/req-1/cancel",
}

Handler = Callable[[httpx.Request], httpx.Response]


def spec(**kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {
        "tier": Tier.STANDARD,
        "prompt": "Shot 1: a kite",
        "duration": 3,
        "seed": 1,
        **kw,
    }
    return GenerationSpec(**values)


def settings(**kw: Any) -> ProviderSettings:
    values: dict[str, Any] = {"token": TOKEN, "token_file": Path("/nonexistent"), "max_attempts": 4, **kw}
    return ProviderSettings(**values)


def scripted(*steps: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``steps`` in order (an exception is raised), and the requests seen."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


def adapter(handler: Handler, **kw: Any) -> RunComfyProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RunComfyProvider(settings(**kw), http_client=client)


# --- request bodies --------------------------------------------------------------------------


def test_body_from_spec_and_path() -> None:
    handler, seen = scripted(httpx.Response(200, json=SUBMITTED))
    s = spec(negative_prompt="blur", generate_audio=True, aspect_ratio="9:16", cfg_scale=0.7, seed=42)
    submission = asyncio.run(adapter(handler).submit(s))
    assert submission.request_id == "req-1"
    assert submission.model_id == "kling/kling-3.0/standard/text-to-video"
    (request,) = seen
    assert request.method == "POST"
    assert request.url == f"{BASE}/models/kling/kling-3.0/standard/text-to-video"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "prompt": s.prompt,
        "negative_prompt": "blur",
        "duration": 3,
        "aspect_ratio": "9:16",
        "cfg_scale": 0.7,
        "generate_audio": True,
        "seed": 42,
    }
    # build_body is the same body, without network (plan --json shows it).
    assert adapter(handler).build_body(s) == json.loads(request.content)


def test_image_field_names_are_configurable() -> None:
    s = spec(start_image_url="https://img/a.png", end_image_url="https://img/b.png", seed=None)
    default = build_request_body(s, settings())
    assert default["start_image_url"] == "https://img/a.png"
    assert default["end_image_url"] == "https://img/b.png"
    assert "seed" not in default and "negative_prompt" not in default
    other = build_request_body(s, settings(start_image_field="image_url", end_image_field="tail_image_url"))
    assert other["image_url"] == "https://img/a.png" and other["tail_image_url"] == "https://img/b.png"
    assert s.model_id.endswith("/image-to-video")


# --- the error mapping is complete -------------------------------------------------------------


def _all_httpx_errors() -> list[type[httpx.HTTPError]]:
    found = [
        obj
        for _, obj in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(obj, httpx.HTTPError) and obj is not httpx.HTTPError
    ]
    return sorted(found, key=lambda c: c.__name__)


def _instance(cls: type[httpx.HTTPError]) -> httpx.HTTPError:
    request = httpx.Request("POST", f"{BASE}/models/x")
    if cls is httpx.HTTPStatusError:
        return cls("boom", request=request, response=httpx.Response(500, request=request))
    return cls("boom", request=request)  # type: ignore[call-arg]


def test_every_httpx_error_is_translated() -> None:
    classes = _all_httpx_errors()
    assert len(classes) >= 15  # sanity: the enumeration found httpx's tree
    for cls in classes:
        exc = _instance(cls)
        free = translate_httpx_error(exc, operation="status")
        paid = translate_httpx_error(exc, operation="submit", submit=True)
        assert isinstance(free, KlingflowError), cls
        if cls is httpx.UnsupportedProtocol:
            assert isinstance(free, ConfigError) and isinstance(paid, ConfigError)
        elif issubclass(cls, NOT_SENT_ERRORS):
            # The request never left: a plain TransportError, which even a submit may retry.
            assert type(free) is TransportError and type(paid) is TransportError, cls
        else:
            # It may have reached the provider: a paid submit's outcome is unknown.
            assert type(free) is TransportError, cls
            assert type(paid) is SubmitOutcomeUnknown, cls


# --- submit: never pay twice -------------------------------------------------------------------


def test_submit_retries_a_connect_error() -> None:
    handler, seen = scripted(httpx.ConnectError("refused"), httpx.Response(200, json=SUBMITTED))
    assert asyncio.run(adapter(handler).submit(spec())).request_id == "req-1"
    assert len(seen) == 2


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset")],
)
def test_submit_with_a_lost_answer_is_unknown_and_not_repeated(lost: Exception) -> None:
    handler, seen = scripted(lost, httpx.Response(200, json=SUBMITTED))
    with pytest.raises(SubmitOutcomeUnknown, match="not resubmitted"):
        asyncio.run(adapter(handler).submit(spec()))
    assert len(seen) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_submit_answered_5xx_is_unknown_and_not_repeated(status: int) -> None:
    handler, seen = scripted(httpx.Response(status, json={"error_code": 500001, "error_message": "x"}))
    with pytest.raises(SubmitOutcomeUnknown) as info:
        asyncio.run(adapter(handler).submit(spec()))
    assert info.value.status_code == status
    assert len(seen) == 1


def test_submit_without_request_id_is_unknown() -> None:
    handler, seen = scripted(httpx.Response(200, json={"status": "in_queue"}))
    with pytest.raises(SubmitOutcomeUnknown):
        asyncio.run(adapter(handler).submit(spec()))
    assert len(seen) == 1


def test_submit_retries_a_429_refusal() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json=SUBMITTED)
    )
    assert asyncio.run(adapter(handler).submit(spec())).request_id == "req-1"
    assert len(seen) == 2


def test_submit_gives_up_on_429_after_the_attempt_cap() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited) as info:
        asyncio.run(adapter(handler, max_attempts=3).submit(spec()))
    assert info.value.retry_after == 2.0
    assert len(seen) == 3


def test_submit_validation_error_is_not_retried() -> None:
    body = {"error_code": 422001, "error_message": "validation error", "detail": [{"loc": ["body", "x"]}]}
    handler, seen = scripted(httpx.Response(422, json=body))
    with pytest.raises(BadRequest) as info:
        asyncio.run(adapter(handler).submit(spec()))
    assert info.value.error_code == 422001 and info.value.detail == [{"loc": ["body", "x"]}]
    assert len(seen) == 1


# --- free calls are retried --------------------------------------------------------------------


def test_status_retries_transient_failures_and_counts_calls() -> None:
    handler, seen = scripted(
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"error_code": 500001, "error_message": "hiccup"}),
        httpx.Response(200, json={"request_id": "req-1", "status": "in_queue", "queue_position": 3}),
    )
    provider = adapter(handler)
    info = asyncio.run(provider.status("req-1"))
    assert info.state is JobState.QUEUED and info.queue_position == 3
    assert len(seen) == 4
    assert provider.calls.get("req-1", "status") == 4
    assert seen[0].url == f"{BASE}/requests/req-1/status"


def test_status_gives_up_after_the_attempt_cap() -> None:
    handler, seen = scripted(httpx.Response(502))
    with pytest.raises(UpstreamError):
        asyncio.run(adapter(handler, max_attempts=3).status("req-1"))
    assert len(seen) == 3


def test_auth_errors_are_not_retried() -> None:
    handler, seen = scripted(httpx.Response(401, json={"error_code": 401001, "error_message": "no"}))
    with pytest.raises(AuthError):
        asyncio.run(adapter(handler).result("req-1"))
    assert len(seen) == 1


def test_result_shapes_and_cost() -> None:
    body = {
        "request_id": "req-1",
        "status": "succeeded",
        "output": {"videos": ["https://cdn.runcomfy.net/v/1.mp4"]},
        "created_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:10Z",
        "cost": 0.63,
        "error": None,
    }
    handler, seen = scripted(httpx.Response(200, json=body))
    result = asyncio.run(adapter(handler).result("req-1"))
    assert result.state is JobState.COMPLETED
    assert result.video_url == "https://cdn.runcomfy.net/v/1.mp4"
    assert str(result.cost_usd) == "0.63"
    assert result.finished_at is not None and result.created_at is not None
    assert seen[0].url.params["include_cost"] == "true"


@pytest.mark.parametrize(
    ("answer", "cancelled", "billing"),
    [
        ({"request_id": "r", "status": "cancelled", "outcome": "cancelled"}, True, False),
        ({"request_id": "r", "status": "in_progress", "outcome": "not_cancellable"}, False, True),
        ({"request_id": "r", "status": "completed", "outcome": "not_cancellable"}, False, True),
        ({"request_id": "r", "status": "failed", "outcome": "not_cancellable"}, False, False),
    ],
)
def test_cancel_is_honest(answer: dict[str, str], cancelled: bool, billing: bool) -> None:
    handler, seen = scripted(httpx.Response(200, json=answer))
    outcome = asyncio.run(adapter(handler).cancel("r"))
    assert (outcome.cancelled, outcome.still_billing) == (cancelled, billing)
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/requests/r/cancel"


# --- secrets -----------------------------------------------------------------------------------


def test_token_never_shows() -> None:
    handler, _ = scripted(httpx.Response(403, json={"error_code": 403001, "error_message": "denied"}))
    provider = adapter(handler)
    with pytest.raises(AuthError) as info:
        asyncio.run(provider.status("r"))
    texts = [
        repr(provider),
        repr(provider.settings),
        str(provider.settings),
        str(info.value),
        repr(info.value),
    ]
    texts.append(repr(provider._auth))
    assert all(TOKEN not in text for text in texts)


def test_no_token_sends_no_header() -> None:
    handler, seen = scripted(httpx.Response(200, json={"request_id": "r", "status": "completed"}))
    asyncio.run(adapter(handler, token=None).status("r"))
    assert "authorization" not in seen[0].headers


# --- preflight: model info, price and schema before any money -----------------------------------

I2V_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "duration": {"type": "integer", "minimum": 3, "maximum": 15},
        "cfg_scale": {"type": "number"},
        "generate_audio": {"type": "boolean"},
        "seed": {"type": "integer", "minimum": 0},
        "start_image_url": {"type": "string"},
    },
    "required": ["prompt", "start_image_url"],
    "additionalProperties": False,
}


def info_answer(model_id: str, price: float = 0.084, **kw: Any) -> httpx.Response:
    return httpx.Response(
        200, json={"model_id": model_id, "base_price_usd": price, "price_unit": "second", **kw}
    )


def test_preflight_reads_each_model_once_and_submits_nothing() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        model = request.url.path.removeprefix("/v1/models/")
        return info_answer(model, 0.112 if "/pro/" in model else 0.084)

    specs = [spec(seed=i) for i in range(3)] + [spec(tier=Tier.PRO), spec(tier=Tier.PRO, seed=9)]
    provider = adapter(handler)

    async def go() -> None:
        await provider.preflight(specs)
        await provider.preflight(specs)  # a second run on the same adapter: cached

    asyncio.run(go())
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/v1/models/kling/kling-3.0/standard/text-to-video"),
        ("GET", "/v1/models/kling/kling-3.0/pro/text-to-video"),
    ]


def test_preflight_refuses_every_schema_problem_before_any_submit() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return info_answer("kling/kling-3.0/standard/image-to-video", input_schema=I2V_SCHEMA)

    bad = spec(start_image_url="data:image/png;base64,", end_image_url="data:image/png;base64,", seed=-1)
    with pytest.raises(BadRequest) as info:
        asyncio.run(adapter(handler).preflight([bad]))
    text = str(info.value)
    assert "end_image_url: not a field of this model" in text
    assert "seed: -1 is below the minimum 0" in text
    assert "aspect_ratio" not in text  # left out for image-to-video: the image gives the shape
    assert all(r.method == "GET" for r in seen)


def test_submit_sends_the_body_the_preflight_checked() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return info_answer("kling/kling-3.0/standard/image-to-video", input_schema=I2V_SCHEMA)
        return httpx.Response(200, json=SUBMITTED)

    s = spec(start_image_url="https://img/a.png")
    provider = adapter(handler)

    async def go() -> None:
        await provider.preflight([s])
        await provider.submit(s)

    asyncio.run(go())
    body = json.loads(seen[-1].content)
    assert "aspect_ratio" not in body and body["start_image_url"] == "https://img/a.png"
    # Text-to-video keeps it; without a known schema, image-to-video keeps it too.
    assert "aspect_ratio" in build_request_body(spec(), settings(), I2V_SCHEMA)
    assert "aspect_ratio" in build_request_body(s, settings())


def test_preflight_price_mismatch_is_a_config_error() -> None:
    handler, _ = scripted(info_answer("kling/kling-3.0/standard/text-to-video", 0.1))
    with pytest.raises(ConfigError) as info:
        asyncio.run(adapter(handler).preflight([spec()]))
    assert info.value.exit_code == 78
    assert "$0.1/second" in str(info.value) and "$0.084/second" in str(info.value)


def test_preflight_without_a_schema_checks_the_price_only() -> None:
    handler, _ = scripted(info_answer("kling/kling-3.0/standard/text-to-video"))
    asyncio.run(adapter(handler).preflight([spec(negative_prompt="anything")]))


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(401, json={"error_code": 401001, "error_message": "bad token"}), AuthError),
        (httpx.Response(404, json={"error_code": 404001, "error_message": "no model"}), BadRequest),
        (httpx.Response(200, text="not json"), UnreadableAnswer),
        (info_answer("kling/kling-3.0/pro/text-to-video"), UnreadableAnswer),  # another model
    ],
)
def test_preflight_model_info_errors_follow_the_error_tree(
    answer: httpx.Response, kind: type[Exception]
) -> None:
    handler, _ = scripted(answer)
    with pytest.raises(kind):
        asyncio.run(adapter(handler).preflight([spec()]))


# --- unreadable answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>bad gateway</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"request_id": "r"}),  # no status
        httpx.Response(200, json={"error_code": 500001, "error_message": "internal"}),
    ],
)
def test_unreadable_status_answers_are_retried_then_named(answer: httpx.Response) -> None:
    handler, seen = scripted(answer)
    with pytest.raises(UnreadableAnswer):
        asyncio.run(adapter(handler, max_attempts=3).status("r"))
    assert len(seen) == 3
