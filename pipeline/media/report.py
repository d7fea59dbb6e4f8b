"""The HTML report of a run: plan, spend, and each master with its contact sheet and QC.

Rendered with Jinja2 (autoescaping on: script names, labels and ffmpeg messages are data) from a
typed :class:`ReportInput` (money as ``Decimal``, shown by :func:`pipeline.money.format_usd`); media are linked relative to the report, so the folder can be moved or
archived whole and still open in a browser.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field

from pipeline.media.qc import QCReport
from pipeline.money import format_usd


class PlanRow(BaseModel):
    """One generation request of the plan."""

    model_config = ConfigDict(frozen=True)

    narrative: str
    variant: str
    pass_name: str  # draft | final
    segment: int
    tier: str
    duration_s: float
    audio: bool
    cost_usd: Decimal


class MasterEntry(BaseModel):
    """A delivered master: its files (paths on disk) and what was checked."""

    model_config = ConfigDict(frozen=True)

    narrative: str
    variant: str
    video: str
    duration_s: float
    sha256: str = ""
    contact_sheet: str | None = None
    srt: str | None = None
    integrated_lufs: float | None = None
    qc: QCReport | None = None


class ReportInput(BaseModel):
    """Everything the report shows."""

    model_config = ConfigDict(frozen=True)

    script_name: str
    run_id: str
    generated_at: str = ""
    plan: tuple[PlanRow, ...] = ()
    spend_usd: Decimal = Field(ge=0)
    budget_usd: Decimal = Field(gt=0)
    masters: tuple[MasterEntry, ...] = ()


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

    totals: dict[str, Decimal] = {}
    for row in run.plan:
        totals[row.pass_name] = totals.get(row.pass_name, Decimal(0)) + row.cost_usd
    share = float(run.spend_usd / run.budget_usd)  # for the bar's width and the percentage
    return template.render(
        run=run,
        href=href,
        plan_total=sum((r.cost_usd for r in run.plan), Decimal(0)),
        pass_totals=sorted(totals.items()),
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
