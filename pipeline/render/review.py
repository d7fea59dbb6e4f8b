"""The review page of a run, from what the run did: each master with its poster, prompt, seeds,
cost and QC; each variant with its overrides and why it was (not) promoted; the money planned
against charged; and, for a run that failed, why. Written to ``masters/report.html`` and archived
beside the masters under a new key each time (``report-<UTC time>.html``: the archive is
write-once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.archive.archiver import FileReport, archive_report
from pipeline.media.report import MasterEntry, PlanRow, ReportInput, VariantEntry, write_report
from pipeline.media.timeline import TIMELINE_NAME
from pipeline.planning.plan import PlannedRequest, RenderPlan
from pipeline.render.masters import MasterOutcome
from pipeline.render.sidecars import POSTER_NAME
from pipeline.script.model import Script

if TYPE_CHECKING:
    from pipeline.render.job import JobResult
    from pipeline.render.run import RenderRun, RunResult

_Key = tuple[str, str, str, int]  # narrative, variant, pass, segment


def _key(request: PlannedRequest) -> _Key:
    return request.narrative, request.variant, request.pass_, request.segment


@dataclass(frozen=True)
class Promotion:
    """Whether a variant was promoted to a final, and why (``promoted`` None: no choice made)."""

    promoted: bool | None
    reason: str


def promotions(
    plan: RenderPlan, drafts: Sequence[MasterOutcome], selected: Sequence[str] | None
) -> dict[str, Promotion]:
    """Why each variant was, or was not, promoted (``selected`` None: the run stopped before)."""
    finals = len(plan.budget.final_variants)
    if selected is None:
        return {v: Promotion(None, "the run stopped before variants were chosen") for v in plan.variants}
    if finals == 0 or plan.budget.final_tier is None:
        why = (
            "no finals: the script asks for none"
            if plan.finals_requested == 0
            else "no finals: the budget covers the drafts only"
        )
        return {v: Promotion(False, why) for v in plan.variants}
    fit = f"the budget allows {finals} final{'s' if finals != 1 else ''}"
    out: dict[str, Promotion] = {}
    for variant in plan.variants:
        mine = [m for m in drafts if m.variant == variant]
        if variant in selected:
            reason = {
                "all": f"select: all — {fit}, given to the variants in script order",
                "auto": f"select: auto — its draft masters passed QC ({fit})",
                "manual": "select: manual — chosen by a person",
            }.get(plan.select, f"select: {plan.select}")
            out[variant] = Promotion(True, reason)
        elif plan.select == "manual":
            out[variant] = Promotion(False, "select: manual — not chosen")
        elif plan.select == "auto" and (not mine or not all(m.delivered for m in mine)):
            out[variant] = Promotion(False, "select: auto — a draft master could not be made")
        elif plan.select == "auto" and not all(m.passed for m in mine):
            kinds = sorted({f.kind for m in mine if m.qc for f in m.qc.findings if f.severity == "error"})
            out[variant] = Promotion(
                False, f"select: auto — a draft failed QC ({', '.join(kinds) or 'see findings'})"
            )
        else:
            taken = ", ".join(selected) or "none"
            passed = "its draft masters passed QC, but " if plan.select == "auto" else ""
            out[variant] = Promotion(False, f"select: {plan.select} — {passed}{fit}, given to {taken}")
    return out


def _overrides(script: Script) -> dict[str, dict[str, str]]:
    return {
        v.id: {k: str(getattr(v.overrides, k)) for k in sorted(v.overrides.model_fields_set)}
        for v in script.variants
    }


def plan_rows(plan: RenderPlan, jobs: Sequence[JobResult]) -> tuple[PlanRow, ...]:
    """Every request planned or run: its planned cost and, once run, what it was charged."""
    ran = {_key(j.request): j for j in jobs}
    requests = {_key(r): r for r in plan.requests}
    requests.update({k: j.request for k, j in ran.items()})
    rows = []
    for key, r in requests.items():
        job = ran.get(key)
        rows.append(
            PlanRow(
                narrative=r.narrative,
                variant=r.variant,
                pass_name=r.pass_,
                segment=r.segment,
                tier=r.tier.value,
                duration_s=r.duration,
                audio=r.audio,
                cost_usd=r.cost,
                charged_usd=(job.clip.cost if job.clip else Decimal(0)) if job else None,
                status=str(job.status) if job else "not run",
            )
        )
    return tuple(rows)


def master_entry(m: MasterOutcome, jobs: Sequence[JobResult]) -> MasterEntry:
    """One master as the page shows it: its files beside it, its requests' prompts and money."""
    mine = sorted(
        (
            j
            for j in jobs
            if (j.request.narrative, j.request.variant, j.request.pass_) == (m.narrative, m.variant, m.pass_)
        ),
        key=lambda j: j.request.segment,
    )

    def beside(name: str) -> str | None:
        return str(m.directory / name) if m.delivered and (m.directory / name).is_file() else None

    return MasterEntry(
        narrative=m.narrative,
        variant=m.variant,
        pass_name=m.pass_,
        video=str(m.path) if m.delivered else None,
        duration_s=m.duration_s,
        sha256=m.sha256 or "",
        poster=beside(POSTER_NAME),
        contact_sheet=beside("contact-sheet.png"),
        srt=beside("master.srt"),
        timeline=beside(TIMELINE_NAME),
        integrated_lufs=m.loudness_lufs,
        qc=m.qc,
        error=m.error,
        prompts=tuple(j.request.prompt for j in mine),
        seeds=tuple(j.request.seed for j in mine if j.request.seed is not None),
        planned_usd=sum((j.request.cost for j in mine), Decimal(0)),
        charged_usd=sum((j.clip.cost for j in mine if j.clip), Decimal(0)),
    )


