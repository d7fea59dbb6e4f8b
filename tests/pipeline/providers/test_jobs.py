"""Whole jobs under faults: 50 requests at 20% of every fault end accounted for, none paid twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.media.probe import probe
from pipeline.providers.jobs import JobOutcome, JobReport, run_job
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.server import run_sandbox

JOBS = 50
CONCURRENCY = 10


def test_fifty_jobs_at_twenty_percent_faults(
    make_provider: Any, make_spec: Any, policy: Any, tmp_path: Path
) -> None:
    config = SandboxConfig(
        latency_scale=0.002, render_scale=0.05, slots=16, faults=FaultConfig.uniform(0.2, seed=2026)
    )
    with run_sandbox(config) as sandbox:

        async def batch() -> list[JobReport]:
            gate = asyncio.Semaphore(CONCURRENCY)
            async with make_provider(sandbox, max_attempts=5) as provider:

                async def one(i: int) -> JobReport:
                    spec = make_spec(prompt=f"batch job {i:02d}", generate_audio=i % 2 == 0, seed=i)
                    async with gate:
                        return await run_job(provider, spec, tmp_path / f"job{i:02d}.mp4", policy=policy)

                return await asyncio.gather(*(one(i) for i in range(JOBS)))

        reports = asyncio.run(batch())
        ledger = sandbox.ledger()

    outcomes = Counter(r.outcome for r in reports)
    assert sum(outcomes.values()) == JOBS
    assert set(outcomes) <= {JobOutcome.COMPLETED, JobOutcome.FAILED, JobOutcome.UNKNOWN}
    assert outcomes[JobOutcome.COMPLETED] > 0 and outcomes[JobOutcome.COMPLETED] < JOBS  # faults bit

    # No request charged twice, and no job (prompt) ever behind two requests: nothing resubmitted.
    assert all(entry.charge_count <= 1 for entry in ledger)
    per_job = Counter(entry.prompt for entry in ledger)
    assert max(per_job.values()) == 1

    charged = {entry.request_id for entry in ledger if entry.charged}
    for i, report in enumerate(reports):
        if report.outcome is JobOutcome.COMPLETED:
            assert report.clip is not None and report.clip.path.is_file()
            info = probe(report.clip.path)
            assert (info.audio is not None) == (i % 2 == 0)
            assert abs(info.duration - 3.0) < 0.1
            assert report.request_id in charged
        elif report.outcome is JobOutcome.UNKNOWN:
            assert report.error is not None and report.submission is None
            assert per_job.get(f"batch job {i:02d}", 0) <= 1
        else:
            assert report.error is not None  # failed explicitly, with its reason
    # Every .mp4 on disk is a completed job's verified clip; no partial files anywhere.
    on_disk = sorted(p.name for p in tmp_path.iterdir())
    assert on_disk == sorted(r.clip.path.name for r in reports if r.clip is not None)
