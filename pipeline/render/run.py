"""One render run, start to finish: drafts → draft masters → selection → finals → final
masters → archive → report. Plain asyncio over :class:`~pipeline.render.engine.Engine`; the
caller's :class:`~pipeline.render.progress.RunHooks` (the Prefect flow's job wrapper and chooser,
the command line's progress) are given to it when the session builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipeline.archive.archiver import ArchiveReport, archive_run
from pipeline.errors import ArchiveError, DiskFull, InputError, KlingflowError
from pipeline.planning.plan import Pass, PlannedRequest, RenderPlan, request_to_dict
from pipeline.pricing import to_cents
from pipeline.render.engine import Engine, JobResult
from pipeline.render.layout import RunLayout, script_reference
from pipeline.render.master_queue import CpuSlots, GroupKey, Inspection, MasterQueue
from pipeline.render.masters import Clip, MasterOutcome, inspect_clip, make_master, sheet_row
from pipeline.render.progress import WAITING_FOR_CHOICE
from pipeline.render.rehearsal import rehearse_masters
from pipeline.render.review import write_review
from pipeline.render.selection import select_approved, select_auto
from pipeline.render.takebook import current_master, has_takes
from pipeline.script.loader import LoadedScript
from pipeline.store.jobs import Spend

#: ``choose(draft_masters, finals) -> variant ids`` for ``select: manual`` (e.g. a Prefect pause).
Chooser = Callable[[Sequence[MasterOutcome], int], Awaitable[list[str]]]
#: Called with each stage's name as the run reaches it.
StageSink = Callable[[str], None]
_T = TypeVar("_T")


class StageRunner(Protocol):
    """``run_stage(kind, label, work)`` runs one stage's work (the flow: as a task run ``label``)."""

    def __call__(self, kind: str, label: str, work: Callable[[], Awaitable[_T]]) -> Awaitable[_T]:
        """Await ``work()`` as the stage, and return what it returns."""
        ...


def qc_verdict(master: MasterOutcome) -> str:
    """A master's QC verdict in words: ``passed``, ``failed: <findings>`` or why it is missing."""
    if not master.delivered or master.qc is None:
        return f"not delivered: {master.error}"
    if master.passed:
        return "passed"
    findings = "; ".join(f"{f.kind} {f.detail}".strip() for f in master.qc.findings)
    return f"failed: {findings}" if findings else "failed"


async def qc_verdicts(masters: Sequence[MasterOutcome]) -> dict[str, str]:
    """Each master's QC verdict by ``pass narrative/variant`` (the QC stage's outcome)."""
    return {f"{m.pass_} {m.narrative}/{m.variant}": qc_verdict(m) for m in masters}


@dataclass
class RunResult:
    """What a run delivered, and what it did not."""

    run_id: str
    script: str
    layout: RunLayout
    jobs: list[JobResult] = field(default_factory=list)
    drafts: list[MasterOutcome] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    finals: list[MasterOutcome] = field(default_factory=list)
    archive: ArchiveReport | None = None
    archive_error: str | None = None
    spend: Spend | None = None
    report: Path | None = None
    #: Where the review page was archived (a new key each run), when the masters were.
    report_archived: str | None = None

    @property
    def masters(self) -> list[MasterOutcome]:
        """Every master the run attempted."""
        return self.drafts + self.finals

    @property
    def undelivered(self) -> list[MasterOutcome]:
        """Masters that could not be produced."""
        return [m for m in self.masters if not m.delivered]

    @property
    def delivered(self) -> bool:
        """Everything the run set out to make is made and archived."""
        return (
            not self.undelivered
            and self.archive_error is None
            and (self.archive is None or not self.archive.refused)
        )


