"""One render run, start to finish: drafts → draft masters → selection → finals → final
masters → archive → report. Plain asyncio over :class:`~pipeline.render.engine.Engine`; the
caller's :class:`~pipeline.render.progress.RunHooks` (the Prefect flow's job wrapper and chooser,
the command line's progress) are given to it when the session builds it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.archive.archiver import ArchiveReport, archive_run
from pipeline.errors import ArchiveError, DiskFull, InputError
from pipeline.media.report import MasterEntry, PlanRow, ReportInput, write_report
from pipeline.planning.plan import Pass, PlannedRequest, RenderPlan, request_to_dict
from pipeline.pricing import to_cents
from pipeline.render.engine import Engine, JobResult
from pipeline.render.layout import RunLayout
from pipeline.render.masters import Clip, MasterOutcome, make_master
from pipeline.render.rehearsal import rehearse_masters
from pipeline.render.selection import select_approved, select_auto
from pipeline.script.loader import LoadedScript
from pipeline.store.jobs import Spend

#: ``choose(draft_masters, finals) -> variant ids`` for ``select: manual`` (e.g. a Prefect pause).
Chooser = Callable[[Sequence[MasterOutcome], int], Awaitable[list[str]]]
#: Called with each stage's name as the run reaches it.
StageSink = Callable[[str], None]


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

    def _stage(self, name: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name)

    def write_run_info(self) -> None:
        """``masters/run.json``: what the archiver needs to name keys."""
        self.layout.masters_dir.mkdir(parents=True, exist_ok=True)
        info = {"script": self.plan.script, "run_id": self.run_id, "script_sha256": self.loaded.sha256}
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
        await self.engine.provider.preflight(specs)
        await asyncio.to_thread(
            rehearse_masters,
            self.loaded.script,
            self.plan,
            document=self.loaded.document,
            # Beside the runs: a verdict that holds for any run of the same settings.
            cache_dir=self.layout.root.parent / ".rehearsals",
        )

    async def execute(self) -> RunResult:
        """Run every stage; failures of single jobs or masters are reported, not raised."""
        started = datetime.now(UTC)
        await self.check_before_spending()
        result = RunResult(self.run_id, self.plan.script, self.layout)
        await asyncio.to_thread(self.engine.store.set_run_status, self.run_id, "running")
        self.write_run_info()
        drafts = self.plan.requests_for("draft")
        if drafts:
            self._stage("draft")
            jobs = await self.engine.run_pass(drafts)
            result.jobs += jobs
            self._stage("draft masters")
            result.drafts = await self.masters(jobs, "draft", started)
        self._stage("selection")
        result.selected = await self.select(result.drafts)
        finals = self.final_requests(result.selected)
        if finals:
            self._stage("final")
            jobs = await self.engine.run_pass(finals)
            result.jobs += jobs
            self._stage("final masters")
            result.finals = await self.masters(jobs, "final", started)
        result.spend = await asyncio.to_thread(self.engine.store.spend, self.run_id)
        if any(m.delivered for m in result.masters):
            self._stage("archive")
            try:
                result.archive = await asyncio.to_thread(
                    archive_run, self.layout.masters_dir, self.archive_to
                )
            except ArchiveError as exc:
                result.archive_error = str(exc)
        self._stage("report")
        result.report = await asyncio.to_thread(self.write_report, result)
        await asyncio.to_thread(
            self.engine.store.set_run_status, self.run_id, "delivered" if result.delivered else "incomplete"
        )
        return result

    async def masters(self, jobs: Sequence[JobResult], pass_: Pass, started: datetime) -> list[MasterOutcome]:
        """Stitch a master per narrative and variant whose clips are all there (in threads)."""
        script = self.loaded.script
        groups: dict[tuple[str, str], list[JobResult]] = {}
        for job in jobs:
            groups.setdefault((job.request.narrative, job.request.variant), []).append(job)
        by_id = {n.id: n for n in script.narratives}
        plans = {n.id: n for n in self.plan.narratives}
        work = []
        for (narrative, variant), group in groups.items():
            directory = self.layout.master_dir(narrative, variant, pass_)
            missing = [j for j in group if j.clip is None]
            if missing:
                reason = "; ".join(f"segment {j.request.segment}: {j.error or j.status}" for j in missing)
                work.append(
                    asyncio.sleep(0, MasterOutcome(narrative, variant, pass_, directory, error=reason))
                )
                continue
            clips: list[Clip] = [j.clip for j in group if j.clip is not None]
            work.append(
                asyncio.to_thread(
                    make_master,
                    script=script,
                    script_sha256=self.loaded.sha256,
                    run_id=self.run_id,
                    narrative=by_id[narrative],
                    plan=plans[narrative],
                    clips=clips,
                    directory=directory,
                    plan_summary=self.plan_summary([j.request for j in group]),
                    started_at=started,
                )
            )
        outcomes = list(await asyncio.gather(*work))
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
        b = self.plan.budget
        return {
            "budget_usd": str(b.limit),
            "planned_total_usd": str(to_cents(self.plan.total)),
            "final_tier": b.final_tier.value if b.final_tier else None,
            "finals_planned": len(b.final_variants),
            "degraded": list(b.degraded),
            "requests": [_manifest_request(request_to_dict(r)) for r in requests],
        }

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
            return select_approved(variants, await self.choose(drafts, finals), finals)
        # The one place this is said: a chooser is given only where a person can answer (the
        # flow on a Prefect server, whose UI asks).
        raise InputError(
            "select: manual needs a choice: pass --approve a,c, or run on a Prefect server to choose in its UI"
        )

    def write_report(self, result: RunResult) -> Path:
        """The run's HTML report (plan, spend, masters with contact sheets and QC)."""
        spend = result.spend.charged if result.spend else Decimal(0)
        rows = tuple(
            PlanRow(
                narrative=j.request.narrative,
                variant=j.request.variant,
                pass_name=j.request.pass_,
                segment=j.request.segment,
                tier=j.request.tier.value,
                duration_s=j.request.duration,
                audio=j.request.audio,
                cost_usd=j.clip.cost if j.clip else j.request.cost,
            )
            for j in result.jobs
        )
        masters = tuple(
            MasterEntry(
                narrative=m.narrative,
                variant=f"{m.variant} ({m.pass_})",
                video=str(m.path),
                duration_s=m.duration_s,
                sha256=m.sha256 or "",
                contact_sheet=str(m.directory / "contact-sheet.png"),
                srt=str(m.directory / "master.srt") if (m.directory / "master.srt").is_file() else None,
                integrated_lufs=m.loudness_lufs,
                qc=m.qc,
            )
            for m in result.masters
            if m.delivered
        )
        return write_report(
            ReportInput(
                script_name=self.plan.script,
                run_id=self.run_id,
                generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                plan=rows,
                spend_usd=spend,
                budget_usd=self.plan.budget.limit,
                masters=masters,
            ),
            self.layout.report,
        )


#: What a master's manifest records of each of its requests (a subset of ``plan --json``'s).
MANIFEST_REQUEST_KEYS = ("segment", "tier", "duration", "audio", "shots", "trimmed_seconds", "chained")


def _manifest_request(planned: dict[str, Any]) -> dict[str, Any]:
    # The exact cost as text (the manifest's contract), not the plan's rounded float.
    return {**{k: planned[k] for k in MANIFEST_REQUEST_KEYS}, "cost_usd": planned["cost_usd_exact"]}
