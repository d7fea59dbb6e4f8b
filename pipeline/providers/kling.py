"""The adapter of Kling's own API (``provider: kling``): never an unknown submit.

Example::

    async with open_kling(load_section("kling", KlingSettings, {})) as opened:
        sub = await opened.provider.submit(spec)

Every submit carries our id of the attempt (``spec.external_id``) as ``external_task_id``. When
the answer to a submit is lost (timeout, reset connection, 5xx after sending, garbage), the
adapter looks the task up by that id: found, it is the submission; not found, the API never
created it, and the same body (same id) is sent again. A lost answer therefore never becomes
:class:`~pipeline.errors.SubmitOutcomeUnknown`; only when even the look-up cannot be made (the
API unreachable throughout) is the outcome unknown. A duplicate-id refusal is read the same
way: the task exists, look it up. Wire details and their sources: :mod:`pipeline.providers.kling_wire`.

Elements with images go by id on image2video (``element_list``): each is created once per
adapter through the element API before the first submit that references it
(:mod:`pipeline.providers.kling_elements`; free of charge).

The API has no cancel: :meth:`KlingProvider.cancel` reports the task as still billing. Results
carry no price (Kling bills prepaid units), so the engine books the planned cost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from pipeline.errors import (
    AuthError,
    BadRequest,
    ProviderError,
    SubmitOutcomeUnknown,
    TransportError,
    UpstreamError,
)
from pipeline.generation import ElementRef, GenerationSpec
from pipeline.providers import kling_elements as ke
from pipeline.providers import kling_wire as kw
from pipeline.providers.answers import send
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
from pipeline.providers.http_knobs import download_policy, retrying
from pipeline.providers.kling_settings import KlingSettings
from pipeline.providers.retry import free_call_hook, submit_hook
from pipeline.providers.runcomfy import API_HEADERS
from pipeline.providers.wire import UnreadableAnswer

T = TypeVar("T")


class _NotCreated(Exception):
    """The look-up after a lost answer found no task: the submit may be sent again."""


def _retry_submit(exc: Exception) -> bool | float:
    return True if isinstance(exc, _NotCreated) else submit_hook(exc)


class KlingProvider:
    """Kling's task API over one ``httpx.AsyncClient`` (see the module docstring).

    ``download_client`` carries the clip downloads (never the token); ``download_origins`` adds
    exact origins to the CDN allow-list (a sandbox only).
    """

    name = "kling"

    def __init__(
        self,
        settings: KlingSettings,
        *,
        http_client: httpx.AsyncClient,
        download_client: httpx.AsyncClient | None = None,
        download_origins: tuple[str, ...] = (),
    ) -> None:
        if settings.access_key is None or settings.secret_key is None:
            raise AuthError("no Kling key pair: set KLING_ACCESS_KEY and KLING_SECRET_KEY")
        self.settings = settings
        self.base_url = settings.base_url
        self._client = http_client
        self._download_client = download_client or http_client
        self._auth = kw.KlingJwtAuth(settings.access_key, settings.secret_key, ttl_s=settings.token_ttl_s)
        self._timeout = settings.api_timeout()
        #: Which endpoint each task id belongs to (a task is read under its creating path).
        self._kinds: dict[str, str] = {}
        self.download_policy = download_policy(settings, settings.cdn_domains, download_origins)
        self.calls = CallCounter()
        #: Elements sent by id: each created once per adapter (pipeline.providers.kling_elements).
        self.elements = ke.ElementMaker(
            self._element_call,
            tag=settings.element_tag,
            image_value=kw.image_value,
            poll_s=settings.element_poll_s,
            timeout_s=settings.element_timeout_s,
        )
        #: Submits whose answer was lost and that a look-up resolved (found, or sent again).
        self.recovered_submits = 0

    def __repr__(self) -> str:
        return f"KlingProvider(base_url={self.base_url!r})"

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """The exact JSON :meth:`submit` sends for ``spec`` (an element this adapter has not created
        yet shows ``element_id: null`` and the body that will create it)."""
        known = {e.name: self.elements.known(e) for e in self._natives(spec)}
        return self._body(spec, {name: i for name, i in known.items() if i is not None})

    def _natives(self, spec: GenerationSpec) -> tuple[ElementRef, ...]:
        return ke.native_elements(
            spec, max_elements=self.settings.max_elements, single_image=self.settings.single_image_elements
        )

    def _body(self, spec: GenerationSpec, element_ids: Mapping[str, ke.ElementId]) -> dict[str, Any]:
        return kw.body_for(spec, self.settings, element_ids)

    # --- plumbing ---------------------------------------------------------------------------

    async def _retrying(
        self, hook: Callable[[Exception], bool | float], call: Callable[[], Awaitable[T]]
    ) -> T:
        return await retrying(self.settings, hook, call)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Mapping[str, Any] | None = None,
        submit: bool = False,
    ) -> object:
        """One API call; the answer's ``data``. A lost submit answer raises SubmitOutcomeUnknown."""
        url = f"{self.base_url}{path}"
        http = {"headers": API_HEADERS, "auth": self._auth, "timeout": self._timeout}
        response = await send(
            self._client, method, url, operation=operation, submit=submit, json=json, **http
        )
        error = kw.error_of(response, operation=operation)
        if error is not None:
            if submit and isinstance(error, UpstreamError):
                # A 5xx (or an unreadable 200) does not prove the task was not created.
                raise SubmitOutcomeUnknown(
                    str(error), status_code=error.status_code, error_code=error.error_code
                )
            raise error
        return response.json().get("data")

    async def _element_call(
        self, method: str, path: str, operation: str, json: Mapping[str, Any] | None
    ) -> object:
        # Element calls are free (creating one bills nothing), so any of them may be repeated.
        return await self._retrying(
            free_call_hook, lambda: self._call(method, path, operation=operation, json=json)
        )

    def _path(self, kind: str, task_id: str = "") -> str:
        return f"/v1/videos/{kind}" + (f"/{quote(task_id, safe='')}" if task_id else "")

    async def _task(self, task_id: str, *, kind: str = "status") -> kw.Task:
        """The task behind ``task_id`` (free, retried), under its creating path when known."""
        self.calls.add(task_id, kind)
        known = self._kinds.get(task_id)
        kinds = (known,) if known else kw.KINDS
        for n, path_kind in enumerate(kinds):
            try:
                task = await self._read(path_kind, task_id)
            except BadRequest as exc:
                # A task created by another process (a resumed run): not under this path.
                if exc.status_code == 404 and n + 1 < len(kinds):
                    continue
                raise
            self._kinds[task.task_id] = path_kind
            return task
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, kind: str, some_id: str) -> kw.Task:
        operation = f"query {kind} {some_id}"

        async def once() -> kw.Task:
            return kw.task_of(
                await self._call("GET", self._path(kind, some_id), operation=operation), operation
            )

        return await self._retrying(free_call_hook, once)

    async def _lookup(self, kind: str, external_id: str) -> kw.Task | None:
        """The task created with ``external_id``, or None when there is none (404, or a 400
        saying the task does not exist). Errors other than "absent" propagate."""
        try:
            task = await self._read(kind, external_id)
        except BadRequest as exc:
            if exc.status_code in (400, 404):
                return None
            raise
        return task if task.external_task_id in (None, external_id) else None

    # --- the Provider interface -------------------------------------------------------------

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Free checks: every request within the API's documented limits (BadRequest, 65)."""
        for spec in specs:
            problems = kw.check_spec(spec, self.build_body(spec) if spec.tier in kw.MODES else None)
            if problems:
                raise BadRequest(f"Kling request of {spec.duration} s: " + "; ".join(problems))

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create one task; a lost answer is resolved by ``external_task_id`` (module docstring).

        The elements it references by id are created first (once per adapter, free)."""
        body = self._body(spec, await self.elements.ids(self._natives(spec)))
        kind = kw.kind_of(spec)
        external = body.get("external_task_id")
        operation = f"submit {kind}"

        async def resolve(cause: ProviderError) -> Submission:
            if not isinstance(external, str):
                raise cause
            try:
                found = await self._lookup(kind, external)
            except ProviderError as exc:
                raise SubmitOutcomeUnknown(
                    f"{cause}; looking the task up by external_task_id {external} failed too ({exc}): "
                    "it may exist and be billed",
                ) from exc
            self.recovered_submits += 1
            if found is None:
                raise _NotCreated(external) from cause
            return self._submission(found, kind, spec)

        async def once() -> Submission:
            try:
                data = await self._call("POST", self._path(kind), operation=operation, json=body, submit=True)
                return self._submission(kw.task_of(data, operation), kind, spec)
            except SubmitOutcomeUnknown as exc:
                return await resolve(exc)
            except UnreadableAnswer as exc:
                return await resolve(exc)
            except BadRequest as exc:
                if kw.is_duplicate(exc):
                    return await resolve(exc)
                raise

        try:
            return await self._retrying(_retry_submit, once)
        except _NotCreated as exc:
            # Every look-up said "not created": nothing was billed, so this is a plain failure.
            raise TransportError(
                f"{operation}: no answer to {self.settings.max_attempts} submits of external_task_id "
                f"{exc}, and the API has no such task: nothing was created"
            ) from exc

    def _submission(self, task: kw.Task, kind: str, spec: GenerationSpec) -> Submission:
        self._kinds[task.task_id] = kind
        return Submission(
            request_id=task.task_id,
            model_id=f"{self.settings.model_name}/{spec.tier.value}/{kind}",
            submitted_at=time.time(),
        )

    async def status(self, request_id: str) -> StatusInfo:
        """The task's current state (free; retried)."""
        task = await self._task(request_id)
        return StatusInfo(request_id=task.task_id, state=task.state, raw_status=task.status)

    async def result(self, request_id: str) -> ResultInfo:
        """The task's outcome (its video URLs once ``succeed``), or its state while unfinished."""
        return self._result_of(await self._task(request_id, kind="result"))

    async def poll_result(self, request_id: str) -> ResultInfo:
        """One look: the query answer carries state and videos together (counted as ``status``)."""
        return self._result_of(await self._task(request_id))

    @staticmethod
    def _result_of(task: kw.Task) -> ResultInfo:
        return ResultInfo(
            request_id=task.task_id,
            state=task.state,
            raw_status=task.status,
            video_urls=task.video_urls if task.state is JobState.COMPLETED else (),
            error=task.status_msg if task.state is JobState.FAILED else None,
        )

    async def cancel(self, request_id: str) -> CancelOutcome:
        """The API cannot cancel a task: it runs to its end and is billed unless it fails."""
        task = await self._task(request_id, kind="cancel")
        return CancelOutcome(
            request_id=task.task_id,
            cancelled=False,
            still_billing=task.state is not JobState.FAILED,
            raw_outcome="not supported by the API",
            state=task.state,
        )

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Download and verify the clip (retried; downloads are free), without the token."""
        attempts = 0

        async def once() -> DownloadedClip:
            nonlocal attempts
            attempts += 1
            return await download_clip(self._download_client, url, dest, spec, self.download_policy)

        clip = await self._retrying(free_call_hook, once)
        return DownloadedClip(**{**clip.__dict__, "attempts": attempts})

    async def aclose(self) -> None:
        """Nothing of its own to close: the clients belong to whoever opened the adapter."""


@contextlib.asynccontextmanager
async def open_kling(
    settings: KlingSettings,
    *,
    rehearse: bool = False,
    api_client: httpx.AsyncClient | None = None,
    download_client: httpx.AsyncClient | None = None,
    image_transport: str = "auto",
    shared_url: str | None = None,
    archive: str | None = None,
    latency_scale: float = 0.02,
    render_scale: float = 1.0,
) -> AsyncIterator[Any]:
    """Open the Kling adapter (an :class:`~pipeline.providers.selection.OpenedProvider`).

    With ``rehearse`` the real adapter talks to a realistic sandbox in this process that speaks
    Kling's API over TLS under ``*.rehearsal.klingai.com`` with a throwaway key pair
    (:mod:`pipeline.providers.rehearsal`); no key needs to be configured.
    """
    import asyncio

    from pipeline.providers import transport
    from pipeline.providers.images import choose_image_transport
    from pipeline.providers.selection import OpenedProvider, ProviderName

    async with contextlib.AsyncExitStack() as stack:
        verify = None
        hosts: dict[str, str] | None = None
        handle: object | None = None
        if rehearse:
            from pipeline.providers.rehearsal import kling_rehearsal_sandbox

            cm = kling_rehearsal_sandbox(latency_scale=latency_scale, render_scale=render_scale)
            rehearsal = await asyncio.to_thread(cm.__enter__)
            stack.push_async_callback(asyncio.to_thread, cm.__exit__, None, None, None)
            settings = settings.model_copy(
                update={
                    "base_url": rehearsal.base_url,
                    "access_key": rehearsal.access_key,
                    "secret_key": rehearsal.secret_key,
                    # The sandbox makes an element in a moment scaled like its renders.
                    "element_poll_s": min(settings.element_poll_s, 0.1),
                }
            )
            hosts, verify, handle = rehearsal.hosts, rehearsal.ssl_context, rehearsal.handle
        if not settings.has_keys:
            raise AuthError("no Kling key pair: set KLING_ACCESS_KEY and KLING_SECRET_KEY, or use --rehearse")
        timeout = settings.api_timeout()
        api = api_client
        if api is None:
            api = await stack.enter_async_context(transport.api_client(timeout, verify=verify, hosts=hosts))
        cdn = download_client
        if cdn is None:
            private = settings.allow_private_network or rehearse
            cdn = await stack.enter_async_context(
                transport.download_client(timeout, allow_private=private, verify=verify, hosts=hosts)
            )
        images = choose_image_transport(image_transport, shared_url=shared_url, archive=archive)
        stack.push_async_callback(images.aclose)
        provider = KlingProvider(settings, http_client=api, download_client=cdn)
        yield OpenedProvider(
            name=ProviderName.KLING, provider=provider, images=images, sandbox=handle, rehearsal=rehearse
        )
