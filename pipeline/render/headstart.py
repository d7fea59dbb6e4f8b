"""A run that starts before its orchestrator answers: ``klingflow run`` generates while Prefect boots.

Prefect's temporary (ephemeral) API server takes ~3 s to answer on a 2-core machine, and the
flow run exists only once it does; the plan is ready in about one. So the command line opens the
run and starts it as soon as the script is planned (:meth:`HeadStart.begin`), and the hooks the
Prefect flow adds reach the run through a :class:`Relay`:

- until the flow attaches, jobs and stages run as they are (no task run), and the events, stages
  and spend they report are kept, in order;
- when it attaches (:meth:`HeadStart.attach`, called inside the flow run), what was kept is
  replayed to the flow's sinks (its Logs tab and progress artifact), and every later job and
  stage goes through the flow's hooks *in the flow run's context*: task runs of that flow run,
  as when the flow opens the run itself.

Money is the engine's, as ever: one session, one job store, one set of limits and
reservations; the flow never opens a second session. Only for Prefect's ephemeral mode: with a
configured server, the global limits and the run lock live on the server, and the run waits for
it as before (``pipeline/cli/run_cmds.py`` decides).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.planning.plan import PlannedRequest
from pipeline.render.engine import JobResult
from pipeline.render.progress import RunHooks
from pipeline.store.schema import Spend

if TYPE_CHECKING:
    from pipeline.render.entry import PreparedRun
    from pipeline.render.limits import Limits
    from pipeline.render.run import RunResult
    from pipeline.render.session import RunSession
    from pipeline.settings import Settings

_T = TypeVar("_T")


class Relay:
    """The flow's hooks, bound late: pass-through (and kept events) until :meth:`attach`."""

    def __init__(self) -> None:
        self._flow: RunHooks | None = None
        self._context: contextvars.Context | None = None
        #: What the run reported before the flow attached, in order: (hook name, its arguments).
        self._kept: list[tuple[str, tuple[Any, ...]]] = []
        #: Set at the run's first job event (a submit, a reuse, a refusal): its start is over.
        self.moving = asyncio.Event()

    @property
    def attached(self) -> bool:
        """Whether the flow has attached."""
        return self._flow is not None

    def hooks(self) -> RunHooks:
        """The hooks to open the run with (beside the caller's own)."""
        return RunHooks(
            on_event=self.on_event,
            on_stage=self.on_stage,
            on_spend=self.on_spend,
            wrap=self.wrap,
            run_stage=self.run_stage,
        )

    def attach(self, flow: RunHooks, context: contextvars.Context) -> None:
        """From now on, ``flow``'s hooks, called in ``context`` (the flow run's); what was kept
        before is replayed to them first, in order. ``flow.choose`` cannot be taken: the run was
        built without a chooser (a manual choice in a UI needs a configured server)."""
        if flow.choose is not None:
            raise ValueError("a run started before its flow cannot take the flow's chooser")
        self._flow, self._context = flow, context
        for hook, args in self._kept:
            self._call(getattr(flow, hook), *args)
        self._kept = []

    def _call(self, sink: Callable[..., None] | None, *args: Any) -> None:
        """A sink called in (a copy of) the flow run's context, where Prefect's run logger is."""
        if sink is not None and self._context is not None:
            # A copy per call: one Context cannot be entered twice at once (a sink's own call
            # back into the relay would).
            self._context.copy().run(sink, *args)

    async def _in_flow(self, work: Coroutine[Any, Any, _T]) -> _T:
        """``work`` as a task of the flow run's context (a cancel of the caller cancels it)."""
        assert self._context is not None
        return await asyncio.get_running_loop().create_task(work, context=self._context.copy())

    def on_event(self, event: str, request: PlannedRequest, detail: str) -> None:
        """A job's event: to the flow, or kept for it."""
        self.moving.set()
        if self._flow is None:
            self._kept.append(("on_event", (event, request, detail)))
        else:
            self._call(self._flow.on_event, event, request, detail)

    def on_stage(self, stage: str) -> None:
        """The stage the run reached: to the flow, or kept for it."""
        if self._flow is None:
            self._kept.append(("on_stage", (stage,)))
        else:
            self._call(self._flow.on_stage, stage)

    def on_spend(self, spend: Spend) -> None:
        """The run's money: to the flow, or kept for it."""
        if self._flow is None:
            self._kept.append(("on_spend", (spend,)))
        else:
            self._call(self._flow.on_spend, spend)

    async def wrap(self, request: PlannedRequest, job: Callable[[], Awaitable[JobResult]]) -> JobResult:
        """A job: as it is before the flow attaches, through the flow's wrapper after."""
        flow = self._flow
        if flow is None or flow.wrap is None:
            return await job()
        return await self._in_flow(_awaited(flow.wrap(request, job)))

    async def run_stage(self, kind: str, label: str, work: Callable[[], Awaitable[_T]]) -> _T:
        """A stage: as it is before the flow attaches, through the flow's stage runner after."""
        flow = self._flow
        if flow is None or flow.run_stage is None:
            return await work()
        return await self._in_flow(_awaited(flow.run_stage(kind, label, work)))


