"""Reading the RunComfy API's answers: httpx errors and error bodies become the one error tree.

Translated here, at the boundary (``raise ... from exc`` by the caller). An HTTP 200 carrying a
top-level ``error_code`` is an error, as the MCP server's ``runcomfy_client.py`` reads it; a 2xx
answer that cannot be read at all is :class:`~pipeline.providers.wire.UnreadableAnswer`.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

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
from pipeline.providers.retry import parse_retry_after
from pipeline.providers.wire import UnreadableAnswer

#: httpx errors raised *before* the request left this machine: safe to retry even for a submit.
#: Every other httpx error may have happened after the provider received the request.
NOT_SENT_ERRORS: Final[tuple[type[httpx.HTTPError], ...]] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


def translate_httpx_error(
    exc: httpx.HTTPError, *, operation: str, submit: bool = False
) -> ProviderError | ConfigError:
    """Turn an httpx error into the error tree; the caller raises it ``from exc``.

    For a ``submit``, any error after the request may have left becomes SubmitOutcomeUnknown.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol):
        # A bad base URL is a setting to fix, not a provider failure.
        return ConfigError(f"{operation}: unsupported URL scheme in the base URL ({exc})")
    if isinstance(exc, NOT_SENT_ERRORS):
        return TransportError(f"{operation}: could not reach the provider ({name})")
    if submit:
        return SubmitOutcomeUnknown(
            f"{operation}: the answer was lost after the request was sent ({name}); the request "
            "may have been created and billed, so it is not resubmitted automatically"
        )
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{operation}: the provider did not answer in time ({name})")
    return TransportError(f"{operation}: connection failed ({name})")


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    operation: str,
    submit: bool = False,
    **request: Any,
) -> httpx.Response:
    """One HTTP call of an adapter (``request``: httpx's keyword arguments); an httpx error is
    raised as ours (:func:`translate_httpx_error`), whatever the status, the response returned."""
    try:
        return await client.request(method, url, **request)
    except httpx.HTTPError as exc:
        raise translate_httpx_error(exc, operation=operation, submit=submit) from exc


def error_from_response(
    response: httpx.Response, *, operation: str, request_id: str | None = None
) -> ProviderError | None:
    """The ProviderError an answer means, or None if it is a success.

    Non-2xx statuses map by status; an HTTP 200 carrying a top-level ``error_code`` maps by the
    code's first three digits (400002 and 402 both mean no balance).
    """
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    error: wire.ErrorBody | None = None
    if isinstance(body, dict) and "error_code" in body:
        try:
            error = wire.ErrorBody.model_validate(body)
        except ValidationError:
            error = None
    status = response.status_code
    if 200 <= status < 300 and error is None:
        return None
    effective = status if not (200 <= status < 300) else (error.error_code // 1000 if error else 500)
    code = error.error_code if error else None
    detail = error.detail if error else None
    text = error.error_message if error and error.error_message else response.reason_phrase
    message = f"{operation}: HTTP {status}" + (f" error {code}" if code else "")
    message += f": {_clip(text)}" if text else ""
    if detail:
        message += f" ({_clip(str(detail))})"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "error_code": code,
        "detail": detail,
        "request_id": request_id,
    }
    if effective == 402 or code == wire.CODE_NO_BALANCE:
        return NoBalance(message, **kwargs)
    if effective in (401, 403):
        return AuthError(message, **kwargs)
    if effective == 429:
        return RateLimited(message, retry_after=parse_retry_after(response.headers), **kwargs)
    if effective == 408:
        return TransportError(message, **kwargs)
    if 400 <= effective < 500:
        return BadRequest(message, **kwargs)
    if 200 <= status < 300:
        # A success status with a server-side (or unclassifiable) error_code: the answer says
        # nothing about the request. Counted by the poller, which stops after a few in a row.
        return UnreadableAnswer(message, **kwargs)
    if effective >= 500:
        return UpstreamError(message, **kwargs)
    return ProviderError(message, **kwargs)


#: Longest provider text quoted in a message (the CLI's ``truncate_error_body`` in ``src/api.rs``).
MAX_QUOTED_CHARS: Final = 300


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + " … (truncated)"


M = TypeVar("M", bound=BaseModel)


def parse_answer(model: type[M], data: dict[str, Any], operation: str) -> M:
    """``data`` as ``model``; UnreadableAnswer when it does not have the documented shape."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnreadableAnswer(
            f"{operation}: unexpected answer shape ({exc.error_count()} problems)"
        ) from exc
