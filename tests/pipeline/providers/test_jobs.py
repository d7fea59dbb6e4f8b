"""Whole jobs under faults: 50 requests at 20% of every fault end accounted for, none paid twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import GenerationTimeout
from pipeline.media.probe import probe
from pipeline.providers.jobs import JobOutcome, JobReport, run_job
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import MAX_UNREADABLE_ANSWERS, PollPolicy
from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.server import run_sandbox
from pipeline.providers.settings import ProviderSettings

JOBS = 50
CONCURRENCY = 10


@pytest.mark.slow
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


# --- answers that cannot be read end the job like a timeout, still followed ---------------------


def _mock_provider(handler: Any) -> RunComfyProvider:
    settings = ProviderSettings(token="t", token_file=Path("/nonexistent"), max_attempts=2)
    return RunComfyProvider(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize(
    "garbage",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={"error_code": 500001, "error_message": "internal"}),
    ],
)
def test_unreadable_answers_end_the_job_as_timed_out_not_failed(
    garbage: httpx.Response, make_spec: Any, tmp_path: Path
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": "req-9"})
        return garbage

    policy = PollPolicy(latency=LatencyModel(scale=0.0001))
    report = asyncio.run(run_job(_mock_provider(handler), make_spec(), tmp_path / "x.mp4", policy=policy))
    assert report.outcome is JobOutcome.TIMED_OUT
    assert report.submission is not None and report.submission.request_id == "req-9"  # still followed
    assert isinstance(report.error, GenerationTimeout)
    assert "could not be read" in str(report.error) and "stays submitted" in str(report.error)
    looks = [p for p in seen if p.startswith("/v1/requests/")]
    assert len(looks) == 2 * MAX_UNREADABLE_ANSWERS  # 2 attempts per look, a handful of looks


def test_an_unreadable_final_result_ends_like_a_timeout(make_spec: Any, tmp_path: Path) -> None:
    results = iter([httpx.Response(200, json={"request_id": "r", "status": "in_queue"})])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": "r"})
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"request_id": "r", "status": "completed"})
        return next(results, httpx.Response(200, text="garbage"))

    policy = PollPolicy(latency=LatencyModel(scale=0.0001))
    report = asyncio.run(run_job(_mock_provider(handler), make_spec(), tmp_path / "x.mp4", policy=policy))
    assert report.outcome is JobOutcome.TIMED_OUT and report.request_id == "r"
