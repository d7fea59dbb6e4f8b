"""Benchmark: status calls per job and added latency, adaptive poller vs the CLI's fixed 2 s.

Runs the same mix of jobs against an in-process sandbox twice: once waited for with
:func:`pipeline.providers.polling.wait_for_completion`, once with a fixed-interval poller like
the official RunComfy CLI (every 2 s). Time is scaled (``--scale``): the sandbox's latency model
and both pollers run ``scale`` times faster, and every reported time is divided by ``scale``,
so numbers read as real-world seconds.

Added latency = when the poller saw the job finished − when the sandbox finished it.

Usage: .venv/bin/python scripts/bench_polling.py [--scale 0.02] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import Submission
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import PollPolicy, wait_for_completion
from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.providers.settings import ProviderSettings

CLI_INTERVAL_S = 2.0
MIX: tuple[tuple[Tier, int, bool], ...] = (
    (Tier.STANDARD, 5, False),
    (Tier.STANDARD, 10, True),
    (Tier.STANDARD, 15, False),
    (Tier.PRO, 5, True),
    (Tier.PRO, 10, False),
    (Tier.K4, 5, False),
)


@dataclass
class Sample:
    calls: int
    added_s: float
    total_s: float


async def fixed_poll(provider: RunComfyProvider, submission: Submission, interval: float) -> float:
    """Poll every ``interval`` seconds until terminal; return time.time() when seen."""
    while True:
        await asyncio.sleep(interval)
        if (await provider.status(submission.request_id)).state.is_terminal:
            return time.time()


async def run_round(
    sandbox: SandboxHandle,
    scale: float,
    wait: Callable[[RunComfyProvider, Submission, GenerationSpec], Awaitable[float]],
) -> list[Sample]:
    settings = ProviderSettings(base_url=sandbox.base_url, token_file=Path("/nonexistent"))
    async with RunComfyProvider(settings, download_origins=(sandbox.origin,)) as provider:

        async def one(i: int, tier: Tier, duration: int, audio: bool) -> Sample:
            spec = GenerationSpec(
                tier=tier, prompt=f"bench {i}", duration=duration, generate_audio=audio, seed=i
            )
            start = time.time()
            submission = await provider.submit(spec)
            seen = await wait(provider, submission, spec)
            result = await provider.result(submission.request_id)
            assert result.finished_at is not None, result
            added = seen - result.finished_at.timestamp()
            return Sample(
                provider.calls.get(submission.request_id, "status"), added / scale, (seen - start) / scale
            )

        return list(await asyncio.gather(*(one(i, *job) for i, job in enumerate(MIX))))


def summarise(name: str, samples: list[Sample]) -> str:
    calls = [s.calls for s in samples]
    added = [s.added_s for s in samples]
    totals = [s.total_s for s in samples]
    return (
        f"| {name} | {len(samples)} | {statistics.mean(calls):.1f} | {max(calls)} | "
        f"{statistics.mean(added):.1f} | {statistics.median(added):.1f} | {max(added):.1f} | "
        f"{statistics.mean(totals):.0f} |"
    )


async def main(scale: float, rounds: int) -> None:
    config = SandboxConfig(latency_scale=scale, render_scale=0.05, slots=4)
    policy = PollPolicy(latency=LatencyModel(scale=scale))

    async def adaptive(provider: RunComfyProvider, submission: Submission, spec: GenerationSpec) -> float:
        return (await wait_for_completion(provider, submission, spec, policy)).seen_at

    async def fixed(provider: RunComfyProvider, submission: Submission, spec: GenerationSpec) -> float:
        return await fixed_poll(provider, submission, CLI_INTERVAL_S * scale)

    results: dict[str, list[Sample]] = {"adaptive (this poller)": [], "fixed 2 s (RunComfy CLI)": []}
    for _ in range(rounds):
        for name, wait in (("adaptive (this poller)", adaptive), ("fixed 2 s (RunComfy CLI)", fixed)):
            with run_sandbox(config) as sandbox:
                results[name] += await run_round(sandbox, scale, wait)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"time scale: {scale} (numbers are real-world seconds); jobs per poller: {len(MIX) * rounds}")
    print(
        "| poller | jobs | status calls / job (mean) | max | added latency mean (s) | median | max | "
        "submit→seen mean (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, samples in results.items():
        print(summarise(name, samples))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02, help="time scale of sandbox and pollers")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the job mix per poller")
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.rounds))