def review_input(
    run: RenderRun, result: RunResult | None, *, generated_at: datetime, failure: str | None = None
) -> ReportInput:
    """The page's input for ``run``: from its ``result``, or (None) a run that stopped with ``failure``."""
    jobs = result.jobs if result else []
    masters = result.masters if result else []
    chosen = result.selected if result and failure is None else None
    why = promotions(run.plan, result.drafts if result else [], chosen)
    overrides = _overrides(run.loaded.script)
    if failure is not None:
        status = "failed"
    elif result is not None and not result.delivered:
        status = "failed" if not any(m.delivered for m in masters) else "incomplete"
    else:
        status = "delivered"
    return ReportInput(
        script_name=run.plan.script,
        run_id=run.run_id,
        generated_at=generated_at.isoformat(timespec="seconds"),
        provider=run.engine.provider.name,
        status=status,
        failure=failure,
        select=run.plan.select,
        plan=plan_rows(run.plan, jobs),
        spend_usd=result.spend.charged if result and result.spend else Decimal(0),
        budget_usd=run.plan.budget.limit,
        variants=tuple(
            VariantEntry(id=v, overrides=overrides.get(v, {}), promoted=why[v].promoted, reason=why[v].reason)
            for v in run.plan.variants
        ),
        masters=tuple(master_entry(m, jobs) for m in masters),
        archived_to=result.archive.destination if result and result.archive else None,
        archive_error=_archive_problems(result),
    )


def _archive_problems(result: RunResult | None) -> str | None:
    """Why the archive is incomplete: its error, or each file it refused with the reason."""
    if result is None:
        return None
    refused = [f"{f.path}: {f.error}" for f in (result.archive.refused if result.archive else [])]
    problems = ([result.archive_error] if result.archive_error else []) + refused
    return "; ".join(problems) or None


def report_name(at: datetime) -> str:
    """The archived page's name: a new key for each rerun (``report-20261130T051300Z.html``)."""
    return f"report-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.html"


def write_review(
    run: RenderRun, result: RunResult | None, failure: str | None = None
) -> tuple[Path, FileReport | None]:
    """Write the review page to ``masters/report.html`` and, when the run's masters were
    archived, archive it beside them; returns its path and how archiving it went."""
    now = datetime.now(UTC)
    page = write_report(review_input(run, result, generated_at=now, failure=failure), run.layout.report)
    archived = None
    if result is not None and result.archive is not None and result.archive_error is None:
        archived = archive_report(run.layout.masters_dir, page, run.archive_to, name=report_name(now))
    return page, archived
