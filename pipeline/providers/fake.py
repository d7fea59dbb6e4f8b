"""A scripted provider for unit tests: timelines of states, faults and costs, no sockets, no ffmpeg.

Each submitted request follows a :class:`FakeScript`: the states its status looks return one
after another (the last one repeats), what its submit does (answered, answer lost after the
request was created, 429, refused), what it costs, and how many of its downloads fail. Scripts
are taken in submit order from ``scripts`` (then ``default``), or chosen by a function of the
spec and the submit's number. The fake keeps a ledger the way a provider bills: a request is
charged once, when it first reaches ``completed``, whether or not its clip is downloaded.

Downloads write a small placeholder file (not a video) and report it verified: the engine checks
clips by their sha256, which the placeholder has; chained segments need a frame extractor that
does not run ffmpeg (see ``Engine.extract_last_frame`` and :func:`placeholder_frame`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.errors import (
    AuthError,
    BadRequest,
    DownloadIncomplete,
    NoBalance,
    RateLimited,
    SubmitOutcomeUnknown,
    UpstreamError,
)
from pipeline.generation import GenerationSpec
from pipeline.pricing import request_cost
from pipeline.providers.base import (
    CancelOutcome,
    DownloadedClip,
    JobState,
    ResultInfo,
    StatusInfo,
    Submission,
)

#: A generation that queues, runs and completes.
DONE: tuple[JobState, ...] = (JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED)
#: A generation the provider fails (not billed).
FAILS: tuple[JobState, ...] = (JobState.RUNNING, JobState.FAILED)
#: A generation that never finishes (the engine's wait times out).
NEVER: tuple[JobState, ...] = (JobState.RUNNING,)


class SubmitFault(StrEnum):
    """What a submit does instead of answering."""

    #: The request is created (and runs, and bills) but its answer is lost.
    LOST = "lost"
    #: 429: nothing created.
    RATE_LIMITED = "rate_limited"
    #: 400: nothing created.
    REJECTED = "rejected"
    #: 401: nothing created; the run must stop.
    AUTH = "auth"
    #: 402: nothing created; the run must stop.
    NO_BALANCE = "no_balance"


@dataclass(frozen=True)
class FakeScript:
    """The life of one submitted request."""

    timeline: tuple[JobState, ...] = DONE
    submit_fault: SubmitFault | None = None
    #: What the provider bills when it completes; None: the spec's planned price.
    cost: Decimal | None = None
    #: Whether the result answer states the cost (``include_cost``); else the engine uses its own.
    report_cost: bool = True
    #: How many downloads of this request fail (a truncated transfer) before one succeeds.
    download_failures: int = 0
    error: str = "the generation failed"


@dataclass
class FakeRequest:
    """One request the fake created: its script, where it stands, and its bill."""

    request_id: str
    spec: GenerationSpec
    script: FakeScript
    cost: Decimal
    looks: int = 0
    state: JobState = JobState.QUEUED
    charge_count: int = 0
    downloads: int = 0
    answered: bool = True

    @property
    def charged(self) -> bool:
        """The provider billed it."""
        return self.charge_count > 0


ScriptFor = Callable[[GenerationSpec, int], FakeScript]


@dataclass
class FakeProvider:
    """A :class:`~pipeline.providers.base.Provider` following scripts (see the module docstring).

    Example::

        fake = FakeProvider(scripts=[FakeScript(submit_fault=SubmitFault.LOST), FakeScript()])
    """

    scripts: Sequence[FakeScript] = ()
    default: FakeScript = field(default_factory=FakeScript)
    script_for: ScriptFor | None = None
    #: Price per request when a script names none (default: klingflow's price table).
    price: Callable[[GenerationSpec], Decimal] | None = None
    name: str = "fake"
    requests: dict[str, FakeRequest] = field(default_factory=dict)
    submits: int = 0
    preflighted: list[GenerationSpec] = field(default_factory=list)
    #: What happened, in order: ``submit <prompt>``, ``charge <id>``, ``download <id>`` …
    log: list[str] = field(default_factory=list)
    closed: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- the ledger -----------------------------------------------------------------------

    @property
    def billed(self) -> Decimal:
        """What the provider charged in all."""
        return sum((r.cost for r in self.requests.values() if r.charged), Decimal(0))

    # --- the Provider protocol --------------------------------------------------------------

    async def preflight(self, specs: Sequence[GenerationSpec]) -> None:
        """Record the specs; the fake refuses nothing before money."""
        self.preflighted.extend(specs)

    def _script(self, spec: GenerationSpec, number: int) -> FakeScript:
        if self.script_for is not None:
            return self.script_for(spec, number)
        return self.scripts[number] if number < len(self.scripts) else self.default

    def _cost(self, spec: GenerationSpec, script: FakeScript) -> Decimal:
        if script.cost is not None:
            return script.cost
        if self.price is not None:
            return self.price(spec)
        return request_cost(spec.tier, spec.duration, spec.generate_audio)

    def build_body(self, spec: GenerationSpec) -> dict[str, Any]:
        """What the fake would submit: the spec's fields, storyboard and elements as plain data."""
        body: dict[str, Any] = {"prompt": spec.prompt, "duration": spec.duration, "tier": spec.tier.value}
        if spec.shots:
            body["multi_prompt"] = [{"prompt": s.prompt, "duration": s.duration} for s in spec.shots]
        if spec.elements:
            body["elements"] = [{"name": e.name, "image_urls": list(e.image_urls)} for e in spec.elements]
        return body

    async def submit(self, spec: GenerationSpec) -> Submission:
        """Create a request as its script says, or fail the way it says."""
        script = self._script(spec, self.submits)
        self.submits += 1
        self.log.append(f"submit {spec.prompt}")
        fault = script.submit_fault
        if fault is SubmitFault.RATE_LIMITED:
            raise RateLimited("429 too many requests (fake)", status_code=429, retry_after=0.0)
        if fault is SubmitFault.REJECTED:
            raise BadRequest("400 invalid input (fake)", status_code=400)
        if fault is SubmitFault.AUTH:
            raise AuthError("401 bad token (fake)", status_code=401)
        if fault is SubmitFault.NO_BALANCE:
            raise NoBalance("402 no balance (fake)", status_code=402)
        rid = f"fake-{next(self._ids)}"
        request = FakeRequest(rid, spec, script, self._cost(spec, script))
        request.answered = fault is not SubmitFault.LOST
        self.requests[rid] = request
        if not request.answered:
            # Nobody will look at it: it runs its course on its own (and bills if it completes).
            request.looks = len(script.timeline)
            self._settle(request, script.timeline[-1])
            raise SubmitOutcomeUnknown("the submit's answer was lost (fake)")
        return Submission(request_id=rid, model_id=spec.model_id)

    def _look(self, request_id: str) -> FakeRequest:
        request = self.requests[request_id]
        if request.state.is_terminal:
            return request
        timeline = request.script.timeline
        request.looks += 1
        self._settle(request, timeline[min(request.looks - 1, len(timeline) - 1)])
        return request

    def _settle(self, request: FakeRequest, state: JobState) -> None:
        request.state = state
        if state is JobState.COMPLETED:
            request.charge_count += 1  # billed once, as it completes (it cannot complete twice)
            self.log.append(f"charge {request.request_id}")

    async def status(self, request_id: str) -> StatusInfo:
        """The next state of the request's timeline."""
        request = self._look(request_id)
        return StatusInfo(request_id, request.state, request.state.value)

    async def result(self, request_id: str) -> ResultInfo:
        """Where the request stands (output and cost once completed)."""
        request = self.requests[request_id]
        completed = request.state is JobState.COMPLETED
        return ResultInfo(
            request_id=request_id,
            state=request.state,
            raw_status=request.state.value,
            video_urls=(f"https://fake.invalid/{request_id}.mp4",) if completed else (),
            cost_usd=request.cost if completed and request.script.report_cost else None,
            error=request.script.error if request.state is JobState.FAILED else None,
        )

    async def cancel(self, request_id: str) -> CancelOutcome:
        """Cancels a queued request; a running one keeps going (and billing)."""
        request = self.requests[request_id]
        if request.state is JobState.QUEUED:
            request.state = JobState.CANCELLED
            return CancelOutcome(request_id, True, False, "cancelled", JobState.CANCELLED)
        return CancelOutcome(
            request_id, False, not request.state.is_terminal, "not cancellable", request.state
        )

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        """Write a placeholder clip atomically, unless this download is scripted to fail."""
        rid = url.rsplit("/", 1)[-1].removesuffix(".mp4")
        request = self.requests.get(rid)
        if request is None or request.state is not JobState.COMPLETED:
            raise UpstreamError(f"no clip at {url} (fake)", status_code=404)
        request.downloads += 1
        self.log.append(f"download {rid}")
        if request.downloads <= request.script.download_failures:
            raise DownloadIncomplete(f"transfer of {url} cut short (fake)")
        data = f"fake clip of {rid}: {spec.prompt}".encode()
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(data)
        os.replace(part, dest)
        return DownloadedClip(
            path=dest,
            url=url,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            duration=float(spec.duration),
            width=0,
            height=0,
            has_audio=spec.generate_audio,
            attempts=request.downloads,
        )

    async def aclose(self) -> None:
        """Nothing to release."""
        self.closed = True


def placeholder_frame(clip: Path, frame: Path) -> None:
    """Stands for ffmpeg's last-frame extraction in tests: a file naming the clip it came from."""
    frame.write_bytes(b"last frame of " + clip.read_bytes())
