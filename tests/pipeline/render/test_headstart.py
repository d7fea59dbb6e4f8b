"""A run started before its flow: the relay passes jobs through until the flow attaches, keeps
what the run reported for the flow, and runs everything after in the flow run's context."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from pipeline.planning.plan import build_plan
from pipeline.render.engine import JobResult
from pipeline.render.headstart import HeadStart, Relay
from pipeline.render.progress import RunHooks
from pipeline.script.loader import load_script
from pipeline.store.schema import JobStatus, Spend

#: Stands for Prefect's FlowRunContext: set only inside "the flow".
IN_FLOW: contextvars.ContextVar[str | None] = contextvars.ContextVar("in_flow", default=None)


def _request(repo_root: Any) -> Any:
    return build_plan(load_script(str(repo_root / "configs" / "bulk-ab.yaml")).script).requests[0]


def test_before_attach_jobs_run_as_they_are_and_reports_are_kept(repo_root: Any) -> None:
    request = _request(repo_root)
    relay = Relay()

    async def scenario() -> tuple[JobResult, list[tuple[str, Any]]]:
        async def job() -> JobResult:
            return JobResult(request, JobStatus.COMPLETED)

        result = await relay.wrap(request, job)
        assert await relay.run_stage("qc", "qc-draft", lambda: asyncio.sleep(0, "ran")) == "ran"
        relay.on_stage("draft")
        relay.on_event("submitted", request, "r-1")
        relay.on_spend(Spend(Decimal(5), Decimal(1), Decimal(0)))
        relay.on_spend(Spend(Decimal(5), Decimal(0), Decimal(1)))
        relay.on_event("done", request, "r-1")
        seen: list[tuple[str, Any]] = []

        def sink(kind: str) -> Callable[..., None]:
            return lambda *args: seen.append((kind, (IN_FLOW.get(), *args)))

        async def flow() -> None:
            IN_FLOW.set("flow-run-1")
            relay.attach(
                RunHooks(on_event=sink("event"), on_stage=sink("stage"), on_spend=sink("spend")),
                contextvars.copy_context(),
            )

        await flow()
        return result, seen

    result, seen = asyncio.run(scenario())
    assert result.status is JobStatus.COMPLETED
    # Replayed in the flow run's context, in the order they came.
    assert [(kind, args[0]) for kind, args in seen] == [
        ("stage", "flow-run-1"),
        ("event", "flow-run-1"),
        ("spend", "flow-run-1"),
        ("spend", "flow-run-1"),
        ("event", "flow-run-1"),
    ]
    assert [args[1] for kind, args in seen if kind == "event"] == ["submitted", "done"]
    assert seen[3][1][1] == Spend(Decimal(5), Decimal(0), Decimal(1))
    assert relay.attached


def test_after_attach_jobs_and_stages_go_through_the_flow_in_its_context(repo_root: Any) -> None:
    request = _request(repo_root)
    relay = Relay()
    wrapped: list[tuple[str | None, str]] = []

    async def flow_wrap(req: Any, job: Callable[[], Awaitable[JobResult]]) -> JobResult:
        wrapped.append((IN_FLOW.get(), "job"))
        return await job()

    async def flow_stage(kind: str, label: str, work: Callable[[], Awaitable[Any]]) -> Any:
        wrapped.append((IN_FLOW.get(), label))
        return await work()

    async def scenario() -> list[str | None]:
        async def flow() -> None:
            IN_FLOW.set("flow-run-2")
            relay.attach(RunHooks(wrap=flow_wrap, run_stage=flow_stage), contextvars.copy_context())

        await flow()  # its context ends here, as the run's tasks were made before it
        seen: list[str | None] = []

        async def job() -> JobResult:
            seen.append(IN_FLOW.get())
            return JobResult(request, JobStatus.COMPLETED)

        await relay.wrap(request, job)
        await relay.run_stage("qc", "qc-draft", lambda: asyncio.sleep(0))
        relay.on_event("done", request, "")  # no sink for events: nothing to do
        return seen

    assert asyncio.run(scenario()) == ["flow-run-2"]
    assert wrapped == [("flow-run-2", "job"), ("flow-run-2", "qc-draft")]


def test_cancelling_a_relayed_job_cancels_its_task_in_the_flow(repo_root: Any) -> None:
    request = _request(repo_root)
    relay = Relay()
    cancelled = asyncio.Event

    async def scenario() -> bool:
        flag = cancelled()

        async def job() -> JobResult:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                flag.set()
                raise
            raise AssertionError("not cancelled")

        async def through(req: Any, work: Callable[[], Awaitable[JobResult]]) -> JobResult:
            return await work()

        relay.attach(RunHooks(wrap=through), contextvars.copy_context())
        outer = asyncio.ensure_future(relay.wrap(request, job))
        await asyncio.sleep(0.05)
        outer.cancel()
        await asyncio.gather(outer, return_exceptions=True)
        await asyncio.wait_for(flag.wait(), 2)
        return flag.is_set()

    assert asyncio.run(scenario())


def test_the_flows_chooser_cannot_be_taken_nor_the_callers_own_hooks() -> None:
    async def choose(drafts: Any, finals: int) -> list[str]:
        return []

    with pytest.raises(ValueError, match="chooser"):
        Relay().attach(RunHooks(choose=choose), contextvars.copy_context())

    async def wrap(req: Any, job: Any) -> Any:
        return await job()

    async def begin() -> None:
        HeadStart.begin(None, None, RunHooks(wrap=wrap), limits=None)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="pass none"):
        asyncio.run(begin())
