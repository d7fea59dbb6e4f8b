"""The measured phases of ``scripts/bench_throughput.py``, each run in a fresh process.

``python scripts/bench_throughput_phases.py PHASE PARAMS_JSON`` runs one phase against the
sandbox named in the parameters and writes its numbers (JSON) to ``params["result_file"]``:

- ``engine``: ``open_run(...)`` + ``session.engine.run_pass(plan.requests_for("draft"))``, traced;
- ``flow``: the Prefect flow ``flows.render.render`` in ephemeral mode, its draft pass timed by
  wrapping ``Engine.run_pass`` (the environment comes from the parent);
- ``baseline``: the RunComfy CLI's way, one job at a time, status every 2 s × the latency scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.stack.measure import CpuMeter, peak_rss_mb

CLI_INTERVAL_S = 2.0
RUN_ID = "bench-throughput"


def status_calls(calls: Any, request_ids: list[str]) -> list[int]:
    return [calls.get(rid, "status") for rid in request_ids]


# --- phases (each in a fresh child process) ---------------------------------------------------


def traced(look: Any, seen: dict[str, float]) -> Any:
    """``look`` (a status call) that notes when it last had an answer for each request."""

    async def wrapper(request_id: str) -> Any:
        info = await look(request_id)
        seen[request_id] = time.time()
        return info

    return wrapper


async def phase_engine(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline.planning.plan import build_plan
    from pipeline.render.limits import LocalLimits
    from pipeline.render.progress import RunHooks
    from pipeline.render.session import open_run
    from pipeline.render.settings import RunSettings
    from pipeline.script.loader import load_script

    settings = RunSettings(
        runs_dir=Path(p["runs_dir"]),
        max_in_flight=p["in_flight"],
        submit_rate_per_s=p["rate"],
        submit_burst=p["burst"],
        sandbox_url=p["base_url"],
        sandbox_latency_scale=p["scale"],
        sandbox_render_scale=p["render_scale"],
    )
    loaded = load_script(p["script"])
    plan = build_plan(loaded.script)
    # Light tracing (a few dict writes per job) to split each in-flight slot's time: when the
    # job's task took and released its slot, which request it submitted, when it last had an
    # answer to a status call (the terminal one).
    held: dict[Any, list[list[float]]] = {}
    submitted: dict[Any, str] = {}
    last_status: dict[str, float] = {}

    class TracedLimits(LocalLimits):
        @contextlib.asynccontextmanager
        async def in_flight(self) -> Any:
            async with super().in_flight():
                span = [time.time(), 0.0]
                held.setdefault(asyncio.current_task(), []).append(span)
                try:
                    yield
                finally:
                    span[1] = time.time()

    def on_event(event: str, _request: Any, detail: str) -> None:
        if event == "submitted":
            submitted[asyncio.current_task()] = detail

    limits = TracedLimits(p["in_flight"], p["rate"], p["burst"])
    rss_before = peak_rss_mb()
    async with open_run(
        loaded,
        plan,
        run_id=RUN_ID,
        settings=settings,
        provider="sandbox",
        limits=limits,
        hooks=RunHooks(on_event=on_event),
    ) as session:
        provider = session.provider.provider
        assert isinstance(provider, RunComfyProvider)  # the sandbox speaks RunComfy's API
        # A look is a status call or, from the adapter, a result call (poll_result): trace both.
        for name in ("status", "poll_result"):
            if hasattr(provider, name):
                setattr(provider, name, traced(getattr(provider, name), last_status))
        requests = plan.requests_for("draft")
        meter, t0 = CpuMeter(), time.monotonic()
        results = await session.engine.run_pass(requests)
        makespan = time.monotonic() - t0
        cpu = meter.stop()
        ids = [r.clip.request_id for r in results if r.clip is not None]
        calls = status_calls(provider.calls, ids)
    slots = {
        rid: {"acquired": held[task][-1][0], "released": held[task][-1][1], "seen": last_status.get(rid)}
        for task, rid in submitted.items()
    }
    return {
        "jobs": len(requests),
        "ok": len(ids),
        "makespan_s": makespan,
        **cpu,
        "status_calls": calls,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "pass_started": time.time() - (time.monotonic() - t0),
        "slots": slots,
    }


async def phase_flow(p: dict[str, Any]) -> dict[str, Any]:
    # The environment (KLINGFLOW_*, PREFECT_*) was set by the parent before this process began.
    from flows.render import render
    from pipeline.render.engine import Engine

    seen: dict[str, Any] = {}
    original = Engine.run_pass

    async def timed_run_pass(self: Engine, requests: Any) -> Any:
        meter, t0 = CpuMeter(), time.monotonic()
        seen["pass_started"] = time.time()
        results = await original(self, requests)
        seen["makespan_s"] = time.monotonic() - t0
        seen.update(meter.stop())
        seen["jobs"] = len(requests)
        ids = [r.clip.request_id for r in results if r.clip is not None]
        seen["ok"] = len(ids)
        seen["status_calls"] = status_calls(self.provider.calls, ids)  # type: ignore[attr-defined]
        seen["peak_rss_pass_mb"] = peak_rss_mb()
        return results

    Engine.run_pass = timed_run_pass  # type: ignore[method-assign]
    rss_before = peak_rss_mb()
    meter, t0 = CpuMeter(), time.monotonic()
    summary = await render(
        script=p["script"], run_id=RUN_ID, provider="sandbox", max_in_flight=p["in_flight"]
    )
    total = time.monotonic() - t0
    whole = meter.stop()
    return {
        **seen,
        "flow_total_s": total,
        "flow_cpu_self_s": whole["cpu_self_s"],
        "flow_cpu_children_s": whole["cpu_children_s"],
        "flow_cpu_descendants_s": whole["cpu_descendants_s"],
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "masters": len(summary.masters),
        "masters_delivered": sum(1 for m in summary.masters if m.path and not m.error),
        "delivered": summary.delivered,
    }


async def fixed_poll(provider: Any, request_id: str, interval: float) -> None:
    """The RunComfy CLI's wait (as ``scripts/bench_polling.py``): a status call every ``interval``."""
    while True:
        await asyncio.sleep(interval)
        if (await provider.status(request_id)).state.is_terminal:
            return


