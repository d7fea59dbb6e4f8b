"""Answers of the RunComfy API → the error tree: httpx errors, error statuses, error-in-200."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    NoBalance,
    ProviderError,
    RateLimited,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)
from pipeline.providers import wire
from pipeline.providers.answers import (
    MAX_QUOTED_CHARS,
    error_from_response,
    parse_answer,
    translate_httpx_error,
)
from pipeline.providers.wire import UnreadableAnswer

REQUEST = httpx.Request("POST", "https://model-api.runcomfy.net/v1/models/x")


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, content=b"", headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def test_errors_before_sending_are_transport_errors_even_for_a_submit() -> None:
    error = translate_httpx_error(
        httpx.ConnectError("refused", request=REQUEST), operation="submit", submit=True
    )
    assert type(error) is TransportError
    assert "could not reach" in str(error)


def test_errors_after_sending_a_submit_are_submit_outcome_unknown() -> None:
    lost = httpx.ReadTimeout("timed out", request=REQUEST)
    assert isinstance(translate_httpx_error(lost, operation="submit", submit=True), SubmitOutcomeUnknown)
    status = translate_httpx_error(lost, operation="status")
    assert type(status) is TransportError and "did not answer in time" in str(status)
    other = translate_httpx_error(httpx.RemoteProtocolError("eof", request=REQUEST), operation="status")
    assert type(other) is TransportError and "connection failed" in str(other)


def test_unsupported_scheme_is_a_config_error() -> None:
    error = translate_httpx_error(httpx.UnsupportedProtocol("ftp://"), operation="submit", submit=True)
    assert isinstance(error, ConfigError)


def test_success_is_none() -> None:
    assert error_from_response(_response(200, {"request_id": "r1"}), operation="submit") is None
    assert error_from_response(_response(200), operation="status") is None


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, wire.CODE_VALIDATION, BadRequest),
        (422, wire.CODE_VALIDATION, BadRequest),
        (401, wire.CODE_UNAUTHENTICATED, AuthError),
        (403, wire.CODE_PERMISSION_DENIED, AuthError),
        (402, None, NoBalance),
        (400, wire.CODE_NO_BALANCE, NoBalance),  # 400002 means no balance whatever the status
        (429, wire.CODE_RATE_LIMITED, RateLimited),
        (408, None, TransportError),
        (500, wire.CODE_INTERNAL, UpstreamError),
        (503, None, UpstreamError),
        (200, wire.CODE_NO_BALANCE, NoBalance),  # error-in-200 maps by the code's first digits
        (200, wire.CODE_PERMISSION_DENIED, AuthError),
        (200, wire.CODE_VALIDATION, BadRequest),
        (200, wire.CODE_INTERNAL, UnreadableAnswer),
    ],
)
def test_error_answers_map_to_the_tree(status: int, code: int | None, expected: type[ProviderError]) -> None:
    body = (
        None if code is None else {"error_code": code, "error_message": "nope", "detail": {"field": "prompt"}}
    )
    error = error_from_response(_response(status, body), operation="submit", request_id="r9")
    assert type(error) is expected
    assert error.status_code == status
    assert error.error_code == code
    assert error.request_id == "r9"
    assert str(error).startswith(f"submit: HTTP {status}")
    if code is not None:
        assert error.detail == {"field": "prompt"}
        assert "nope" in str(error) and "prompt" in str(error)


def test_rate_limited_carries_retry_after() -> None:
    error = error_from_response(_response(429, None, {"Retry-After": "7"}), operation="status")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0


def test_long_provider_text_is_clipped() -> None:
    body = {"error_code": wire.CODE_VALIDATION, "error_message": "x" * 5000}
    error = error_from_response(_response(400, body), operation="submit")
    assert error is not None
    assert "… (truncated)" in str(error)
    assert str(error).count("x") <= MAX_QUOTED_CHARS + 5


def test_parse_answer_reads_the_model_or_says_unreadable() -> None:
    parsed = parse_answer(wire.ErrorBody, {"error_code": 400001}, "submit")
    assert parsed.error_code == 400001
    with pytest.raises(UnreadableAnswer, match="submit: unexpected answer shape"):
        parse_answer(wire.ErrorBody, {"error_message": "no code"}, "submit")
