"""The RunComfy Model API adapter (also the client of the local sandbox, which speaks the same API).

Example::

    async with RunComfyProvider(load_settings()) as provider:
        sub = await provider.submit(spec)
        done = await wait_for_completion(provider, sub, spec)
        res = await provider.result(sub.request_id)
        clip = await provider.download(res.video_url, Path("out.mp4"), spec)

httpx errors are translated here, at the boundary, into the one error tree
(:mod:`pipeline.errors`). Free calls are retried (:mod:`pipeline.providers.retry`); the paid
submit is retried only when the provider provably did not take it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import BaseModel, SecretStr, ValidationError

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
from pipeline.generation import GenerationSpec
from pipeline.providers import wire
from pipeline.providers.base import (
    CallCounter,
    CancelOutcome,
    DownloadedClip,
    JobState,
    ResultInfo,
    StatusInfo,
    Submission,
    normalise_status,
)
from pipeline.providers.download import DownloadPolicy, download_clip
from pipeline.providers.retry import (
    INITIAL_DELAY_S,
    JITTER_S,
    MAX_DELAY_S,
    free_call_hook,
    parse_retry_after,
    submit_hook,
)
from pipeline.providers.settings import ProviderSettings

T = TypeVar("T")

#: httpx errors raised *before* the request left this machine: safe to retry even for a submit.
#: Every other httpx error may have happened after the provider received the request.
NOT_SENT_ERRORS: Final[tuple[type[httpx.HTTPError], ...]] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` added per request; the token stays a SecretStr."""

    def __init__(self, token: SecretStr | None) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the header (when a token is configured) and send the request."""
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token='**********')" if self._token is not None else "BearerAuth(token=None)"


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
    message += f": {text}" if text else ""
    if detail:
        message += f" ({detail})"
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
    if effective >= 500:
        return UpstreamError(message, **kwargs)
    return ProviderError(message, **kwargs)


def build_request_body(spec: GenerationSpec, settings: ProviderSettings) -> dict[str, Any]:
    """The model's input JSON for ``spec`` (the submit body *is* this object, no wrapper)."""
    body: dict[str, Any] = {
        "prompt": spec.prompt,
        "duration": spec.duration,
        "aspect_ratio": spec.aspect_ratio,
        "cfg_scale": spec.cfg_scale,
        "generate_audio": spec.generate_audio,
    }
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    if spec.seed is not None:
        body["seed"] = spec.seed
    if spec.start_image_url:
        body[settings.start_image_field] = spec.start_image_url
    if spec.end_image_url:
        body[settings.end_image_field] = spec.end_image_url
    return body


