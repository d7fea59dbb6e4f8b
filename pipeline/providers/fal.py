"""The fal.ai adapter: Kling 3.0 through fal's queue, with native storyboards, elements and voices.

Example::

    async with open_fal(FalSettings(), rehearse=False) as opened:
        sub = await opened.provider.submit(spec)

The wire format (body, answers, error bodies) is :mod:`pipeline.providers.fal_wire`. fal's own
client retries a submit on timeouts, connection errors, 408/409 and 502–504
(``fal_client/client.py`` ``_maybe_retry_request``), any of which may follow a request fal did
take and will bill; this adapter retries a submit only on a 429 or a failure to connect, and a
lost answer is :class:`~pipeline.errors.SubmitOutcomeUnknown`: never paid twice. The key goes to
the queue host only (``Authorization: Key …``, added per request); downloads from fal's CDN go
through the checked download client without it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from pipeline.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    GenerationFailed,
    GenerationTimeout,
    InputNotFound,
    SubmitOutcomeUnknown,
    UpstreamError,
)
from pipeline.generation import ElementRef, GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers import fal_wire
from pipeline.providers.answers import parse_answer, send
from pipeline.providers.base import (
    CallCounter,
    CancelOutcome,
    DownloadedClip,
    JobState,
    ResultInfo,
    StatusInfo,
    Submission,
)
from pipeline.providers.download import download_clip
from pipeline.providers.fal_settings import FalSettings
from pipeline.providers.http_knobs import SecretAuth, download_policy, retrying
from pipeline.providers.retry import free_call_hook, submit_hook
from pipeline.providers.runcomfy import API_HEADERS
from pipeline.providers.wire import UnreadableAnswer

if TYPE_CHECKING:
    from pipeline.providers.selection import OpenedProvider

T = TypeVar("T")

#: Tiers fal sells for Kling 3.0 (no 4k endpoint under ``v3``).
TIERS: Final = (Tier.STANDARD, Tier.PRO)
MAX_SHOTS: Final = 6
MAX_VOICES: Final = 2
#: Largest voice clip read into a data URI (fal: 5–30 s of audio).
MAX_VOICE_BYTES: Final = 20 * 1024 * 1024
_STATES: Final = {
    fal_wire.IN_QUEUE: JobState.QUEUED,
    fal_wire.IN_PROGRESS: JobState.RUNNING,
    fal_wire.COMPLETED: JobState.COMPLETED,
}


class KeyAuth(SecretAuth):
    """``Authorization: Key <key>``, fal's API auth (``fal_client/auth.py``)."""

    scheme = "Key"


def check_spec(spec: GenerationSpec) -> list[str]:
    """What fal's Kling 3.0 endpoints refuse in ``spec`` (empty: nothing), before any money."""
    problems = []
    if spec.tier not in TIERS:
        problems.append(f"tier {spec.tier.value}: fal sells {', '.join(t.value for t in TIERS)}")
    if not spec.start_image_url and spec.aspect_ratio not in fal_wire.ASPECT_RATIOS:
        problems.append(f"aspect_ratio {spec.aspect_ratio}: one of {', '.join(fal_wire.ASPECT_RATIOS)}")
    if spec.shots:
        if len(spec.shots) > MAX_SHOTS:
            problems.append(f"multi_prompt: {len(spec.shots)} shots, at most {MAX_SHOTS}")
        if sum(s.duration for s in spec.shots) != spec.duration:
            problems.append(f"multi_prompt: shot durations must sum to {spec.duration} s")
    if sum(1 for e in spec.elements if e.voice or e.voice_id) > MAX_VOICES:
        problems.append(f"voices: at most {MAX_VOICES} per request")
    return problems


