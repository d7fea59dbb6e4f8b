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

It talks like RunComfy's official clients (their public source is the contract): every API call
carries ``User-Agent: klingflow/<version>`` and ``Accept: application/json`` (CLI ``src/api.rs``,
MCP ``runcomfy_client.py``, partner nodes ``runcomfy/client.py``); the bearer token goes to the
API base only, never to a download URL (CLI ``src/download.rs``); results are read with
``?include_cost=true`` (partner nodes ``runcomfy/client.py``); an HTTP 200 carrying
``error_code`` is an error (MCP ``runcomfy_client.py``). TLS trust is httpx's own (certifi, or
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``): nothing here replaces it.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import ValidationError

from pipeline.errors import (
    ConfigError,
    SubmitOutcomeUnknown,
    UpstreamError,
)
from pipeline.generation import GenerationSpec
from pipeline.providers import model_check, wire
from pipeline.providers.answers import (
    NOT_SENT_ERRORS,
    error_from_response,
    parse_answer,
    send,
    translate_httpx_error,
)
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
from pipeline.providers.http_knobs import SecretAuth
from pipeline.providers.retry import (
    INITIAL_DELAY_S,
    JITTER_S,
    MAX_DELAY_S,
    free_call_hook,
    submit_hook,
)
from pipeline.providers.settings import ProviderSettings
from pipeline.providers.wire import UnreadableAnswer

__all__ = [
    "API_HEADERS",
    "NOT_SENT_ERRORS",
    "USER_AGENT",
    "BearerAuth",
    "RunComfyProvider",
    "build_request_body",
    "error_from_response",
    "translate_httpx_error",
]

T = TypeVar("T")


def _version() -> str:
    try:
        return importlib.metadata.version("klingflow")
    except importlib.metadata.PackageNotFoundError:
        return "0"


#: How klingflow names itself to the API, as each official client does (``runcomfy-cli/<v>``).
USER_AGENT: Final = f"klingflow/{_version()}"
#: Headers of every API call (never of a download: see :meth:`RunComfyProvider.download`).
API_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}


class BearerAuth(SecretAuth):
    """``Authorization: Bearer <token>``, RunComfy's API auth."""

    scheme = "Bearer"


