"""The render engine: every generation job of a run, durable, budget-capped and resumable.

One job = one planned request. Its states and transitions are the table in
:mod:`pipeline.store.transitions`; the engine runs a job as a loop of steps (submit, follow,
settle), maps each step's outcome to an event (:mod:`pipeline.render.outcomes`) and applies it —
each state written to the job store (:class:`~pipeline.store.base.JobStore`) *before* the step
that could be lost. A completed clip is reused when its sha256 checks; a request bought before
is followed to its clip, never bought again; an unknown one is bought again only with
``resubmit_unknown``; a failed one is regenerated while attempts and budget allow.

``continuity: chain`` narratives run their segments in order, each starting from the previous
clip's last frame; everything else runs concurrently under the provider limits.

The job store is synchronous (SQLAlchemy) and hashing reads whole files: both run in worker
threads, never on the event loop that polls the provider and renews Prefect's leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pipeline.errors import (
    AuthError,
    BadRequest,
    JobBusy,
    NoBalance,
    ProviderError,
    RateLimited,
    RunAborted,
)
from pipeline.generation import GenerationSpec
from pipeline.hashing import sha256_file
from pipeline.media.frames import last_frame
from pipeline.money import format_usd
from pipeline.planning.plan import PlannedRequest
from pipeline.providers.base import JobState, Provider, ResultInfo, Submission
from pipeline.providers.jobs import JobReport, run_job
from pipeline.providers.polling import PollPolicy
from pipeline.render.charging import charge_when_finished
from pipeline.render.job import JobResult, image_identity, job_body, native_spec, with_external_id
from pipeline.render.layout import RunLayout
from pipeline.render.limits import Limits
from pipeline.render.masters import Clip
from pipeline.render.outcomes import (
    BUDGET_EXHAUSTED,
    charged_not_downloaded,
    report_error,
    report_event,
    shortfall,
    submit_error_event,
    unknown_advice,
    where,
)
from pipeline.render.reuse import LibraryStep, base_dir_local
from pipeline.render.shared import ClipShare
from pipeline.store.base import JobStore
from pipeline.store.schema import JobStatus, Spend
from pipeline.store.transitions import Event, allows, step

__all__ = ["BUDGET_EXHAUSTED", "Engine", "EventSink", "JobResult", "SpendSink", "image_identity"]

P = ParamSpec("P")
T = TypeVar("T")

#: ``image_url(path_or_url) -> URL the provider can fetch`` (uploads local files).
ImageUrl = Callable[[str], Awaitable[str]]
#: Wraps one job (the flow makes it a Prefect task run); the default just awaits it.
JobWrapper = Callable[[PlannedRequest, Callable[[], Awaitable["JobResult"]]], Awaitable["JobResult"]]
#: Progress: (event, request, detail).
EventSink = Callable[[str, PlannedRequest, str], None]
#: The run's money as the store has it, each time it changes (and once when a pass starts).
SpendSink = Callable[[Spend], None]

#: Pause before trying again after the provider said 429 on a submit, when it gave no hint.
DEFAULT_SLOW_DOWN_S = 5.0
_NO_PREVIOUS_CLIP = "the previous segment has no clip to continue from"


@dataclass
class _Attempt:
    """A job as the engine follows it: its key and its state in the transition table's terms."""

    key: str
    state: JobStatus