@dataclass
class RenderRun:
    """Runs the stages of one render; see the module docstring."""

    loaded: LoadedScript
    plan: RenderPlan
    run_id: str
    layout: RunLayout
    engine: Engine
    archive_to: str | None = None
    approve: Sequence[str] | None = None
    choose: Chooser | None = None
    on_stage: StageSink | None = None
    run_stage: StageRunner | None = None
    #: Bounds masters (ffmpeg, QC) to one per core, whichever pass they belong to.
    cpu: CpuSlots = field(default_factory=CpuSlots)

    def _stage(self, name: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name)

    async def _staged(self, kind: str, label: str, work: Callable[[], Awaitable[_T]]) -> _T:
        """``work`` as one stage of ``kind`` (the flow makes it a task run named ``label``)."""
        if self.run_stage is None:
            return await work()
        return await self.run_stage(kind, label, work)

    def write_run_info(self) -> None:
        """``masters/run.json``: what the archiver needs to name keys."""
        self.layout.masters_dir.mkdir(parents=True, exist_ok=True)
        info = {"script": self.plan.script, "run_id": self.run_id, "script_sha256": self.loaded.sha256}
        # Where the script was read from: `klingflow reroll RUN` reloads it (checked by its sha256).
        info["script_file"] = script_reference(self.loaded.file)
        (self.layout.masters_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")

    def final_requests(self, variants: Sequence[str]) -> list[PlannedRequest]:
        """The final requests of the chosen variants (in their order), at the tier the budget
        decided: the plan's candidates, filtered."""
        return [r for v in variants for r in self.plan.candidate_finals if r.variant == v]

    async def check_before_spending(self) -> None:
        """Everything that can refuse this run before a cent is reserved: the provider's own
        checks of every planned request (schema, price) and a rehearsal of the masters."""
        # Images are placeholders here: what is checked is which fields a request carries.
        placeholder = "data:image/png;base64,"
        # Every request that may be bought: the plan's, and the finals of any variant a choice
        # at run time may promote (select: auto/manual).
        candidates = [*self.plan.requests, *self.plan.candidate_finals]
        specs = [
            r.spec(
                start_image_url=placeholder if (r.chained or r.start_image) else None,
                end_image_url=placeholder if r.end_image else None,
            )
            for r in candidates
        ]
        # Both at once: the provider's checks are its API's, the rehearsal is ffmpeg's.
        await asyncio.gather(
            self.engine.provider.preflight(specs),
            asyncio.to_thread(
                rehearse_masters,
                self.loaded.script,
                self.plan,
                document=self.loaded.document,
                # Beside the runs: a verdict that holds for any run of the same settings.
                cache_dir=self.layout.root.parent / ".rehearsals",
            ),
        )

    async def execute(self) -> RunResult:
        """Run every stage; failures of single jobs or masters are reported, not raised. A run
        that stops on an error still leaves a review page saying why, then raises it."""
        try:
            return await self.stages()
        except KlingflowError as exc:
            # The run's own error is the one to report, not one while writing the page.
            with contextlib.suppress(KlingflowError, OSError):
                await asyncio.to_thread(write_review, self, None, str(exc))
            raise

    async def stages(self) -> RunResult:
        """The stages of :meth:`execute`, in order."""
        started = datetime.now(UTC)
        await self.check_before_spending()
        result = RunResult(self.run_id, self.plan.script, self.layout)
        await asyncio.to_thread(self.engine.store.set_run_status, self.run_id, "running")
        self.write_run_info()
        drafts = self.plan.requests_for("draft")
        if drafts:
            self._stage("draft")
            jobs, result.drafts = await self.run_pass_with_masters(drafts, "draft", started)
            result.jobs += jobs
        self._stage("selection")
        result.selected = await self._staged("selection", "selection", lambda: self.select(result.drafts))
        finals = self.final_requests(result.selected)
        if finals:
            self._stage("final")
            jobs, result.finals = await self.run_pass_with_masters(finals, "final", started)
            result.jobs += jobs
        result.spend = await asyncio.to_thread(self.engine.store.spend, self.run_id)
        if any(m.delivered for m in result.masters):
            self._stage("archive")
            try:
                result.archive = await self._staged(
                    "archive",
                    "archive",
                    partial(asyncio.to_thread, archive_run, self.layout.masters_dir, self.archive_to),
                )
            except ArchiveError as exc:
                result.archive_error = str(exc)
        self._stage("report")
        result.report = await self._staged(
            "report", "report", partial(asyncio.to_thread, self.write_report, result)
        )
        await asyncio.to_thread(
            self.engine.store.set_run_status, self.run_id, "delivered" if result.delivered else "incomplete"
        )
        return result

    def master_work(
        self,
        key: GroupKey,
        group: Sequence[JobResult],
        pass_: Pass,
        started: datetime,
        inspections: Sequence[Inspection] | None = None,
    ) -> Awaitable[MasterOutcome]:
        """The master of one narrative/variant whose clips are all there: a stage, in a thread,
        once a CPU slot is free."""
        narrative, variant = key
        if has_takes(self.layout, narrative, variant, pass_):
            # Rerolled (klingflow reroll/use): the take chosen stays, never re-stitched from the
            # first takes (its archive keys must keep their bytes).
            return asyncio.to_thread(current_master, self.layout, narrative, variant, pass_)
        clips: list[Clip] = [j.clip for j in group if j.clip is not None]
        make = partial(
            asyncio.to_thread,
            make_master,
            script=self.loaded.script,
            script_sha256=self.loaded.sha256,
            run_id=self.run_id,
            narrative=next(n for n in self.loaded.script.narratives if n.id == narrative),
            plan=next(n for n in self.plan.narratives if n.id == narrative),
            clips=clips,
            directory=self.layout.master_dir(narrative, variant, pass_),
            plan_summary=self.plan_summary([j.request for j in group]),
            started_at=started,
            inspections=inspections,
        )
        return self._staged("master", f"master-{pass_}-{narrative}-{variant}", partial(self.cpu.run, make))

    async def inspect(self, job: JobResult) -> Inspection:
        """A clip's share of its master's QC, as it arrives (in a thread, on a CPU slot)."""
        assert job.clip is not None  # the queue inspects only jobs with a clip
        request = job.request
        plan = next(n for n in self.plan.narratives if n.id == request.narrative)
        seconds = next((seg.content_seconds for seg in plan.segments if seg.index == request.segment), None)
        row = None if seconds is None else sheet_row(request.narrative, request, seconds, job.clip.path)
        return await self.cpu.run(partial(asyncio.to_thread, inspect_clip, job.clip.path, row))

    async def run_pass_with_masters(
        self, requests: Sequence[PlannedRequest], pass_: Pass, started: datetime
    ) -> tuple[list[JobResult], list[MasterOutcome]]:
        """Generate ``requests``; each master starts as soon as its own clips are in (while the
        rest still generate), the masters of groups with a failed job are reported after."""
        queue = MasterQueue(
            requests,
            lambda key, group, found: self.master_work(key, group, pass_, started, found),
            inspect=self.inspect,
        )
        with queue.watching(self.engine):
            jobs = await self.engine.run_pass(requests)
        self._stage(f"{pass_} masters")
        return jobs, await self.masters(jobs, pass_, started, early=queue.started)

    async def masters(
        self,
        jobs: Sequence[JobResult],
        pass_: Pass,
        started: datetime,
        early: Mapping[GroupKey, Awaitable[object]] | None = None,
    ) -> list[MasterOutcome]:
        """A master per narrative and variant whose clips are all there (those in ``early`` were
        started during the pass), the reason for each that is not."""
        groups: dict[GroupKey, list[JobResult]] = {}
        for job in jobs:
            groups.setdefault((job.request.narrative, job.request.variant), []).append(job)
        work: list[Awaitable[Any]] = []
        for (narrative, variant), group in groups.items():
            directory = self.layout.master_dir(narrative, variant, pass_)
            missing = [j for j in group if j.clip is None]
            if missing:
                reason = "; ".join(f"segment {j.request.segment}: {j.error or j.status}" for j in missing)
                work.append(
                    asyncio.sleep(0, MasterOutcome(narrative, variant, pass_, directory, error=reason))
                )
                continue
            already = (early or {}).get((narrative, variant))
            work.append(
                already
                if already is not None
                else self.master_work((narrative, variant), group, pass_, started)
            )
        outcomes: list[MasterOutcome] = list(await asyncio.gather(*work))
        await self._staged("qc", f"qc-{pass_}", partial(qc_verdicts, outcomes))
        for m in outcomes:
            # ffmpeg reports a full disk only in its stderr: the C library's text for ENOSPC,
            # which os.strerror gives in the same locale. A full disk stops the run (exit 73).
            if m.error and os.strerror(errno.ENOSPC) in m.error:
                raise DiskFull(
                    f"no space left on the device under {m.directory} (making the {m.pass_} master "
                    f"of {m.narrative}/{m.variant})"
                )
        return outcomes

    def plan_summary(self, requests: Sequence[PlannedRequest]) -> dict[str, Any]:
        """The part of the plan a master's manifest records: budget, finals, its requests."""
        return plan_summary(self.plan, requests)

    async def select(self, drafts: Sequence[MasterOutcome]) -> list[str]:
        """The variants promoted to finals (``budget.select``)."""
        variants = list(self.plan.variants)
        finals = len(self.plan.budget.final_variants)
        if finals == 0 or self.plan.budget.final_tier is None:
            return []
        select = self.plan.select
        if select == "all":
            return [variants[i] for i in self.plan.budget.final_variants]
        if select == "auto":
            passed = {
                v: all(m.passed for m in drafts if m.variant == v) and any(m.variant == v for m in drafts)
                for v in variants
            }
            return select_auto(variants, passed, finals)
        if self.approve is not None:
            return select_approved(variants, self.approve, finals)
        if self.choose is not None:
            # Said in the store while a person is asked: `klingflow status` shows it.
            store = self.engine.store
            await asyncio.to_thread(store.set_run_status, self.run_id, WAITING_FOR_CHOICE)
            chosen = await self.choose(drafts, finals)
            await asyncio.to_thread(store.set_run_status, self.run_id, "running")
            return select_approved(variants, chosen, finals)
        # The one place this is said: a chooser is given only where a person can answer (the
        # flow on a Prefect server, whose UI asks).
        raise InputError(
            "select: manual needs a choice: pass --approve a,c, or run on a Prefect server to choose in its UI"
        )

    def write_report(self, result: RunResult) -> Path:
        """The run's review page (:mod:`pipeline.render.review`), archived beside the masters."""
        try:
            page, archived = write_review(self, result)
        except ArchiveError as exc:
            result.archive_error = f"review page: {exc}"
            return self.layout.report
        result.report_archived = archived.uri if archived else None
        return page


def plan_summary(plan: RenderPlan, requests: Sequence[PlannedRequest]) -> dict[str, Any]:
    """The part of ``plan`` a master's manifest records: budget, finals, its requests (also used
    when a reroll re-stitches a master)."""
    b = plan.budget
    return {
        "budget_usd": str(b.limit),
        "planned_total_usd": str(to_cents(plan.total)),
        "final_tier": b.final_tier.value if b.final_tier else None,
        "finals_planned": len(b.final_variants),
        "degraded": list(b.degraded),
        "requests": [_manifest_request(request_to_dict(r)) for r in requests],
    }


#: What a master's manifest records of each of its requests (a subset of ``plan --json``'s).
MANIFEST_REQUEST_KEYS = ("segment", "tier", "duration", "audio", "shots", "trimmed_seconds", "chained")


def _manifest_request(planned: dict[str, Any]) -> dict[str, Any]:
    # The exact cost as text (the manifest's contract), not the plan's rounded float.
    return {**{k: planned[k] for k in MANIFEST_REQUEST_KEYS}, "cost_usd": planned["cost_usd_exact"]}