def voice_source_url(source: str) -> str:
    """What fal's ``voice_url`` takes for a script's ``voice:``: an https URL as is, a local
    file as a data URI (fal accepts data URIs wherever it takes a file URL)."""
    if source.startswith(("https://", "data:")):
        return source
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_VOICE_BYTES:
            raise BadRequest(f"voice {source}: {size} bytes, more than {MAX_VOICE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise InputNotFound(f"voice {source}: cannot read it ({exc.strerror or exc})") from exc
    mime = mimetypes.guess_type(path.name)[0] or "audio/wav"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _answer(
    response: httpx.Response, *, operation: str, request_id: str | None, submit: bool
) -> dict[str, Any]:
    """The JSON object a fal answer holds, or the error it means. For a submit, a 5xx or an
    unreadable answer does not prove the request was not created: SubmitOutcomeUnknown."""
    error = fal_wire.error_from_response(response, operation=operation, request_id=request_id)
    if error is None:
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data
        error = UnreadableAnswer(
            f"{operation}: answer is not a JSON object", status_code=response.status_code
        )
    if submit and isinstance(error, UpstreamError):
        raise SubmitOutcomeUnknown(
            f"{error}; the request may have been created and billed, so it is not resubmitted",
            status_code=error.status_code,
            detail=error.detail,
        ) from error
    raise error


class FalProvider:
    """fal's queue API over one ``httpx.AsyncClient`` (injectable; used from one event loop).

    ``download_client`` carries the clip downloads (else the API client does); neither may carry
    a default ``Authorization`` header. ``download_origins`` adds exact origins to the CDN
    allow-list (a sandbox on loopback only).
    """

    name = "fal"

    def __init__(
        self,
        settings: FalSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        download_client: httpx.AsyncClient | None = None,
        download_origins: tuple[str, ...] = (),
    ) -> None:
        for given in (http_client, download_client):
            if given is not None and "authorization" in given.headers:
                raise ConfigError("fal HTTP client: must not carry a default Authorization header")
        self.settings = settings
        self._timeout = settings.api_timeout()
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._download_client = download_client or self._client
        self._auth = KeyAuth(settings.key)
        self._voices: dict[str, str] = {}
        self._voice_lock = asyncio.Lock()
        self.download_policy = download_policy(settings, settings.cdn_domains, download_origins)
        self.calls = CallCounter()

    def __repr__(self) -> str:
        return f"FalProvider(queue_url={self.settings.queue_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter created it."""
        if self._owns_client:
            await self._client.aclose()

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """The exact JSON :meth:`submit` sends for ``spec`` (voices shown by source until created)."""
        return fal_wire.build_body(spec, self.settings)

    # --- plumbing -------------------------------------------------------------------------

    async def _retrying(
        self, hook: Callable[[Exception], bool | float], call: Callable[[], Awaitable[T]]
    ) -> T:
        return await retrying(self.settings, hook, call)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        kind: str,
        request_id: str | None = None,
        json: dict[str, Any] | None = None,
        submit: bool = False,
    ) -> dict[str, Any]:
        """One HTTP call; the JSON object answered (errors raised as ours)."""
        if request_id is not None:
            self.calls.add(request_id, kind)
        http = {"headers": API_HEADERS, "auth": self._auth, "timeout": self._timeout}
        response = await send(
            self._client, method, url, operation=operation, submit=submit, json=json, **http
        )
        return _answer(response, operation=operation, request_id=request_id, submit=submit)

    def _request_url(self, request_id: str, suffix: str = "") -> str:
        base = fal_wire.requests_base(self.settings, self.settings.app_prefix)
        return f"{base}/{quote(request_id, safe='')}{suffix}"

    async def _enqueue(self, app: str, body: dict[str, Any], operation: str) -> fal_wire.QueueSubmitAnswer:
        async def once() -> fal_wire.QueueSubmitAnswer:
            data = await self._call(
                "POST",
                f"{self.settings.queue_url}/{app}",
                operation=operation,
                kind="submit",
                json=body,
                submit=True,
            )
            try:
                return fal_wire.QueueSubmitAnswer.model_validate(data)
            except ValidationError as exc:
                raise SubmitOutcomeUnknown(
                    f"{operation}: the answer has no request_id; a request may exist"
                ) from exc

        return await self._retrying(submit_hook, once)

    # --- voices ---------------------------------------------------------------------------

    async def voice_id(self, source: str) -> str:
        """fal's voice id for a script's voice file or URL, created once per adapter (paid):
        concurrent submits needing the same voice wait for the one creation."""
        async with self._voice_lock:
            if (known := self._voices.get(source)) is None:
                known = self._voices[source] = await self._create_voice(source)
            return known

    async def _create_voice(self, source: str) -> str:
        url = await asyncio.to_thread(voice_source_url, source)
        answer = await self._enqueue(self.settings.voice_app, {"voice_url": url}, f"create voice {source}")
        rid = answer.request_id
        deadline = time.monotonic() + self.settings.voice_wait_s
        while not (status := await self.status(rid)).state.is_terminal:
            if time.monotonic() > deadline:
                raise GenerationTimeout(f"create voice {source}: not done in time", request_id=rid)
            await asyncio.sleep(min(2.0, max(0.05, self.settings.voice_wait_s / 600)))
        if status.state is not JobState.COMPLETED:
            raise GenerationFailed(f"create voice {source}: {status.raw_status}", request_id=rid)
        output = await self._result_body(rid)
        voice = output.get("voice_id")
        if not isinstance(voice, str | int) or isinstance(voice, bool):
            raise GenerationFailed(f"create voice {source}: the result has no voice_id", request_id=rid)
        return str(voice)

    async def _with_voices(self, spec: GenerationSpec) -> GenerationSpec:
        if not self.settings.voices or not any(e.voice and not e.voice_id for e in spec.elements):
            return spec
        elements: list[ElementRef] = []
        for element in spec.elements:
            if element.voice and not element.voice_id:
                element = replace(element, voice_id=await self.voice_id(element.voice))
            elements.append(element)
        return replace(spec, elements=tuple(elements))

    # --- the Provider interface -------------------------------------------------------------

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Free checks: a key is configured, and every request is one fal's endpoints take."""
        if self.settings.key is None:
            raise AuthError("no fal.ai key: set FAL_KEY, or rehearse with --rehearse")
        problems = [f"request {i + 1}: {p}" for i, spec in enumerate(specs) for p in check_spec(spec)]
        if problems:
            raise BadRequest("fal refuses these requests:\n" + "\n".join(problems))

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create one paid request (its voices first). Retried only on 429 or a failed connect."""
        spec = await self._with_voices(spec)
        app = fal_wire.app_id(self.settings, spec)
        answer = await self._enqueue(app, self.build_body(spec), f"submit {app}")
        return Submission(
            request_id=answer.request_id,
            model_id=app,
            status_url=answer.status_url,
            result_url=answer.response_url,
            cancel_url=answer.cancel_url,
            submitted_at=time.time(),
        )

    async def status(self, request_id: str) -> StatusInfo:
        """The current state of ``request_id``; a completed one that failed reads as failed."""
        return (await self._status(request_id))[0]

    async def _status(self, request_id: str) -> tuple[StatusInfo, str | None]:
        async def once() -> tuple[StatusInfo, str | None]:
            data = await self._call(
                "GET",
                self._request_url(request_id, "/status"),
                operation=f"status {request_id}",
                kind="status",
                request_id=request_id,
            )
            answer = parse_answer(fal_wire.QueueStatusAnswer, data, f"status {request_id}")
            state = _STATES.get(answer.status.upper(), JobState.RUNNING)
            if state is JobState.COMPLETED and answer.error:
                state = JobState.FAILED
            return StatusInfo(request_id, state, answer.status, answer.queue_position), answer.error

        return await self._retrying(free_call_hook, once)

    async def _result_body(self, request_id: str) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            return await self._call(
                "GET",
                self._request_url(request_id),
                operation=f"result {request_id}",
                kind="result",
                request_id=request_id,
            )

        return await self._retrying(free_call_hook, once)

    async def result(self, request_id: str) -> ResultInfo:
        """The outcome of ``request_id``, or its state while unfinished.

        fal has no cost in its answers: the engine bills the planned cost (fal's price table).
        A completed request whose result fal refuses with a 4xx (other than auth and rate
        limits) failed: fal answers a failed generation's result with its error ``detail``.
        """
        status, error = await self._status(request_id)
        if status.state is JobState.FAILED:
            return ResultInfo(request_id, JobState.FAILED, status.raw_status, error=error)
        if status.state is not JobState.COMPLETED:
            return ResultInfo(request_id, status.state, status.raw_status)
        try:
            output = await self._result_body(request_id)
        except BadRequest as exc:
            return ResultInfo(request_id, JobState.FAILED, status.raw_status, error=str(exc))
        url = fal_wire.video_url(output)
        if url is None:
            raise UnreadableAnswer(f"result {request_id}: no video.url in the output")
        return ResultInfo(request_id, JobState.COMPLETED, status.raw_status, video_urls=(url,))

    async def cancel(self, request_id: str) -> CancelOutcome:
        """Cancel ``request_id``: a queued request is removed; a running one gets a signal it may
        ignore, so it is reported as still billing (fal's cancel docs)."""
        before = await self.status(request_id)

        async def once() -> str:
            try:
                data = await self._call(
                    "PUT",
                    self._request_url(request_id, "/cancel"),
                    operation=f"cancel {request_id}",
                    kind="cancel",
                    request_id=request_id,
                )
            except BadRequest as exc:  # 400 ALREADY_COMPLETED, 404 NOT_FOUND
                detail = exc.detail if isinstance(exc.detail, str) else ""
                return detail or fal_wire.ALREADY_COMPLETED
            return parse_answer(fal_wire.CancelAnswer, data, f"cancel {request_id}").status

        outcome = await self._retrying(free_call_hook, once)
        cancelled = outcome == fal_wire.CANCELLATION_REQUESTED and before.state is JobState.QUEUED
        ended = before.state in (JobState.FAILED, JobState.CANCELLED)
        return CancelOutcome(
            request_id=request_id,
            cancelled=cancelled,
            still_billing=not cancelled and not ended,
            raw_outcome=outcome,
            state=JobState.CANCELLED if cancelled else before.state,
        )

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Download and verify the clip at ``url`` (without the key; retried: downloads are free)."""
        attempts = 0

        async def once() -> DownloadedClip:
            nonlocal attempts
            attempts += 1
            return await download_clip(self._download_client, url, dest, spec, self.download_policy)

        clip = await self._retrying(free_call_hook, once)
        return replace(clip, attempts=attempts)


@contextlib.asynccontextmanager
async def open_fal(
    settings: FalSettings,
    *,
    rehearse: bool = False,
    api_client: httpx.AsyncClient | None = None,
    download_client: httpx.AsyncClient | None = None,
    image_transport: str = "auto",
    shared_url: str | None = None,
    archive: str | None = None,
    sandbox_config: object | None = None,
    hosts: Mapping[str, str] | None = None,
) -> AsyncIterator[OpenedProvider]:
    """fal opened from ``settings`` as an ``OpenedProvider`` (see :mod:`.selection`).

    With ``rehearse``, the real adapter runs against a realistic sandbox speaking fal's queue API
    over TLS under ``*.rehearsal.fal.media`` / ``queue.rehearsal.fal.run`` names, with no key
    needed (:mod:`pipeline.providers.rehearsal`).
    """
    from pipeline.providers import transport
    from pipeline.providers.images import choose_image_transport
    from pipeline.providers.selection import OpenedProvider, ProviderName

    async with contextlib.AsyncExitStack() as stack:
        verify = None
        handle: object | None = None
        if rehearse:
            from pipeline.providers.rehearsal import fal_rehearsal_sandbox

            cm = fal_rehearsal_sandbox(
                latency_scale=getattr(sandbox_config, "latency_scale", 0.02),
                render_scale=getattr(sandbox_config, "render_scale", 1.0),
            )
            rehearsal = await asyncio.to_thread(cm.__enter__)
            stack.push_async_callback(asyncio.to_thread, cm.__exit__, None, None, None)
            settings = settings.model_copy(update={"queue_url": rehearsal.queue_url, "key": rehearsal.key})
            hosts, verify, handle = rehearsal.hosts, rehearsal.ssl_context, rehearsal.handle
        timeout = settings.api_timeout()
        api = api_client or await stack.enter_async_context(
            transport.api_client(timeout, verify=verify, hosts=hosts)
        )
        cdn = download_client or await stack.enter_async_context(
            transport.download_client(
                timeout, allow_private=settings.allow_private_network or rehearse, verify=verify, hosts=hosts
            )
        )
        images = choose_image_transport(image_transport, shared_url=shared_url, archive=archive)
        stack.push_async_callback(images.aclose)
        provider = FalProvider(settings, http_client=api, download_client=cdn)
        yield OpenedProvider(
            name=ProviderName.FAL, provider=provider, images=images, sandbox=handle, rehearsal=rehearse
        )
