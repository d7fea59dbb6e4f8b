"""The sandbox's jobs: scheduling on simulated GPU slots, rendering, billing.

All methods run on the server's event loop (one thread); renders run in a small thread pool.
A job is queued until its slot frees up, runs for its modelled render time, then completes (and
is charged) once its file is rendered, or fails (and is not charged) when a fault says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pipeline.errors import MediaError
from pipeline.pricing import provider_request_cost
from pipeline.providers import wire
from pipeline.providers.latency import LatencyModel
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.faults import FaultDice
from pipeline.providers.sandbox.inputs import KlingInput
from pipeline.providers.sandbox.ledger import Ledger
from pipeline.providers.sandbox.limits import TokenBucket
from pipeline.providers.sandbox.render import Placeholder, RenderJob, frame_size, render
from pipeline.providers.sandbox.requestlog import RequestLog

#: A start or end frame: a file, a labelled placeholder (an image the sandbox cannot fetch), none.
Frame = Path | Placeholder | None
#: Native elements as the render shows them: (name as prompts mention it, its images).
ElementFrames = tuple[tuple[str, tuple[Path | Placeholder, ...]], ...]


@dataclass
class Job:
    """One accepted request."""

    request_id: str
    model_id: str
    inp: KlingInput
    fingerprint: str
    cost: Decimal
    created_at: float  # wall clock
    start_at: float  # monotonic
    done_at: float  # monotonic
    will_fail: bool
    status: str = wire.IN_QUEUE
    error: str | None = None
    finished_at: float | None = None  # wall clock
    video_name: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def in_flight(self) -> bool:
        """Queued or running."""
        return self.status in (wire.IN_QUEUE, wire.IN_PROGRESS)


def fingerprint_of(inp: KlingInput) -> str:
    """A short, stable id of a request's inputs: what the picture shows as "req …"."""
    canonical = json.dumps(
        {
            "tier": inp.tier.value,
            "mode": inp.mode,
            "prompt": inp.prompt,
            "negative_prompt": inp.negative_prompt,
            "duration": inp.duration,
            "aspect_ratio": inp.aspect_ratio,
            "cfg_scale": inp.cfg_scale,
            "generate_audio": inp.generate_audio,
            "seed": inp.seed,
            "start_image_url": inp.start_image_url,
            "end_image_url": inp.end_image_url,
        }
        # A storyboard, elements and the dialect enter only when present: the fingerprints of
        # RunComfy's prose-prompt requests stay what they were.
        | ({"shots": inp.shots} if inp.shots else {})
        | ({"elements": inp.elements} if inp.elements else {})
        | ({"dialect": inp.dialect} if inp.dialect != "runcomfy" else {}),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


class SandboxState:
    """Jobs, slots, limits, faults and the ledger of one sandbox server."""

    def __init__(self, config: SandboxConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.uploads_dir = data_dir / "uploads"
        self.videos_dir = data_dir / "renders"
        #: Images that arrived inside a submit as data URIs, stored by content.
        self.images_dir = data_dir / "images"
        for folder in (self.uploads_dir, self.videos_dir, self.images_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(data_dir / "ledger.jsonl")
        self.requests = RequestLog()
        self.latency = LatencyModel(scale=config.latency_scale)
        #: Current fault rates; replaced whole (never mutated) so readers on other threads see
        #: either the old or the new configuration.
        self.faults = config.faults
        self.dice = FaultDice(config.faults.seed)
        self.bucket = TokenBucket(config.submit_rate_per_s, config.submit_burst)
        self.jobs: dict[str, Job] = {}
        #: What clients did, for checking them: most requests in flight at once, the acceptance
        #: times of submits (monotonic), submits refused with a 429, and downloads.
        self.max_in_flight_seen = 0
        self.accepted_times: list[float] = []
        self.rate_limited = 0
        #: Video downloads per request id.
        self.downloads: dict[str, int] = {}
        self._slots = [0.0] * config.slots
        self._renders: dict[str, Future[Path]] = {}
        self._executor = ThreadPoolExecutor(max_workers=config.render_workers, thread_name_prefix="kf-render")

    # --- limits -------------------------------------------------------------------------------

    def submit_wait(self) -> float:
        """0.0 if a submit may proceed now, else seconds to wait (rate or in-flight limit)."""
        in_flight = [j for j in self.jobs.values() if j.in_flight]
        if len(in_flight) >= self.config.max_in_flight:
            now = time.monotonic()
            return max(min(j.done_at for j in in_flight) - now, 0.05)
        return self.bucket.take()

    def committed_usd(self) -> Decimal:
        """Cost of requests that are charged or may still be (not failed, not cancelled)."""
        return sum(
            (j.cost for j in self.jobs.values() if j.status not in (wire.FAILED, wire.CANCELLED)),
            Decimal(0),
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def cost_of(self, inp: KlingInput, *, voice: bool = False) -> Decimal:
        """What ``inp`` costs by its dialect's price table (``voice``: a provider voice is used)."""
        table = "sandbox" if inp.dialect == "runcomfy" else inp.dialect
        return provider_request_cost(table, inp.tier, inp.duration, inp.generate_audio, voice)

    def accept(
        self,
        model_id: str,
        inp: KlingInput,
        images: tuple[Frame, Frame],
        *,
        elements: ElementFrames = (),
        voice: bool = False,
    ) -> Job:
        """Create, bill-record and schedule a request; its render starts right away.

        ``elements`` are the images of ``inp.elements`` as the render shows them; ``voice`` says
        the request uses a provider voice (billed at the dialect's voice rate).
        """
        now = time.monotonic()
        jitter = self.config.latency_jitter
        queue_wait = self.latency.queue_s(1) * self.dice.uniform(0.5, 1.5)
        render_s = self.latency.render_s(inp.tier, inp.duration, inp.generate_audio) * self.dice.uniform(
            1 - jitter, 1 + jitter
        )
        slot = min(range(len(self._slots)), key=self._slots.__getitem__)
        start_at = max(now + queue_wait, self._slots[slot])
        done_at = start_at + render_s
        self._slots[slot] = done_at
        fingerprint = fingerprint_of(inp)
        job = Job(
            request_id=str(uuid.uuid4()),
            model_id=model_id,
            inp=inp,
            fingerprint=fingerprint,
            cost=self.cost_of(inp, voice=voice),
            created_at=time.time(),
            start_at=start_at,
            done_at=done_at,
            will_fail=self.dice.roll(self.faults.fail),
        )
        self.jobs[job.request_id] = job
        self.accepted_times.append(now)
        self.max_in_flight_seen = max(
            self.max_in_flight_seen, sum(1 for j in self.jobs.values() if j.in_flight)
        )
        self.ledger.record(
            "accepted",
            job.request_id,
            model_id=model_id,
            fingerprint=fingerprint,
            prompt=inp.prompt,
            duration=inp.duration,
            generate_audio=inp.generate_audio,
            cost_usd=str(job.cost),
            dialect=inp.dialect,
        )
        render_future = None if job.will_fail else self._render(job, images, elements)
        job.task = asyncio.get_running_loop().create_task(self._run(job, render_future))
        return job

    def _render(self, job: Job, images: tuple[Frame, Frame], elements: ElementFrames = ()) -> Future[Path]:
        inp = job.inp
        width, height = frame_size(inp.tier, inp.aspect_ratio, self.config.render_scale)
        seed = inp.seed if inp.seed is not None else int(job.fingerprint, 16) % 2**31
        render_job = RenderJob(
            fingerprint=job.fingerprint,
            tier=inp.tier,
            aspect_ratio=inp.aspect_ratio,
            duration=inp.duration,
            audio=inp.generate_audio,
            seed=seed,
            prompt=inp.prompt,
            width=width,
            height=height,
            fps=self.config.fps,
            start_image=images[0],
            end_image=images[1],
            shots=inp.shots,
            elements=elements,
        )
        # Identical inputs give identical bytes, so one render serves every such request.
        key = hashlib.sha256(repr(render_job).encode()).hexdigest()[:20]
        out = self.videos_dir / f"{key}.mp4"
        future = self._renders.get(key)
        if future is None or (future.done() and future.exception() is not None):
            if out.is_file():
                future = Future()
                future.set_result(out)
            else:
                future = self._executor.submit(render, render_job, out, timeout=self.config.render_timeout_s)
            self._renders[key] = future
        return future

    async def _run(self, job: Job, render_future: Future[Path] | None) -> None:
        await asyncio.sleep(max(job.start_at - time.monotonic(), 0.0))
        job.status = wire.IN_PROGRESS
        await asyncio.sleep(max(job.done_at - time.monotonic(), 0.0))
        if render_future is None:
            self._finish_failed(job, "sandbox: injected generation failure")
            return
        try:
            path = await asyncio.wrap_future(render_future)
        except MediaError as exc:
            self._finish_failed(job, f"sandbox: render failed: {exc}")
            return
        job.video_name = path.name
        job.status = wire.COMPLETED
        job.finished_at = time.time()
        self.ledger.record("charged", job.request_id, cost_usd=str(job.cost))

    def _finish_failed(self, job: Job, error: str) -> None:
        job.status = wire.FAILED
        job.error = error
        job.finished_at = time.time()
        self.ledger.record("failed", job.request_id, error=error)

    def cancel(self, job: Job) -> bool:
        """Cancel ``job`` if it is still queued; True when it was."""
        if job.status != wire.IN_QUEUE:
            return False
        if job.task is not None:
            job.task.cancel()
        job.status = wire.CANCELLED
        job.finished_at = time.time()
        self.ledger.record("cancelled", job.request_id)
        return True

    def queue_position(self, job: Job) -> int | None:
        """1 + queued jobs due to start before this one; None unless queued."""
        if job.status != wire.IN_QUEUE:
            return None
        return 1 + sum(
            1 for j in self.jobs.values() if j.status == wire.IN_QUEUE and j.start_at < job.start_at
        )

    async def close(self) -> None:
        """Stop every job's timer and the render pool."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
