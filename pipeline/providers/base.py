"""The provider interface: what every generation provider offers, with typed results.

A provider buys one Kling 3.0 generation per :class:`~pipeline.generation.GenerationSpec`:
``submit`` it, follow it with ``status``, read the ``result``, ``cancel`` it if it is still queued
and ``download`` the clip. Every failure is a :class:`~pipeline.errors.ProviderError` (one error
tree); the provider's own status words are normalised to :class:`JobState`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.generation import GenerationSpec


class JobState(StrEnum):
    """A request's state at the provider, normalised from its status words."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once the request can no longer change (completed, failed or cancelled)."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})

#: Provider status words → state. ``succeeded``/``canceled`` are spellings the docs warn about.
_STATUS_WORDS: dict[str, JobState] = {
    "in_queue": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "running": JobState.RUNNING,
    "processing": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "succeeded": JobState.COMPLETED,
    "success": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "error": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
}


def normalise_status(word: str) -> JobState:
    """Map a provider status word to a :class:`JobState`.

    Unknown words count as still running: the documented advice, and the safe side (we keep
    polling a little longer rather than abandoning a request that may still be billed).
    """
    return _STATUS_WORDS.get(word.strip().lower(), JobState.RUNNING)


@dataclass(frozen=True)
class Submission:
    """An accepted request: the provider created it and will bill it if it completes."""

    request_id: str
    model_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None
    submitted_at: float = 0.0  # time.time() when the answer arrived


@dataclass(frozen=True)
class StatusInfo:
    """One status answer."""

    request_id: str
    state: JobState
    raw_status: str
    queue_position: int | None = None


@dataclass(frozen=True)
class ResultInfo:
    """One result answer; ``video_urls`` is empty until the request completed."""

    request_id: str
    state: JobState
    raw_status: str
    video_urls: tuple[str, ...] = ()
    cost_usd: Decimal | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None

    @property
    def video_url(self) -> str | None:
        """The first video URL, if any."""
        return self.video_urls[0] if self.video_urls else None


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel achieved. ``still_billing`` is the honest part: running jobs are not stopped."""

    request_id: str
    cancelled: bool
    still_billing: bool
    raw_outcome: str
    state: JobState | None = None


@dataclass(frozen=True)
class DownloadedClip:
    """A clip on disk, verified with ffprobe."""

    path: Path
    url: str
    size: int
    sha256: str
    duration: float
    width: int
    height: int
    has_audio: bool
    attempts: int = 1


@dataclass
class CallCounter:
    """HTTP calls made per request id and operation (status calls are what polling costs)."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, request_id: str, operation: str) -> None:
        """Count one HTTP attempt of ``operation`` for ``request_id``."""
        key = (request_id, operation)
        self.calls[key] = self.calls.get(key, 0) + 1

    def get(self, request_id: str, operation: str) -> int:
        """Attempts of ``operation`` made for ``request_id`` so far."""
        return self.calls.get((request_id, operation), 0)


@runtime_checkable
class Provider(Protocol):
    """A generation provider. Implementations: the RunComfy adapter (also used for the sandbox),
    fal (:mod:`pipeline.providers.fal`) and Kling's own API (:mod:`pipeline.providers.kling`)."""

    name: str

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Free checks before any money is reserved for ``specs`` (the whole run's requests).

        Raises BadRequest (65) for a request the model's published input schema refuses, and
        ConfigError (78) when the provider's price disagrees with klingflow's price table.
        """
        ...

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create one paid request; never blindly repeated (see SubmitOutcomeUnknown)."""
        ...

    async def status(self, request_id: str) -> StatusInfo:
        """The request's current state (free; retried on transient errors)."""
        ...

    async def result(self, request_id: str) -> ResultInfo:
        """The request's outcome, or its current state while unfinished (free; retried)."""
        ...

    async def cancel(self, request_id: str) -> CancelOutcome:
        """Best-effort cancel: only queued requests stop; running ones keep billing."""
        ...

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Stream the clip at ``url`` to ``dest`` atomically and verify it against ``spec``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """The exact JSON this provider would submit for ``spec``: pure, no network (``plan --json``)."""
        ...