async def _awaited(work: Awaitable[_T]) -> _T:
    return await work


class HeadStart:
    """A run opened and started before its flow run exists; the flow attaches to it."""

    def __init__(
        self, relay: Relay, task: asyncio.Task[RunResult], opened: asyncio.Future[RunSession]
    ) -> None:
        self.relay = relay
        self.task = task
        #: The open session, once it is open (the command line stops it through it).
        self.opened = opened

    @classmethod
    def begin(
        cls,
        prepared: PreparedRun,
        settings: Settings,
        hooks: RunHooks,
        *,
        limits: Limits,
        provider: str | None = None,
        approve: Sequence[str] | None = None,
        resubmit_unknown: bool = False,
        rehearse: bool = False,
    ) -> HeadStart:
        """Open ``prepared`` with ``hooks`` (and the relay's) and start its stages now, in a task
        of the running loop; the session opens, runs and closes in that task."""
        from pipeline.render.entry import open_prepared

        if hooks.wrap is not None or hooks.run_stage is not None or hooks.choose is not None:
            # The caller's own would take precedence over the relay's, and the flow's never come.
            raise ValueError("a head start relays the flow's wrap, run_stage and choose: pass none")
        relay = Relay()
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[RunSession] = loop.create_future()

        async def run() -> RunResult:
            async with open_prepared(
                prepared,
                settings,
                hooks=hooks.merged(relay.hooks()),
                provider=provider,
                limits=limits,
                approve=approve,
                resubmit_unknown=resubmit_unknown,
                rehearse=rehearse,
            ) as session:
                opened.set_result(session)
                return await session.run.execute()

        task = loop.create_task(run(), name=f"klingflow run {prepared.run_id}")
        # A run that fails before it opened: the session never comes (its error is the task's).
        task.add_done_callback(lambda t: opened.cancel() if not opened.done() else None)
        return cls(relay, task, opened)

    async def under_way(self, wait_s: float) -> None:
        """Return once the run's first job event came (its first submit, typically), it ended,
        or ``wait_s`` seconds passed."""
        moving = asyncio.ensure_future(self.relay.moving.wait())
        try:
            await asyncio.wait({moving, self.task}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            moving.cancel()

    async def attach(self, flow: RunHooks) -> RunResult:
        """Called inside the flow run: take ``flow``'s hooks from now on, then wait for the run
        to finish (its outcome, or its error)."""
        self.relay.attach(flow, contextvars.copy_context())
        return await self.task

    async def abandon(self) -> None:
        """The flow never attached (Prefect did not come up): stop the run's task and wait for
        it, keeping none of its errors (the caller stops its submits and cancels what is queued
        first; the job store keeps everything else for a rerun)."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