@dataclass
class Engine:
    """Runs generation jobs for one run. Construct once per run; call :meth:`run_pass`."""

    run_id: str
    provider: Provider
    image_url: ImageUrl
    store: JobStore
    layout: RunLayout
    limits: Limits
    base_dir: Path
    policy: PollPolicy = field(default_factory=PollPolicy)
    max_regenerations: int = 2
    resubmit_unknown: bool = False
    #: Shared storage of clips (``KLINGFLOW_SHARED_URL``): any worker can resume and stitch.
    shared: ClipShare | None = None
    #: The clip library: requests it holds are taken from it, never bought (pipeline.render.reuse).
    library: LibraryStep | None = None
    wrap: JobWrapper | None = None
    on_event: EventSink | None = None
    on_spend: SpendSink | None = None
    #: How the user named the script, for the commands messages suggest.
    script_file: str = "SCRIPT"
    #: Requests (job keys) submitted by this process and not finished: cancelled on Ctrl-C.
    live: dict[str, str] = field(default_factory=dict)
    #: ``(clip, frame)``: writes a clip's last frame, where a chained segment starts (ffmpeg).
    extract_last_frame: Callable[[Path, Path], object] = last_frame

    def _emit(self, event: str, request: PlannedRequest, detail: str = "") -> None:
        if self.on_event is not None:
            self.on_event(event, request, detail)

    async def _db(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A job-store call in a worker thread (it may wait seconds for a database lock)."""
        return await asyncio.to_thread(call, *args, **kwargs)

    async def report_spend(self) -> None:
        """Hand the run's spend, as the store has it, to ``on_spend`` (if set)."""
        if self.on_spend is not None:
            self.on_spend(await self._db(self.store.spend, self.run_id))

    async def _shortfall(self, request: PlannedRequest, key: str) -> str:
        """Why ``--resubmit-unknown`` did not buy the job again: by how much the budget is short."""
        spend = await self._db(self.store.spend, self.run_id)
        job = await self._db(self.store.get, key)
        place = where(request.narrative, request.variant, request.pass_, request.segment)
        return shortfall(self.run_id, place, request.cost, spend.limit, spend.committed, job.reserved)

    def local(self, path_or_url: str | None) -> str | None:
        """A script's image reference as an absolute path (local files) or the URL itself."""
        return base_dir_local(self.base_dir)(path_or_url)

    async def _body(self, request: PlannedRequest, start_image: str | None) -> dict[str, Any]:
        """What determines the job's output; images by content, never by (changing) URL."""
        end_image = self.local(request.end_image)
        return await asyncio.to_thread(job_body, request, start_image, end_image, self.local)

    async def generate(self, request: PlannedRequest, start_image: str | None) -> JobResult:
        """Run (or resume) one job; through the wrapper when there is one."""
        if self.wrap is None:
            return await self._generate(request, start_image)
        return await self.wrap(request, lambda: self._generate(request, start_image))

    async def _generate(self, request: PlannedRequest, start_image: str | None) -> JobResult:
        """The library's clip when it has one, else the job (whose clip then joins the library)."""
        if self.library is None:
            return await self._job(request, start_image)
        dest = self.layout.clip(request.narrative, request.variant, request.pass_, request.segment)
        return await self.library.through(request, dest, lambda: self._job(request, start_image), self._emit)

    async def _job(self, request: PlannedRequest, start_image: str | None) -> JobResult:
        """The job's loop: read where it stands, then apply attempts until the table ends it."""
        body = await self._body(request, start_image)
        job = await self._db(
            self.store.upsert_job,
            run_id=self.run_id,
            narrative=request.narrative,
            variant=request.variant,
            pass_=request.pass_,
            segment=request.segment,
            body=body,
        )
        dest = self.layout.clip(request.narrative, request.variant, request.pass_, request.segment)
        attempt = _Attempt(job.key, job.status)
        if job.status == JobStatus.COMPLETED:
            reused = await self._reuse(request, job.key, dest)
            if reused is not None:
                return reused
            # The clip is gone or damaged; the request was paid: followed again as charged.
            attempt.state = JobStatus.CHARGED
        if job.status == JobStatus.SUBMITTING and not job.request_id:
            # Interrupted between reserving and the provider's answer: the request may exist.
            await self._apply(attempt, Event.ANSWER_LOST, error="interrupted while submitting")
            job = await self._db(self.store.get, job.key)
        if attempt.state is JobStatus.UNKNOWN and not self.resubmit_unknown:
            advice = unknown_advice(
                self.run_id, self.script_file, job.error or "its submit answer was lost", job.reserved
            )
            self._emit("unknown", request, advice)
            return JobResult(request, JobStatus.UNKNOWN, error=advice)
        submission: Submission | None = None
        if job.request_id and attempt.state in (JobStatus.SUBMITTED, JobStatus.CHARGED):
            # Bought before (a completed one's clip is gone or damaged): follow that request to
            # its clip, never buy it again.
            submission = Submission(request_id=job.request_id, model_id=body["model_id"])
        failures = 0
        while True:
            resumed = submission is not None
            result = await self._attempt(request, attempt, dest, start_image, submission)
            submission = None
            if resumed and result.status == JobStatus.CANCELLED:
                # Cancelled while queued (Ctrl-C on an earlier run): never billed, buy it now.
                continue
            if result.ok or result.status != JobStatus.FAILED or result.error == BUDGET_EXHAUSTED:
                return result
            failures += 1
            if failures > self.max_regenerations:
                return result
            self._emit("regenerate", request, result.error or "")

    async def _reuse(self, request: PlannedRequest, key: str, dest: Path) -> JobResult | None:
        job = await self._db(self.store.get, key)
        found: Path | None = None
        # The recorded file, or this run directory's own copy (a clip another worker downloaded
        # is recorded under that worker's path and fetched to ours from shared storage).
        for candidate in dict.fromkeys(p for p in (Path(job.file) if job.file else None, dest) if p):
            if candidate.is_file() and await asyncio.to_thread(sha256_file, candidate) == job.sha256:
                found = candidate
                break
        if (
            found is None
            and job.sha256
            and self.shared is not None
            and await self.shared.get(request, dest, job.sha256)
        ):
            found = dest
        if found is None:
            # The clip is gone or damaged; the request was paid: download it again, never re-buy.
            return None
        self._emit("reused", request)
        clip = Clip(request, found, job.sha256 or "", job.request_id or "", job.charged)
        return JobResult(request, JobStatus.COMPLETED, clip=clip, reused=True)

    def _cost(self, request: PlannedRequest, result: ResultInfo | None) -> Decimal:
        """What the provider billed: its own figure when it gives one, else the planned cost."""
        if result is not None and result.cost_usd is not None:
            return result.cost_usd
        return request.cost

    async def _charge(self, request: PlannedRequest, attempt: _Attempt, result: ResultInfo) -> None:
        """Event ``completed_result``: the provider says the request completed, so it billed it:
        record the charge now, before the download that may fail or be interrupted."""
        cost = self._cost(request, result)
        if attempt.state is JobStatus.SUBMITTED:
            attempt.state = step(attempt.state, Event.COMPLETED_RESULT).state
        if await self._db(self.store.mark_charged, attempt.key, result.request_id, cost):
            self._emit("charged", request, f"{result.request_id}: {format_usd(cost, exact=True)}")
            await self.report_spend()

    async def _apply(self, attempt: _Attempt, event: Event, *, error: str | None = None) -> JobStatus:
        """Apply ``event`` to the job: its next state from the table, written to the store."""
        attempt.state = step(attempt.state, event).state
        if event is Event.ANSWER_LOST:
            await self._db(self.store.mark_unknown, attempt.key, error or "its submit answer was lost")
        elif event in (Event.REJECTED, Event.FAILED, Event.CANCELLED):
            await self._db(self.store.mark_ended, attempt.key, attempt.state, error=error)
            await self.report_spend()
        return attempt.state

    async def _attempt(
        self,
        request: PlannedRequest,
        attempt: _Attempt,
        dest: Path,
        start_image: str | None,
        submission: Submission | None,
    ) -> JobResult:
        """One try at the job: submit (unless following ``submission``), follow, settle.

        The in-flight slot is held while the request is queued or running at the provider, and
        freed when it finishes: reading the result and downloading need no provider slot.
        """
        slot = contextlib.AsyncExitStack()
        await slot.enter_async_context(self.limits.in_flight())
        async with slot:
            spec = request.spec()
            if submission is None:
                sent = await self._submit_step(request, attempt, start_image)
                if isinstance(sent, JobResult):
                    return sent
                spec, submission = sent
            else:
                self._emit("resumed", request, submission.request_id)
            report = await self._follow(request, attempt, spec, dest, submission, slot.aclose)
        return await self._settle(request, attempt, report, submission.request_id)

    async def _submit_step(
        self, request: PlannedRequest, attempt: _Attempt, start_image: str | None
    ) -> tuple[GenerationSpec, Submission] | JobResult:
        """Upload images, reserve, submit: the accepted request, or how the attempt ended."""
        try:
            # Uploads and the wait for a submit turn come before the reservation, so that
            # "submitting" in the store means a paid request may really be out.
            end_image = self.local(request.end_image)
            start_url = await self.image_url(start_image) if start_image else None
            end_url = await self.image_url(end_image) if end_image else None
            spec = await native_spec(request, start_url, end_url, self.local, self.image_url)
            submission = await self._submit(attempt, spec, request.cost)
        except JobBusy as exc:
            # Another flow run of this run id got here first (the run lock prevents it on a
            # server; two local runs of one script may still race): leave it be.
            self._emit("failed", request, str(exc))
            return JobResult(request, exc.status, error=f"{exc} (rerun once it has finished)")
        except ProviderError as exc:
            event = submit_error_event(exc)
            if not allows(attempt.state, event):
                # Failed before the reservation (an upload) of a job the table keeps as it is
                # (an unknown one stays unknown and reserved): nothing to write.
                if isinstance(exc, AuthError | NoBalance):
                    raise RunAborted(exc) from exc
                self._emit("failed", request, str(exc))
                return JobResult(request, attempt.state, error=str(exc))
            state = await self._apply(attempt, event, error=str(exc))
            if event is Event.ANSWER_LOST:
                advice = unknown_advice(self.run_id, self.script_file, str(exc), request.cost)
                self._emit("unknown", request, advice)
                return JobResult(request, state, error=advice)
            if isinstance(exc, AuthError | NoBalance):
                raise RunAborted(exc) from exc
            # Refused before anything was created (4xx): nothing billed.
            self._emit("failed", request, str(exc))
            reason = f"refused: {exc}" if isinstance(exc, BadRequest) else str(exc)
            return JobResult(request, state, error=reason)
        if submission is None:
            # The budget refused the reservation: nothing changed in the store.
            if attempt.state is JobStatus.UNKNOWN:
                reason = await self._shortfall(request, attempt.key)
                self._emit("skipped", request, reason)
                return JobResult(request, JobStatus.UNKNOWN, error=reason)
            self._emit("skipped", request, BUDGET_EXHAUSTED)
            return JobResult(request, JobStatus.FAILED, error=BUDGET_EXHAUSTED)
        attempt.state = step(attempt.state, Event.ACCEPTED).state
        await self._db(self.store.mark_submitted, attempt.key, submission.request_id)
        await self.report_spend()
        self._emit("submitted", request, submission.request_id)
        return spec, submission

    async def _submit(self, attempt: _Attempt, spec: GenerationSpec, cost: Decimal) -> Submission | None:
        """Wait for a submit turn, reserve ``cost`` (event ``reserve``, or ``resubmit`` for an
        unknown job), submit; None when the budget refuses.

        A 429 (after the adapter's own waits) created nothing (event ``not_sent``): the
        reservation is released and everybody slows down before the next turn.
        """
        while True:
            await self.limits.before_submit()
            unknown = attempt.state is JobStatus.UNKNOWN
            begun = await self._db(self.store.begin_submit, attempt.key, cost, replace_unknown=unknown)
            if begun is None:
                return None
            attempt.state = begun.status
            await self.report_spend()
            try:
                # Our id for this submit (Kling's external_task_id): the job key and attempt.
                return await self.provider.submit(with_external_id(spec, attempt.key, begun.attempts))
            except RateLimited as exc:
                attempt.state = step(attempt.state, Event.NOT_SENT).state
                await self._db(self.store.mark_not_sent, attempt.key, str(exc))
                self.limits.slow_down(exc.retry_after or DEFAULT_SLOW_DOWN_S * self.policy.latency.scale)

    async def _follow(
        self,
        request: PlannedRequest,
        attempt: _Attempt,
        spec: GenerationSpec,
        dest: Path,
        submission: Submission,
        on_terminal: Callable[[], Awaitable[None]],
    ) -> JobReport:
        """Wait for the request, read its result (charging it), download and verify its clip."""
        self.live[attempt.key] = submission.request_id
        try:
            return await run_job(
                charge_when_finished(self.provider, lambda result: self._charge(request, attempt, result)),
                spec,
                dest,
                policy=self.policy,
                submission=submission,
                on_terminal=on_terminal,
            )
        finally:
            self.live.pop(attempt.key, None)

    async def _settle(
        self, request: PlannedRequest, attempt: _Attempt, report: JobReport, rid: str
    ) -> JobResult:
        """Map how the request ended to an event, apply it, and say how the job ended."""
        event = report_event(report, attempt.state)
        if event is Event.DOWNLOADED and report.clip is not None:
            cost = self._cost(request, report.result)
            clip_path = Path(report.clip.path)
            done = report.clip
            if self.shared is not None:
                # Shared storage first: a job the store calls completed is one any worker can
                # fetch; a kill in between leaves it charged, and a resume downloads it again.
                await self.shared.put(request, clip_path, done.sha256)
            await self._db(
                self.store.mark_completed,
                attempt.key,
                file=str(clip_path),
                sha256=done.sha256,
                size=done.size,
                cost=cost,
            )
            attempt.state = step(attempt.state, event).state
            await self.report_spend()
            self._emit("done", request, rid)
            return JobResult(request, attempt.state, clip=Clip(request, clip_path, done.sha256, rid, cost))
        error = report_error(report)
        if event is Event.DOWNLOAD_FAILED:
            # Billed, but the clip did not arrive (download refused, truncated, invalid): the money
            # is spent (charged when the result said so), the clip is fetched on a rerun.
            if report.result is not None and report.result.state is JobState.COMPLETED:
                await self._charge(request, attempt, report.result)
            state = step(attempt.state, event).state
            message = charged_not_downloaded(error, rid, self._cost(request, report.result))
            self._emit("failed", request, message)
            return JobResult(request, state, error=message)
        state = await self._apply(attempt, event, error=error)
        self._emit("failed", request, error)
        if event is Event.TIMED_OUT:
            return JobResult(request, state, error=f"{error} (rerun to pick it up again)")
        return JobResult(request, state, error=error)

    async def _chain(self, requests: Sequence[PlannedRequest]) -> list[JobResult]:
        results: list[JobResult] = []
        previous: JobResult | None = None
        for request in requests:
            start: str | None
            if request.chained:
                if previous is None or previous.clip is None:
                    previous = JobResult(request, JobStatus.FAILED, error=_NO_PREVIOUS_CLIP)
                    results.append(previous)
                    continue
                frame = self.layout.last_frame(
                    request.narrative, request.variant, request.pass_, request.segment - 1
                )
                frame.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(self.extract_last_frame, previous.clip.path, frame)
                start = str(frame)
            else:
                start = self.local(request.start_image)
            previous = await self.generate(request, start)
            results.append(previous)
        return results

    async def run_pass(self, requests: Sequence[PlannedRequest]) -> list[JobResult]:
        """Run every request of one pass: chains in order, the rest concurrently.

        Returns results in the order of ``requests``.
        """
        groups: dict[tuple[str, str], list[PlannedRequest]] = {}
        for request in requests:
            groups.setdefault((request.narrative, request.variant), []).append(request)
        work: list[Awaitable[list[JobResult]]] = []
        for group in groups.values():
            if any(r.chained for r in group):
                work.append(self._chain(group))
            else:
                work.extend(self._chain([r]) for r in group)
        if self.library is not None:
            await self.library.prepare(requests)
        await self.report_spend()
        tasks = [asyncio.ensure_future(w) for w in work]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            # RunAborted (no balance, bad token): the other jobs stop too, before the provider
            # they use is closed, rather than go on submitting into a run that is over.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        by_request = {id(r.request): r for chunk in done for r in chunk}
        return [by_request[id(r)] for r in requests]

    async def cancel_live(self) -> tuple[list[str], list[str]]:
        """Best-effort cancel of this process's requests in flight (on Ctrl-C).

        Returns (cancelled request ids, request ids that keep running and billing).
        """
        cancelled: list[str] = []
        billing: list[str] = []
        for key, request_id in list(self.live.items()):
            try:
                outcome = await asyncio.wait_for(self.provider.cancel(request_id), 10)
            except (ProviderError, TimeoutError):
                billing.append(request_id)
                continue
            if outcome.cancelled:
                await self._db(
                    self.store.mark_ended, key, JobStatus.CANCELLED, error="cancelled on interrupt"
                )
                cancelled.append(request_id)
            else:
                billing.append(request_id)
        return cancelled, billing
