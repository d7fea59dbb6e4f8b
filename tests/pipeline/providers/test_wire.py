"""Parsing the documented payload shapes (status words, output shapes, errors in HTTP 200)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from pipeline.errors import AuthError, BadRequest, NoBalance, RateLimited, TransportError, UpstreamError
from pipeline.providers import wire
from pipeline.providers.base import JobState, normalise_status
from pipeline.providers.runcomfy import error_from_response


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("in_queue", JobState.QUEUED),
        ("in_progress", JobState.RUNNING),
        ("completed", JobState.COMPLETED),
        ("succeeded", JobState.COMPLETED),
        ("failed", JobState.FAILED),
        ("cancelled", JobState.CANCELLED),
        ("canceled", JobState.CANCELLED),
        ("COMPLETED", JobState.COMPLETED),
        ("warming_up", JobState.RUNNING),  # unknown words: still running
    ],
)
def test_status_words(word: str, state: JobState) -> None:
    assert normalise_status(word) is state


def test_terminal_states() -> None:
    assert {s for s in JobState if s.is_terminal} == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        ({"video": "https://cdn.runcomfy.net/a.mp4"}, ("https://cdn.runcomfy.net/a.mp4",)),
        (
            {"videos": ["https://cdn.runcomfy.net/a.mp4", "https://cdn.runcomfy.net/b.mp4"]},
            ("https://cdn.runcomfy.net/a.mp4", "https://cdn.runcomfy.net/b.mp4"),
        ),
        ({"videos": [{"url": "https://cdn.runcomfy.com/c.mp4"}]}, ("https://cdn.runcomfy.com/c.mp4",)),
        (
            {"video": "https://x.runcomfy.net/a.mp4", "videos": ["https://x.runcomfy.net/a.mp4"]},
            ("https://x.runcomfy.net/a.mp4",),
        ),
        ({}, ()),
        (None, ()),
    ],
)
def test_result_video_urls(output: dict[str, object] | None, urls: tuple[str, ...]) -> None:
    answer = wire.ResultAnswer.model_validate({"request_id": "r", "status": "succeeded", "output": output})
    assert answer.video_urls() == urls


def test_result_cost_is_exact_and_error_text() -> None:
    answer = wire.ResultAnswer.model_validate(
        {"request_id": "r", "status": "failed", "cost": 0.42, "error": {"message": "nsfw"}}
    )
    assert answer.cost == Decimal("0.42")
    assert answer.error_text() == "nsfw"


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://model-api.runcomfy.net/v1/requests/r/status")
    if body is None:
        return httpx.Response(status, headers=headers, request=request, content=b"")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_success_is_no_error() -> None:
    assert (
        error_from_response(_response(200, {"request_id": "r", "status": "in_queue"}), operation="x") is None
    )


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        # An HTTP 200 with a server-side error_code is an error (MCP runcomfy_client.py), and an
        # unreadable one: the poller counts those and stops after a few in a row.
        (200, {"error_code": 500001, "error_message": "internal"}, wire.UnreadableAnswer, 500001),
        (200, {"error_code": 1, "error_message": "odd"}, wire.UnreadableAnswer, 1),
        (200, {"error_code": 429001, "error_message": "slow down"}, RateLimited, 429001),
        (200, {"error_code": 404001, "error_message": "not found"}, BadRequest, 404001),
        (200, {"error_code": 400002, "error_message": "insufficient balance"}, NoBalance, 400002),
        (400, {"error_code": 400002, "error_message": "insufficient balance"}, NoBalance, 400002),
        (402, None, NoBalance, None),
        (401, None, AuthError, None),
        (403, {"error_code": 403001, "error_message": "permission denied"}, AuthError, 403001),
        (400, {"error_code": 400001, "error_message": "bad model id"}, BadRequest, 400001),
        (404, {"error_code": 404001, "error_message": "expired"}, BadRequest, 404001),
        (408, None, TransportError, None),
        (500, {"error_code": 500001, "error_message": "internal"}, UpstreamError, 500001),
        (502, None, UpstreamError, None),
    ],
)
def test_error_mapping(status: int, body: object, kind: type[Exception], code: int | None) -> None:
    error = error_from_response(_response(status, body), operation="status r", request_id="r")
    assert type(error) is kind
    assert error is not None
    assert error.error_code == code
    assert error.status_code == status
    assert error.request_id == "r"


def test_validation_error_keeps_detail() -> None:
    detail = [{"loc": ["body", "duration"], "msg": "an integer from 3 to 15", "type": "range_error"}]
    error = error_from_response(
        _response(422, {"error_code": 422001, "error_message": "validation error", "detail": detail}),
        operation="submit",
    )
    assert isinstance(error, BadRequest)
    assert error.detail == detail
    assert "duration" in str(error)


def test_rate_limit_carries_retry_after() -> None:
    error = error_from_response(_response(429, None, {"Retry-After": "4"}), operation="status r")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 4.0
