"""Money as the provider sees it: a request is charged the moment it completes.

The provider bills a request when it finishes, whether or not we manage to download its clip.
:class:`ChargeWhenFinished` is the provider as :func:`~pipeline.providers.jobs.run_job` sees it,
with one addition: when a result answer says the request completed, a callback records the
charge (in the job store) *before* ``run_job`` goes on to download the clip. A download that
fails, or a process killed while downloading, therefore never leaves paid money counted as
merely reserved, and a resume knows to fetch the clip without buying it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.generation import GenerationSpec
from pipeline.providers.base import (
    CancelOutcome,
    DownloadedClip,
    JobState,
    Provider,
    ResultInfo,
    StatusInfo,
    Submission,
)

#: Called with the result answer that first (or again) says the request completed.
OnCompleted = Callable[[ResultInfo], Awaitable[None]]


class ChargeWhenFinished:
    """Delegates every call to ``provider``; awaits ``on_completed`` on a completed result.

    Build it with :func:`charge_when_finished`.
    """

    def __init__(self, provider: Provider, on_completed: OnCompleted) -> None:
        self.name = provider.name
        self._provider = provider
        self._on_completed = on_completed

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """See :meth:`Provider.preflight`."""
        await self._provider.preflight(specs)

    async def submit(self, spec: GenerationSpec) -> Submission:
        """See :meth:`Provider.submit`."""
        return await self._provider.submit(spec)

    async def status(self, request_id: str) -> StatusInfo:
        """See :meth:`Provider.status`."""
        return await self._provider.status(request_id)

    async def result(self, request_id: str) -> ResultInfo:
        """The provider's result; a completed one is charged before it is returned."""
        return await self._completed(await self._provider.result(request_id))

    async def cancel(self, request_id: str) -> CancelOutcome:
        """See :meth:`Provider.cancel`."""
        return await self._provider.cancel(request_id)

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """See :meth:`Provider.download`."""
        return await self._provider.download(url, dest, spec)

    async def aclose(self) -> None:
        """Nothing to release: the wrapped provider belongs to the caller."""

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """See :meth:`Provider.build_body`."""
        return self._provider.build_body(spec)

    async def _completed(self, result: ResultInfo) -> ResultInfo:
        if result.state is JobState.COMPLETED:
            await self._on_completed(result)
        return result


class _ChargeWhenFinishedPolling(ChargeWhenFinished):
    """The same, for a provider whose waits look at the result itself (``poll_result``): the
    look that sees the request finished is the one that charges it."""

    async def poll_result(self, request_id: str) -> ResultInfo:
        """The provider's look at the result; a completed one is charged before it is returned."""
        poll: Callable[[str], Awaitable[ResultInfo]] = self._provider.poll_result  # type: ignore[attr-defined]
        return await self._completed(await poll(request_id))


def charge_when_finished(provider: Provider, on_completed: OnCompleted) -> Provider:
    """``provider`` for one job, charging through ``on_completed`` when it completes.

    The wrapper offers exactly the optional capabilities ``provider`` has (``poll_result``), so
    the job is waited for the same way with or without it.
    """
    if callable(getattr(provider, "poll_result", None)):
        return _ChargeWhenFinishedPolling(provider, on_completed)
    return ChargeWhenFinished(provider, on_completed)
