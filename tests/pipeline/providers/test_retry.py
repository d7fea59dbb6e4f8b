"""Retry policy: Retry-After parsing, and which failures each call retries."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from pipeline.errors import (
    AuthError,
    BadRequest,
    DownloadError,
    DownloadIncomplete,
    GenerationFailed,
    NoBalance,
    RateLimited,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)
from pipeline.providers import retry


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "86400"}, retry.MAX_RETRY_AFTER_S),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry.parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    header = format_datetime(datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC), usegmt=True)
    assert retry.parse_retry_after({"Retry-After": header}, now=now) == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("error", "free", "submit"),
    [
        (RateLimited("429", retry_after=2.5), 2.5, 2.5),
        (RateLimited("429"), True, True),
        (TransportError("connect refused"), True, True),
        (SubmitOutcomeUnknown("answer lost"), False, False),
        (UpstreamError("500"), True, False),
        (DownloadIncomplete("truncated"), True, False),
        (DownloadError("refused host"), False, False),
        (BadRequest("422"), False, False),
        (AuthError("401"), False, False),
        (NoBalance("402"), False, False),
        (GenerationFailed("failed"), False, False),
    ],
)
def test_hooks_retry_only_what_is_safe(error: Exception, free: bool | float, submit: bool | float) -> None:
    assert retry.free_call_hook(error) == free
    assert retry.submit_hook(error) == submit
