"""A render's stages as Prefect task runs, and what the flow tells the Logs tab.

Each stage kind (``master`` per narrative/variant/pass, ``qc``, ``selection``, ``archive``,
``report``) is a task of its own name, so the flow run's timeline shows the work as it
happens, beside the ``generate`` task runs. The flow logs at INFO through Prefect's run logger:
the plan, each stage, provider errors and money. The command line keeps those off the terminal
(its console handler is at WARNING) while Prefect's API handler still sends them to the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from pipeline.money import billing_note, format_usd
from pipeline.planning.plan import PlannedRequest, RenderPlan
from pipeline.store.jobs import Spend

_T = TypeVar("_T")

#: Job events that are worth a line in the Logs tab, at the level they deserve.
EVENT_LEVELS = {
    "failed": logging.WARNING,
    "unknown": logging.WARNING,
    "skipped": logging.WARNING,
    "regenerate": logging.WARNING,
    "submitted": logging.INFO,
    "done": logging.INFO,
    "reused": logging.INFO,
}


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's logger of the current flow or task run (a plain one outside a run)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("klingflow.flow")


async def _stage(label: str, kind: str, work: Callable[[], Awaitable[Any]]) -> Any:
    logger = run_logger()
    logger.info("%s: started", label)
    result = await work()
    if kind == "qc" and isinstance(result, dict):
        for master, verdict in result.items():
            logger.log(logging.INFO if verdict == "passed" else logging.WARNING, "QC %s: %s", master, verdict)
    logger.info("%s: done", label)
    return result


#: One Prefect task per stage kind; their task runs are named after the stage's label.
STAGE_TASKS = {
    kind: task(name=kind, cache_policy=NO_CACHE, task_run_name="{label}")(_stage)
    for kind in ("master", "qc", "selection", "archive", "report")
}


async def run_stage(kind: str, label: str, work: Callable[[], Awaitable[_T]]) -> _T:
    """``work`` as a task run of the stage's kind (:class:`pipeline.render.run.StageRunner`).

    Not retried by Prefect: a stage is reported, not repeated (a retry could pay twice).
    """
    stage = STAGE_TASKS.get(kind)
    if stage is None:
        return await work()
    return cast(_T, await stage(label, kind, work))


def log_plan(plan: RenderPlan, run_id: str, provider: str, *, rehearse: bool) -> None:
    """The plan in a few lines: requests, money against the budget, who bills, degradations."""
    logger = run_logger()
    drafts, finals = plan.requests_for("draft"), plan.requests_for("final")
    logger.info(
        "run %s: %d draft and %d final requests, %s of %s budget (drafts %s, finals %s)",
        run_id,
        len(drafts),
        len(finals),
        format_usd(plan.total_cents),
        format_usd(plan.budget.limit),
        format_usd(plan.cents_for("draft")),
        format_usd(plan.cents_for("final")),
    )
    logger.info(billing_note(provider, plan.total_cents, rehearse=rehearse))
    for note in plan.budget.degraded:
        logger.warning("degraded: %s", note)


def log_event(event: str, request: PlannedRequest, detail: str) -> None:
    """A job's event worth a line: submits, clips done, and every provider error."""
    level = EVENT_LEVELS.get(event)
    if level is None:
        return
    what = f"{request.pass_} {request.narrative}/{request.variant} segment {request.segment}"
    run_logger().log(level, "%s: %s%s", what, event, f" ({detail})" if detail else "")


def log_stage(stage: str) -> None:
    """The stage the run has reached."""
    run_logger().info("stage: %s", stage)


def log_spend(spend: Spend) -> None:
    """The run's money whenever it changes."""
    run_logger().info(
        "money: %s charged, %s reserved of %s",
        format_usd(spend.charged),
        format_usd(spend.reserved),
        format_usd(spend.limit),
    )
