"""The Prefect artifacts of a render flow run: the plan, the progress, the result and links.

Keys carry the script's name (``{script}-render-plan``), so each script has its own history in
the Artifacts page instead of every script writing over one ``render-plan``. Masters and the
report are link artifacts where a URL exists: a presigned S3 URL of the archived copy, else a
``file://`` URL on the worker that made it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact, acreate_table_artifact

from pipeline.errors import KlingflowError
from pipeline.money import format_usd
from pipeline.planning.plan import PlannedRequest, RenderPlan
from pipeline.pricing import to_cents
from pipeline.render.run import RunResult

#: How long a presigned link to an archived master stays valid (S3's maximum: 7 days).
LINK_LIFETIME_S = 7 * 24 * 3600


def key(script: str, what: str) -> str:
    """An artifact key of ``script`` (script names are lowercase letters, digits and '-')."""
    return f"{script}-{what}"


def planned_requests(plan: RenderPlan, selected: Sequence[str] | None) -> list[PlannedRequest]:
    """The plan's requests; once finals are chosen, the drafts and the chosen variants' finals."""
    if selected is None:
        return list(plan.requests)
    finals = [r for v in selected for r in plan.candidate_finals if r.variant == v]
    return [*plan.requests_for("draft"), *finals]


async def publish_plan(plan: RenderPlan, run_id: str, selected: Sequence[str] | None = None) -> None:
    """The plan as a table artifact; again with the chosen finals once they are chosen."""
    requests = planned_requests(plan, selected)
    total = sum((to_cents(r.cost) for r in requests), Decimal(0))
    chosen = f"finals chosen: {', '.join(selected) or 'none'}; " if selected is not None else ""
    await acreate_table_artifact(
        key=key(plan.script, "render-plan"),
        table=[
            {
                "narrative": r.narrative,
                "variant": r.variant,
                "pass": r.pass_,
                "segment": r.segment,
                "tier": r.tier.value,
                "seconds": r.duration,
                "audio": r.audio,
                "cost_usd": str(to_cents(r.cost)),
            }
            for r in requests
        ],
        description=f"Plan of run {run_id}: {format_usd(total)} of {format_usd(plan.budget.limit)}; "
        + chosen
        + ("; ".join(plan.budget.degraded) or "nothing degraded"),
    )


def link_for(path: Path, archived: dict[Path, str]) -> str:
    """A URL for ``path``: its archived copy's (presigned on S3), else ``file://`` here."""
    uri = archived.get(path)
    if uri is not None and uri.startswith("s3://"):
        from pipeline.storage.factory import open_store

        bucket, _, object_key = uri.removeprefix("s3://").partition("/")
        try:
            store = open_store(f"s3://{bucket}")
            presign = getattr(store, "presign_get", None)
            if presign is not None:
                return str(presign(object_key, LINK_LIFETIME_S))
        except KlingflowError:
            pass  # no credentials to sign with here: the local copy's link below
    if uri is not None and "://" not in uri:
        return Path(uri).resolve().as_uri()
    return path.resolve().as_uri()


async def publish_result(result: RunResult, plan: RenderPlan) -> None:
    """The outcome as markdown, and a link artifact per delivered master and for the report."""
    spend = result.spend
    charged = spend.charged if spend else Decimal(0)
    reserved = spend.reserved if spend else Decimal(0)
    archived = {f.path: f.uri for f in result.archive.files} if result.archive else {}
    lines = [
        f"# Run {result.run_id}",
        "",
        f"Spend: **{format_usd(charged)}** charged of {format_usd(plan.budget.limit)} "
        f"(reserved still: {format_usd(reserved)}).",
        f"Finals chosen: {', '.join(result.selected) or 'none'}.",
        "",
        "| narrative | variant | pass | master | length | QC |",
        "|---|---|---|---|---|---|",
    ]
    for m in result.masters:
        qc = "passed" if m.passed else ("failed" if m.delivered else f"not delivered: {m.error}")
        link = await asyncio.to_thread(link_for, m.path, archived) if m.delivered and m.path else None
        shown = f"[master.mp4]({link})" if link else "-"
        lines.append(f"| {m.narrative} | {m.variant} | {m.pass_} | {shown} | {m.duration_s:.2f} s | {qc} |")
        if link:
            await acreate_link_artifact(
                link=link,
                link_text=f"{m.narrative} / {m.variant} ({m.pass_})",
                key=key(plan.script, f"{m.pass_}-{m.narrative}-{m.variant}"),
                description=f"{m.pass_.capitalize()} master of run {result.run_id}: QC {qc}",
            )
    if result.archive is not None:
        lines += ["", f"Archived to `{result.archive.destination}`."]
    if result.archive_error:
        lines += ["", f"Archive failed: {result.archive_error}"]
    if result.report is not None:
        report = await asyncio.to_thread(link_for, result.report, archived)
        lines += ["", f"Report: [report.html]({report})"]
        await acreate_link_artifact(
            link=report,
            link_text=f"report of run {result.run_id}",
            key=key(plan.script, "render-report"),
            description=f"The review page of run {result.run_id}",
        )
    await acreate_markdown_artifact(key=key(plan.script, "render-result"), markdown="\n".join(lines))