def build_request_body(
    spec: GenerationSpec, settings: ProviderSettings, schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The model's input JSON for ``spec`` (the submit body *is* this object, no wrapper).

    With the model's published input ``schema``, ``aspect_ratio`` is left out of an
    image-to-video body when the model has no such field: the start image gives the picture its
    shape (whether the hosted endpoints take the field is unverified, shared/docs/provider-api.md).
    Every other field is sent as asked; the preflight refuses what the schema does not allow.
    """
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
    properties = schema.get("properties") if schema else None
    if spec.start_image_url and isinstance(properties, Mapping) and "aspect_ratio" not in properties:
        del body["aspect_ratio"]
    return body


class RunComfyProvider:
    """The RunComfy Model API over one ``httpx.AsyncClient`` (injectable; used from one event loop).

    ``download_origins`` adds exact origins to the CDN allow-list: only for a sandbox that is the
    provider (loopback is refused otherwise). ``download_client`` carries the clip downloads
    when given (else the API client does); neither client may carry a default
    ``Authorization`` header, since downloads must never see the token. ``calls`` counts HTTP
    attempts per request id (poll looks as ``status``, whichever endpoint they read).
    """

    name = "runcomfy"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        download_client: httpx.AsyncClient | None = None,
        download_origins: tuple[str, ...] = (),
        name: str | None = None,
    ) -> None:
        for given in (http_client, download_client):
            if given is not None and "authorization" in given.headers:
                # The token is added per API request; a client-wide one would reach the CDN.
                raise ConfigError("provider HTTP client: must not carry a default Authorization header")
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.name = name or self.name
        self._timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        self._owns_client = http_client is None
        # TLS trust stays httpx's default (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
        self._client = http_client or httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        self._download_client = download_client
        self._auth = BearerAuth(settings.token)
        self._models: dict[str, wire.ModelInfo] = {}
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
        url = f"{self.base_url}{path}"
        http = {"headers": API_HEADERS, "auth": self._auth, "timeout": self._timeout}
        response = await send(
            self._client, method, url, operation=operation, submit=submit, json=json, params=params, **http
        )
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
            raise UnreadableAnswer(
                f"{operation}: answer is not JSON", status_code=response.status_code
            ) from exc
        if not isinstance(data, dict):
            if submit:
                raise SubmitOutcomeUnknown(f"{operation}: answer is not a JSON object")
            raise UnreadableAnswer(
                f"{operation}: answer is not a JSON object", status_code=response.status_code
            )
        return data

    @staticmethod
    def _path_id(request_id: str) -> str:
        return quote(request_id, safe="")

    # --- the Provider interface -------------------------------------------------------------

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Free checks before any money is reserved (see :meth:`Provider.preflight`).

        Reads ``GET /models/{id}`` once per model (cached on this adapter) and refuses the run
        when the provider's price is not klingflow's (ConfigError, 78) or when the model's
        published input schema refuses a body a submit would send (BadRequest, 65). Errors
        reading the model info follow the error tree (401 → AuthError, …).
        """
        by_model: dict[str, list[GenerationSpec]] = {}
        for spec in specs:
            by_model.setdefault(spec.model_id, []).append(spec)
        for model_id, group in by_model.items():
            info = await self.model_info(model_id)
            if info.model_id != model_id:
                raise UnreadableAnswer(f"model info {model_id}: the answer describes {info.model_id!r}")
            model_check.check_price(info, group[0])
            bodies = (build_request_body(s, self.settings, info.input_schema) for s in group)
            model_check.check_schema(info, bodies)

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """The exact submit body for ``spec`` (pure): RunComfy takes one prose prompt, so the
        native storyboard and elements of ``spec`` are not sent (the prompt already holds them)."""
        known = self._models.get(spec.model_id)
        return build_request_body(spec, self.settings, known.input_schema if known else None)

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create one paid request for ``spec``.

        Retried only on a 429 refusal or a failure to connect. A lost answer, or a 5xx answer,
        raises SubmitOutcomeUnknown: the request may exist and be billed.
        """
        body = self.build_body(spec)
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
            answer = parse_answer(wire.StatusAnswer, data, f"status {request_id}")
            return StatusInfo(
                request_id=answer.request_id,
                state=normalise_status(answer.status),
                raw_status=answer.status,
                queue_position=answer.queue_position,
            )

        return await self._retrying(free_call_hook, once)

    async def result(self, request_id: str, *, include_cost: bool = True) -> ResultInfo:
        """The outcome of ``request_id`` (with its cost when asked), or its state while unfinished."""
        return await self._result(request_id, include_cost=include_cost, kind="result")

    async def poll_result(self, request_id: str) -> ResultInfo:
        """One poll look through ``/result?include_cost=true``: state, output and cost in one call.

        The partner nodes poll exactly this way (``runcomfy/client.py``, ``execution.py``): a
        finished request needs no separate result call. Counted as a ``status`` call (a look).
        """
        return await self._result(request_id, include_cost=True, kind="status")

    async def _result(self, request_id: str, *, include_cost: bool, kind: str) -> ResultInfo:
        async def once() -> ResultInfo:
            data = await self._request(
                "GET",
                f"/requests/{self._path_id(request_id)}/result",
                operation=f"result {request_id}",
                kind=kind,
                request_id=request_id,
                params={"include_cost": "true"} if include_cost else None,
            )
            answer = parse_answer(wire.ResultAnswer, data, f"result {request_id}")
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
            answer = parse_answer(wire.CancelAnswer, data, f"cancel {request_id}")
            state = normalise_status(answer.status) if answer.status else None
            if answer.outcome:
                cancelled = answer.outcome.strip().lower() in {"cancelled", "canceled"}
            else:
                # No outcome: the status tells, as the CLI (src/cmd/cancel.rs, src/poll.rs) and
                # the partner nodes (runcomfy/execution.py) read it. No status either: unknown,
                # so assumed still billing.
                cancelled = state is JobState.CANCELLED
            # Anything but a cancel means the request goes on (or went) to the end, unless it had
            # already failed or been cancelled: then nothing is billed.
            billing = not cancelled and state not in (JobState.FAILED, JobState.CANCELLED)
            return CancelOutcome(
                request_id=answer.request_id,
                cancelled=cancelled,
                still_billing=billing,
                raw_outcome=answer.outcome or "",
                state=JobState.CANCELLED if cancelled else state,
            )

        return await self._retrying(free_call_hook, once)

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Download and verify the clip at ``url`` into ``dest`` (retried: downloads are free).

        Without the bearer token: result URLs are presigned CDN links, and the token must never
        leave the API (CLI ``src/download.rs``; partner nodes ``runcomfy/client.py``).
        """
        attempts = 0
        client = self._download_client or self._client

        async def once() -> DownloadedClip:
            nonlocal attempts
            attempts += 1
            return await download_clip(client, url, dest, spec, self.download_policy)

        clip = await self._retrying(free_call_hook, once)
        return DownloadedClip(**{**clip.__dict__, "attempts": attempts})

    async def model_info(self, model_id: str) -> wire.ModelInfo:
        """``GET /models/{model_id}``: price, description and input schema (once per adapter)."""
        if (known := self._models.get(model_id)) is not None:
            return known
        model_path = "/".join(quote(part, safe="") for part in model_id.split("/"))

        async def once() -> wire.ModelInfo:
            data = await self._request(
                "GET", f"/models/{model_path}", operation=f"model info {model_id}", kind="model_info"
            )
            return parse_answer(wire.ModelInfo, data, f"model info {model_id}")

        info = await self._retrying(free_call_hook, once)
        self._models[model_id] = info
        return info
