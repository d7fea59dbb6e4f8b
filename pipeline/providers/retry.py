"""Retry policy: named constants and small pure functions, applied with ``stamina``.

Two policies, because two kinds of call exist:

* **free calls** (status, result, cancel, download) are retried on rate limits, 5xx answers,
  transport errors and incomplete downloads, with exponential backoff, jitter and the
  provider's ``Retry-After``, capped by attempts *and* total time;
* **the paid submit** is retried only when the provider provably did not take the request: a
  429 refusal, or a transport error before the request left (connect). Anything else, in
  particular a lost answer, surfaces as :class:`~pipeline.errors.SubmitOutcomeUnknown`.

Tests switch stamina to instant retries with ``stamina.set_testing(True, attempts=N, cap=True)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

from pipeline.errors import (
    DownloadIncomplete,
    RateLimited,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)

DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_MAX_TOTAL_S: Final = 120.0
INITIAL_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 8.0
JITTER_S: Final = 1.0
#: A Retry-After longer than this is clamped: a broken header must not park a job for hours.
MAX_RETRY_AFTER_S: Final = 60.0


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or an HTTP date).

    Returns None when absent or unparsable; never negative; clamped to ``MAX_RETRY_AFTER_S``.
    Fractional seconds are accepted (the sandbox sends them to keep tests fast).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    seconds: float | None = None
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            seconds = float(ms) / 1000.0
        except ValueError:
            seconds = None
    if seconds is None and (value := lowered.get("retry-after")) is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def free_call_hook(exc: Exception) -> bool | float:
    """stamina hook for free calls: retry transient failures; honour Retry-After when given."""
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else True
    if isinstance(exc, SubmitOutcomeUnknown):
        return False  # never raised by free calls; listed so the rule is explicit
    return isinstance(exc, TransportError | UpstreamError | DownloadIncomplete)


def submit_hook(exc: Exception) -> bool | float:
    """stamina hook for the paid submit: retry only when the provider provably did not take it.

    A 429 is an explicit refusal; a plain :class:`TransportError` is raised by the adapter only
    for failures before the request left (connect, pool). A lost answer is SubmitOutcomeUnknown.
    """
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else True
    return type(exc) is TransportError
