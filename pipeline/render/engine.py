"""The render engine: every generation job of a run, durable, budget-capped and resumable.

One job = one planned request. Its life, each state written to the job store *before* the step
that could be lost (see :mod:`pipeline.store.jobs`)::

    reuse a completed clip (sha256 checked)  |  follow a request submitted before  |  submit:
      reserve its cost on the ledger (refused → the job is skipped, nothing bought)
      → submitting → provider.submit → submitted(request_id) → wait, result
      → charged (the provider billed it: recorded before the download) → download, verify
      → completed  |  failed (released; regenerated while attempts and budget allow)
      a lost submit answer → unknown (kept reserved; resubmitted only with resubmit_unknown)

``continuity: chain`` narratives run their segments in order, each starting from the previous
clip's last frame; everything else runs concurrently under the provider limits.

The job store is synchronous (SQLAlchemy; SQLite waits up to its busy timeout for another
process's write lock) and hashing reads whole files: both run in worker threads, never on the
event loop that also polls the provider and renews Prefect's leases.
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
    SubmitOutcomeUnknown,
)
from pipeline.generation import GenerationSpec
from pipeline.hashing import sha256_file
from pipeline.media.frames import last_frame
from pipeline.planning.plan import PlannedRequest
from pipeline.providers.base import JobState, Provider, ResultInfo, Submission
from pipeline.providers.jobs import JobOutcome, run_job
from pipeline.providers.polling import PollPolicy
from pipeline.render.charging import charge_when_finished
from pipeline.render.layout import RunLayout
from pipeline.render.limits import Limits
from pipeline.render.masters import Clip
from pipeline.render.shared import ClipShare
from pipeline.store.jobs import Job, JobStatus, JobStore, Spend, from_micro

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
#: Why a job was not bought: its cost would have taken the run's spend over the limit.
BUDGET_EXHAUSTED = "not submitted: its cost would take the run over budget.limit_usd"


@dataclass(frozen=True)
class JobResult:
    """How one job ended in this run."""

    request: PlannedRequest
    status: JobStatus | str
    clip: Clip | None = None
    error: str | None = None
    reused: bool = False

    @property
    def ok(self) -> bool:
        """A verified clip is on disk."""
        return self.clip is not None


def image_identity(path_or_url: str | None) -> str | None:
    """How an image input enters a job's identity: its content hash, or the URL itself.

    Reads the whole file: call it from a worker thread (the engine does).
    """
    if path_or_url is None:
        return None
    if path_or_url.startswith(("https://", "http://")):
        return path_or_url
    return "sha256:" + sha256_file(Path(path_or_url))


def usd(amount: Decimal) -> str:
    """Money for a message: cents, or the exact mills when cents would round it."""
    cents = amount.quantize(Decimal("0.01"))
    return f"${cents}" if cents == amount else f"${amount.normalize():f}"


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
    wrap: JobWrapper | None = None
    on_event: EventSink | None = None
    on_spend: SpendSink | None = None
    #: How the user named the script, for the commands messages suggest.
    script_file: str = "SCRIPT"
    #: Requests (job keys) submitted by this process and not finished: cancelled on Ctrl-C.
    live: dict[str, str] = field(default_factory=dict)

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

    # --- messages about money -----------------------------------------------------------------

    def _where(self, request: PlannedRequest) -> str:
        return f"{request.narrative}/{request.variant}/{request.pass_} segment {request.segment}"

    def unknown_advice(self, request: PlannedRequest, reason: str, reserved: Decimal) -> str:
        """What an unknown job may cost and how to settle it."""
        return (
            f"{reason}; the request may exist and be billed up to {usd(reserved)} (kept reserved "
            f"in run {self.run_id}). Look for it in the provider's dashboard or ledger, or buy it "
            f"again with `klingflow run {self.script_file} --resubmit-unknown` (may pay twice: the "
            "lost request then counts as charged)"
        )

    async def _shortfall(self, request: PlannedRequest, job: Job) -> str:
        """Why ``--resubmit-unknown`` did not buy ``job`` again: by how much the budget is short."""
        spend = await self._db(self.store.spend, self.run_id)
        left = max(spend.limit - spend.committed, Decimal(0))
        return (
            f"--resubmit-unknown: buying {self._where(request)} again costs {usd(request.cost)}, "
            f"but run {self.run_id} has {usd(left)} of its {usd(spend.limit)} budget left (short by "
            f"{usd(request.cost - left)}; a resumed run keeps its limit). It stays unknown and may be "
            f"billed up to {usd(from_micro(job.reserved_micro))}: look for the request in the "
            "provider's dashboard or ledger"
        )

    # --- one job ------------------------------------------------------------------------------

    def local(self, path_or_url: str | None) -> str | None:
        """A script's image reference as an absolute path (local files) or the URL itself."""
        if path_or_url is None or path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return str(self.base_dir / path_or_url)

    async def _body(self, request: PlannedRequest, start_image: str | None) -> dict[str, Any]:
        """What determines the job's output; images by content, never by (changing) URL."""
        spec = request.spec(start_image_url=start_image)
        start_id, end_id = await asyncio.to_thread(
            lambda: (image_identity(start_image), image_identity(self.local(request.end_image)))
        )
        return {
            "model_id": spec.model_id,
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt,
            "duration": spec.duration,
            "aspect_ratio": spec.aspect_ratio,
            "cfg_scale": spec.cfg_scale,
            "generate_audio": spec.generate_audio,
            "seed": spec.seed,
            "start_image": start_id,
            "end_image": end_id,
        }

    async def generate(self, request: PlannedRequest, start_image: str | None) -> JobResult:
        """Run (or resume) one job; through the wrapper when there is one."""
        if self.wrap is None:
            return await self._generate(request, start_image)
        return await self.wrap(request, lambda: self._generate(request, start_image))

    async def _generate(self, request: PlannedRequest, start_image: str | None) -> JobResult:
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
        if job.status == JobStatus.COMPLETED:
            reused = await self._reuse(request, job.key, dest)
            if reused is not None:
                return reused
        if job.status == JobStatus.SUBMITTING and not job.request_id:
            # Interrupted between reserving and the provider's answer: the request may exist.
            reason = "interrupted while submitting"
            await self._db(self.store.mark_unknown, job.key, reason)
            job = await self._db(self.store.get, job.key)
        replace_unknown = False
        if job.status == JobStatus.UNKNOWN:
            if not self.resubmit_unknown:
                advice = self.unknown_advice(
                    request, job.error or "its submit answer was lost", from_micro(job.reserved_micro)
                )
                self._emit("unknown", request, advice)
                return JobResult(request, JobStatus.UNKNOWN, error=advice)
            replace_unknown = True
        submission: Submission | None = None
        if job.request_id and job.status in (JobStatus.SUBMITTED, JobStatus.CHARGED, JobStatus.COMPLETED):
            # Bought before (a completed one's clip is gone or damaged): follow that request to
            # its clip, never buy it again.
            submission = Submission(request_id=job.request_id, model_id=body["model_id"])
        failures = 0
        while True:
            resumed = submission is not None
            result = await self._attempt(request, job.key, dest, start_image, submission, replace_unknown)
            submission, replace_unknown = None, False
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
        clip = Clip(request, found, job.sha256 or "", job.request_id or "", from_micro(job.charged_micro))
        return JobResult(request, JobStatus.COMPLETED, clip=clip, reused=True)

    def _cost(self, request: PlannedRequest, result: ResultInfo | None) -> Decimal:
        """What the provider billed: its own figure when it gives one, else the planned cost."""
        if result is not None and result.cost_usd is not None:
            return result.cost_usd
        return request.cost

    async def _charge(self, request: PlannedRequest, key: str, result: ResultInfo) -> None:
        """The provider says the request completed, so it billed it: record the charge now,
        before the download that may fail or be interrupted."""
        cost = self._cost(request, result)
        if await self._db(self.store.mark_charged, key, result.request_id, cost):
            self._emit("charged", request, f"{result.request_id}: {usd(cost)}")
            await self.report_spend()

    async def _attempt(
        self,
        request: PlannedRequest,
        key: str,
        dest: Path,
        start_image: str | None,
        submission: Submission | None,
        replace_unknown: bool = False,
    ) -> JobResult:
        spec = request.spec()
        # The in-flight slot is held while the request is queued or running at the provider, and
        # freed when it finishes: reading the result and downloading need no provider slot.
        slot = contextlib.AsyncExitStack()
        await slot.enter_async_context(self.limits.in_flight())
        async with slot:
            if submission is None:
                try:
                    # Uploads and the wait for a submit turn come before the reservation, so
                    # that "submitting" in the store means a paid request may really be out.
                    end_image = self.local(request.end_image)
                    start_url = await self.image_url(start_image) if start_image else None
                    end_url = await self.image_url(end_image) if end_image else None
                    spec = request.spec(start_url, end_url)
                    outcome = await self._submit(key, spec, request.cost, replace_unknown)
                except JobBusy as exc:
                    # Another flow run of this run id got here first (the run lock prevents it
                    # on a server; two local runs of one script may still race): leave it be.
                    self._emit("failed", request, str(exc))
                    return JobResult(request, exc.status, error=f"{exc} (rerun once it has finished)")
                except SubmitOutcomeUnknown as exc:
                    await self._db(self.store.mark_unknown, key, str(exc))
                    advice = self.unknown_advice(request, str(exc), request.cost)
                    self._emit("unknown", request, advice)
                    return JobResult(request, JobStatus.UNKNOWN, error=advice)
                except (AuthError, NoBalance) as exc:
                    await self._db(self.store.mark_ended, key, JobStatus.FAILED, error=str(exc))
                    await self.report_spend()
                    raise RunAborted(exc) from exc
                except ProviderError as exc:
                    # Refused before anything was created (4xx): nothing billed.
                    await self._db(self.store.mark_ended, key, JobStatus.FAILED, error=str(exc))
                    await self.report_spend()
                    self._emit("failed", request, str(exc))
                    reason = f"refused: {exc}" if isinstance(exc, BadRequest) else str(exc)
                    return JobResult(request, JobStatus.FAILED, error=reason)
                if outcome is None:
                    job = await self._db(self.store.get, key)
                    if replace_unknown and job.status == JobStatus.UNKNOWN:
                        reason = await self._shortfall(request, job)
                        self._emit("skipped", request, reason)
                        return JobResult(request, JobStatus.UNKNOWN, error=reason)
                    self._emit("skipped", request, BUDGET_EXHAUSTED)
                    return JobResult(request, JobStatus.FAILED, error=BUDGET_EXHAUSTED)
                submission = outcome
                await self._db(self.store.mark_submitted, key, submission.request_id)
                await self.report_spend()
                self._emit("submitted", request, submission.request_id)
            else:
                self._emit("resumed", request, submission.request_id)
            self.live[key] = submission.request_id
            try:
                report = await run_job(
                    charge_when_finished(self.provider, lambda result: self._charge(request, key, result)),
                    spec,
                    dest,
                    policy=self.policy,
                    submission=submission,
                    on_terminal=slot.aclose,
                )
            finally:
                self.live.pop(key, None)
        rid = submission.request_id
        if report.outcome is JobOutcome.COMPLETED and report.clip is not None:
            cost = self._cost(request, report.result)
            clip_path = Path(report.clip.path)
            await self._db(
                self.store.mark_completed,
                key,
                file=str(clip_path),
                sha256=report.clip.sha256,
                size=report.clip.size,
                cost=cost,
            )
            await self.report_spend()
            if self.shared is not None:
                await self.shared.put(request, clip_path, report.clip.sha256)
            self._emit("done", request, rid)
            clip = Clip(request, clip_path, report.clip.sha256, rid, cost)
            return JobResult(request, JobStatus.COMPLETED, clip=clip)
        error = str(report.error) if report.error else report.outcome.value
        if report.result is not None and report.result.state is JobState.COMPLETED:
            # Billed, but the clip did not arrive (download refused, truncated, invalid): the
            # money is spent (charged when the result said so), the clip is fetched on a rerun.
            await self._charge(request, key, report.result)
            message = (
                f"{error} — request {rid} is charged ({usd(self._cost(request, report.result))}) "
                "but its clip was not downloaded: run again to download it (it is not bought again)"
            )
            self._emit("failed", request, message)
            return JobResult(request, JobStatus.CHARGED, error=message)
        if (
            report.outcome is JobOutcome.FAILED
            and report.result is not None
            and report.result.state is JobState.FAILED
        ):
            await self._db(self.store.mark_ended, key, JobStatus.FAILED, error=error)
            await self.report_spend()
            self._emit("failed", request, error)
            return JobResult(request, JobStatus.FAILED, error=error)
        if report.outcome is JobOutcome.CANCELLED:
            await self._db(self.store.mark_ended, key, JobStatus.CANCELLED, error=error)
            await self.report_spend()
            self._emit("failed", request, error)
            return JobResult(request, JobStatus.CANCELLED, error=error)
        # Timed out, or no answer to say how it ended: the request stays submitted (and
        # reserved) so that a rerun follows it again instead of buying it twice.
        self._emit("failed", request, error)
        return JobResult(request, JobStatus.SUBMITTED, error=f"{error} (rerun to pick it up again)")

    async def _submit(
        self, key: str, spec: GenerationSpec, cost: Decimal, replace_unknown: bool = False
    ) -> Submission | None:
        """Wait for a submit turn, reserve ``cost``, submit; None when the budget refuses.

        A 429 (after the adapter's own waits) created nothing: the reservation is released and
        everybody slows down before the next turn.
        """
        while True:
            await self.limits.before_submit()
            begun = await self._db(self.store.begin_submit, key, cost, replace_unknown=replace_unknown)
            if begun is None:
                return None
            await self.report_spend()
            try:
                return await self.provider.submit(spec)
            except RateLimited as exc:
                await self._db(self.store.mark_not_sent, key, str(exc))
                self.limits.slow_down(exc.retry_after or DEFAULT_SLOW_DOWN_S * self.policy.latency.scale)

    # --- a pass -------------------------------------------------------------------------------

    async def _chain(self, requests: Sequence[PlannedRequest]) -> list[JobResult]:
        results: list[JobResult] = []
        previous: JobResult | None = None
        for request in requests:
            start: str | None
            if request.chained:
                if previous is None or previous.clip is None:
                    results.append(
                        JobResult(
                            request,
                            JobStatus.FAILED,
                            error="the previous segment has no clip to continue from",
                        )
                    )
                    previous = results[-1]
                    continue
                frame = self.layout.last_frame(
                    request.narrative, request.variant, request.pass_, request.segment - 1
                )
                frame.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(last_frame, previous.clip.path, frame)
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
