"""The review page of a run (``report.html``): what a producer needs to choose between variants.

Per narrative, its variants side by side — poster frame and player for every master (drafts and
finals), length, QC verdict and findings, prompt, overrides and seeds, cost, whether and why the
variant was promoted, a failed master's reason — then the cost breakdown (per pass, per variant,
planned against charged) and the plan. A run that delivered nothing says why at the top.

Rendered with Jinja2 (autoescaping on: script names, prompts, labels and ffmpeg messages are data)
from a typed :class:`ReportInput` (money as ``Decimal``, shown by
:func:`pipeline.money.format_usd`). The page is self-contained (inline CSS, no script, no fonts
or styles from elsewhere) but for the media, which are linked relative to it: the folder can be
moved or archived whole and still open in a browser.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field

from pipeline.media.qc import QCReport
from pipeline.money import format_usd


class PlanRow(BaseModel):
    """One generation request: what the plan priced it at and, once run, what it was charged."""

    model_config = ConfigDict(frozen=True)

    narrative: str
    variant: str
    pass_name: str  # draft | final
    segment: int
    tier: str
    duration_s: float
    audio: bool
    cost_usd: Decimal
    #: What the provider charged (None: not run, or nothing known); ``status`` is the job's.
    charged_usd: Decimal | None = None
    status: str = ""


class MasterEntry(BaseModel):
    """A master of one narrative, variant and pass: its files (paths on disk) and what was
    checked, or (``error``) why it could not be made."""

    model_config = ConfigDict(frozen=True)

    narrative: str
    variant: str
    pass_name: str = ""
    video: str | None = None
    duration_s: float = 0.0
    sha256: str = ""
    poster: str | None = None
    contact_sheet: str | None = None
    srt: str | None = None
    timeline: str | None = None
    integrated_lufs: float | None = None
    qc: QCReport | None = None
    error: str | None = None
    #: The prompt of each segment, in order, and the seeds the requests carried.
    prompts: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    planned_usd: Decimal = Decimal(0)
    charged_usd: Decimal = Decimal(0)


class VariantEntry(BaseModel):
    """A variant as the review page introduces it: its overrides, and whether (and why) it was
    promoted to a final (``promoted`` None: nothing was to be chosen)."""

    model_config = ConfigDict(frozen=True)

    id: str
    overrides: dict[str, str] = Field(default_factory=dict)
    promoted: bool | None = None
    reason: str = ""


class ReportInput(BaseModel):
    """Everything the review page shows."""

    model_config = ConfigDict(frozen=True)

    script_name: str
    run_id: str
    generated_at: str = ""
    provider: str = ""
    #: ``delivered``, ``incomplete`` or ``failed`` (empty: not said); ``failure`` says why not.
    status: str = ""
    failure: str | None = None
    select: str = ""
    plan: tuple[PlanRow, ...] = ()
    spend_usd: Decimal = Field(ge=0)
    budget_usd: Decimal = Field(gt=0)
    variants: tuple[VariantEntry, ...] = ()
    masters: tuple[MasterEntry, ...] = ()
    archived_to: str | None = None
    archive_error: str | None = None


@dataclass(frozen=True)
class CostLine:
    """One line of the cost breakdown: planned against charged."""

    label: str
    planned: Decimal
    charged: Decimal


@dataclass(frozen=True)
class Column:
    """One variant of one narrative on the page: its masters by pass, in pass order."""

    variant: VariantEntry
    masters: tuple[MasterEntry, ...]


def cost_breakdown(rows: Sequence[PlanRow]) -> dict[str, list[CostLine]]:
    """Planned against charged, per pass and per variant (and pass), then the total."""

    def lines(key: Callable[[PlanRow], str]) -> list[CostLine]:
        planned: dict[str, Decimal] = {}
        charged: dict[str, Decimal] = {}
        for row in rows:
            planned[key(row)] = planned.get(key(row), Decimal(0)) + row.cost_usd
            charged[key(row)] = charged.get(key(row), Decimal(0)) + (row.charged_usd or Decimal(0))
        return [CostLine(k, planned[k], charged[k]) for k in planned]

    total = CostLine(
        "total",
        sum((r.cost_usd for r in rows), Decimal(0)),
        sum((r.charged_usd or Decimal(0) for r in rows), Decimal(0)),
    )
    return {
        "pass": lines(lambda r: r.pass_name),
        "variant": lines(lambda r: f"{r.variant} ({r.pass_name})"),
        "total": [total],
    }


def narrative_columns(run: ReportInput) -> list[tuple[str, list[Column]]]:
    """The masters grouped per narrative, one column per variant (in the script's order), so the
    page shows a narrative's variants side by side."""
    known = {v.id: v for v in run.variants}
    order = [v.id for v in run.variants] + [m.variant for m in run.masters if m.variant not in known]
    narratives = list(dict.fromkeys([m.narrative for m in run.masters] + [r.narrative for r in run.plan]))
    passes = {"draft": 0, "final": 1}
    grouped: list[tuple[str, list[Column]]] = []
    for narrative in narratives:
        columns = []
        for variant in dict.fromkeys(order):
            mine = sorted(
                (m for m in run.masters if m.narrative == narrative and m.variant == variant),
                key=lambda m: passes.get(m.pass_name, 2),
            )
            if mine or variant in known:
                columns.append(Column(known.get(variant, VariantEntry(id=variant)), tuple(mine)))
        grouped.append((narrative, columns))
    return grouped


def relative_href(target: str | Path, report_dir: Path) -> str:
    """A URL from the report's folder to ``target``, percent-encoded per path segment."""
    rel = os.path.relpath(Path(target).resolve(), report_dir.resolve())
    return "/".join(quote(part) for part in Path(rel).parts)


def _environment() -> Environment:
    # StrictUndefined: a typo in the template fails the render instead of printing nothing.
    environment = Environment(
        loader=PackageLoader("pipeline.media", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Money is shown by the one formatter: totals to the cent, a single request's cost exactly.
    environment.filters["usd"] = format_usd
    environment.filters["usd_exact"] = lambda amount: format_usd(amount, exact=True)
    return environment


def render_report(run: ReportInput, report_dir: Path) -> str:
    """The report's HTML, with links relative to ``report_dir``."""
    template = _environment().get_template("report.html")

    def href(path: str | None) -> str | None:
        return relative_href(path, report_dir) if path else None

    share = float(run.spend_usd / run.budget_usd)  # for the bar's width and the percentage
    narratives = narrative_columns(run)
    return template.render(
        run=run,
        href=href,
        plan_total=sum((r.cost_usd for r in run.plan), Decimal(0)),
        costs=cost_breakdown(run.plan),
        narratives=narratives,
        # As many columns as the narrative with the most variants: variants line up across narratives.
        width=max((len(columns) for _, columns in narratives), default=1) or 1,
        undelivered=[m for m in run.masters if m.error],
        spend_share=share,
        spend_ratio=min(1.0, share),
    )


def write_report(run: ReportInput, out_html: str | Path) -> Path:
    """Write the run's HTML report to ``out_html`` (atomically) and return its path.

    Example::

        write_report(ReportInput(script_name="summer-launch", run_id="r1", spend_usd=Decimal("12.3"),
                                 budget_usd=Decimal(40), masters=(...,)), "renders/r1/report.html")
    """
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_report(run, out.parent), encoding="utf-8")
    os.replace(tmp, out)
    return out


def failing(masters: Sequence[MasterEntry]) -> list[MasterEntry]:
    """The masters whose QC did not pass (for a summary line or an exit status)."""
    return [m for m in masters if m.qc is not None and not m.qc.passed]