async def phase_baseline(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline.planning.plan import build_plan
    from pipeline.providers.runcomfy import RunComfyProvider
    from pipeline.providers.settings import ProviderSettings
    from pipeline.script.loader import load_script

    requests = build_plan(load_script(p["script"]).script).requests_for("draft")
    subset = [requests[i] for i in p["indices"]]
    out = Path(p["runs_dir"])  # made by the parent
    settings = ProviderSettings(base_url=p["base_url"], token_file=Path("/nonexistent"))
    rss_before = peak_rss_mb()
    async with RunComfyProvider(settings, download_origins=(p["origin"],)) as provider:
        meter, t0 = CpuMeter(), time.monotonic()
        ids = []
        for n, request in enumerate(subset):
            spec = request.spec()
            rid = (await provider.submit(spec)).request_id
            await fixed_poll(provider, rid, CLI_INTERVAL_S * p["scale"])
            result = await provider.result(rid)
            if result.video_url is not None:
                await provider.download(result.video_url, out / f"{n:03d}.mp4", spec)
                ids.append(rid)
        makespan = time.monotonic() - t0
        cpu = meter.stop()
        calls = status_calls(provider.calls, ids)
    return {
        "jobs": len(subset),
        "ok": len(ids),
        "makespan_s": makespan,
        **cpu,
        "status_calls": calls,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES = {"engine": phase_engine, "flow": phase_flow, "baseline": phase_baseline}


if __name__ == "__main__":
    phase_params = json.loads(sys.argv[2])
    outcome = asyncio.run(PHASES[sys.argv[1]](phase_params))
    Path(phase_params["result_file"]).write_text(json.dumps(outcome))