class RunComfyProvider:
    """The RunComfy Model API over one ``httpx.AsyncClient`` (injectable; used from one event loop).

    ``download_origins`` adds exact origins to the CDN allow-list: only for a sandbox that is the
    provider (loopback is refused otherwise). ``calls`` counts HTTP attempts per request id.
    """

    name = "runcomfy"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        download_origins: tuple[str, ...] = (),
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.name = name or self.name
        self._timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._auth = BearerAuth(settings.token)
        self.download_policy = DownloadPolicy(
            domains=settings.cdn_domains,
            origins=download_origins,
            max_bytes=settings.max_download_bytes,
            duration_tolerance_s=settings.duration_tolerance_s,
            timeout=httpx.Timeout(settings.download_read_timeout_s, connect=settings.connect_timeout_s),
        )
        self.calls = CallCounter()

    def __repr__(self) -> str:
        return f"RunComfyProvider(name={self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter created it."""
        if self._owns_client:
            await self._client.aclose()

    # --- plumbing -------------------------------------------------------------------------

    async def _retrying(
        self, hook: Callable[[Exception], bool | float], call: Callable[[], Awaitable[T]]
    ) -> T:
        async for attempt in stamina.retry_context(
            on=hook,
            attempts=self.settings.max_attempts,
            timeout=self.settings.max_total_s,
            wait_initial=INITIAL_DELAY_S,
            wait_max=MAX_DELAY_S,
            wait_jitter=JITTER_S,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        kind: str,
        request_id: str | None = None,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        submit: bool = False,
    ) -> dict[str, Any]:
        if request_id is not None:
            self.calls.add(request_id, kind)
        try:
            response = await self._client.request(
                method,
                f"{self.base_url}{path}",
                json=json,
                params=params,
                auth=self._auth,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_httpx_error(exc, operation=operation, submit=submit) from exc
        error = error_from_response(response, operation=operation, request_id=request_id)
        if error is not None:
            if submit and isinstance(error, UpstreamError):
                # A 5xx to a submit does not prove the request was not created: no blind retry.
                raise SubmitOutcomeUnknown(
                    f"{error}; the request may have been created and billed, so it is not "
                    "resubmitted automatically",
                    status_code=error.status_code,
                    error_code=error.error_code,
                    detail=error.detail,
                )
            raise error
        try:
            data = response.json()
        except ValueError as exc:
            if submit:
                raise SubmitOutcomeUnknown(f"{operation}: answer is not JSON") from exc
            raise UpstreamError(f"{operation}: answer is not JSON", status_code=response.status_code) from exc
        if not isinstance(data, dict):
            raise UpstreamError(f"{operation}: answer is not a JSON object", status_code=response.status_code)
        return data

    @staticmethod
    def _path_id(request_id: str) -> str:
        return quote(request_id, safe="")

    # --- the Provider interface -------------------------------------------------------------

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Free checks before any money is reserved (see :meth:`Provider.preflight`)."""
        # TODO(issue 11): model info once per model, schema and price checks.
        return None

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create one paid request for ``spec``.

        Retried only on a 429 refusal or a failure to connect. A lost answer, or a 5xx answer,
        raises SubmitOutcomeUnknown: the request may exist and be billed.
        """
        body = build_request_body(spec, self.settings)
        model_path = "/".join(quote(part, safe="") for part in spec.model_id.split("/"))

        async def once() -> Submission:
            data = await self._request(
                "POST",
                f"/models/{model_path}",
                operation=f"submit {spec.model_id}",
                kind="submit",
                json=body,
                submit=True,
            )
            try:
                answer = wire.SubmitAnswer.model_validate(data)
            except ValidationError as exc:
                raise SubmitOutcomeUnknown(
                    f"submit {spec.model_id}: the answer has no request_id; a request may exist"
                ) from exc
            return Submission(
                request_id=answer.request_id,
                model_id=spec.model_id,
                status_url=answer.status_url,
                result_url=answer.result_url,
                cancel_url=answer.cancel_url,
                submitted_at=time.time(),
            )

        return await self._retrying(submit_hook, once)

    async def status(self, request_id: str) -> StatusInfo:
        """The current state of ``request_id`` (retried on transient errors)."""

        async def once() -> StatusInfo:
            data = await self._request(
                "GET",
                f"/requests/{self._path_id(request_id)}/status",
                operation=f"status {request_id}",
                kind="status",
                request_id=request_id,
            )
            answer = _parse(wire.StatusAnswer, data, f"status {request_id}")
            return StatusInfo(
                request_id=answer.request_id,
                state=normalise_status(answer.status),
                raw_status=answer.status,
                queue_position=answer.queue_position,
            )

        return await self._retrying(free_call_hook, once)

    async def result(self, request_id: str, *, include_cost: bool = True) -> ResultInfo:
        """The outcome of ``request_id`` (with its cost when asked), or its state while unfinished."""

        async def once() -> ResultInfo:
            data = await self._request(
                "GET",
                f"/requests/{self._path_id(request_id)}/result",
                operation=f"result {request_id}",
                kind="result",
                request_id=request_id,
                params={"include_cost": "true"} if include_cost else None,
            )
            answer = _parse(wire.ResultAnswer, data, f"result {request_id}")
            return ResultInfo(
                request_id=answer.request_id,
                state=normalise_status(answer.status),
                raw_status=answer.status,
                video_urls=answer.video_urls(),
                cost_usd=answer.cost,
                created_at=answer.created_at,
                finished_at=answer.finished_at,
                error=answer.error_text(),
            )

        return await self._retrying(free_call_hook, once)

    async def cancel(self, request_id: str) -> CancelOutcome:
        """Ask to cancel ``request_id``; ``still_billing`` is True when it was too late to stop."""

        async def once() -> CancelOutcome:
            data = await self._request(
                "POST",
                f"/requests/{self._path_id(request_id)}/cancel",
                operation=f"cancel {request_id}",
                kind="cancel",
                request_id=request_id,
            )
            answer = _parse(wire.CancelAnswer, data, f"cancel {request_id}")
            state = normalise_status(answer.status) if answer.status else None
            cancelled = answer.outcome.lower() in {"cancelled", "canceled"}
            # Anything but an explicit "cancelled" means the request goes on (or went) to the end,
            # unless it had already failed or been cancelled: then nothing is billed.
            billing = not cancelled and state not in (JobState.FAILED, JobState.CANCELLED)
            return CancelOutcome(
                request_id=answer.request_id,
                cancelled=cancelled,
                still_billing=billing,
                raw_outcome=answer.outcome,
                state=JobState.CANCELLED if cancelled else state,
            )

        return await self._retrying(free_call_hook, once)

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Download and verify the clip at ``url`` into ``dest`` (retried: downloads are free)."""
        attempts = 0

        async def once() -> DownloadedClip:
            nonlocal attempts
            attempts += 1
            return await download_clip(self._client, url, dest, spec, self.download_policy)

        clip = await self._retrying(free_call_hook, once)
        return DownloadedClip(**{**clip.__dict__, "attempts": attempts})

    async def model_info(self, model_id: str) -> wire.ModelInfo:
        """``GET /models/{model_id}``: price and description of a model."""
        model_path = "/".join(quote(part, safe="") for part in model_id.split("/"))

        async def once() -> wire.ModelInfo:
            data = await self._request(
                "GET", f"/models/{model_path}", operation=f"model info {model_id}", kind="model_info"
            )
            return _parse(wire.ModelInfo, data, f"model info {model_id}")

        return await self._retrying(free_call_hook, once)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], data: dict[str, Any], operation: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UpstreamError(f"{operation}: unexpected answer shape ({exc.error_count()} problems)") from exc
