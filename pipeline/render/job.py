"""One job of a run as the engine reports it, and what a job's identity is made of.

A job's identity (its key in the job store) hashes everything that determines its output;
images enter it by content, never by the presigned URL they are uploaded to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.hashing import sha256_file
from pipeline.planning.plan import PlannedRequest
from pipeline.render.masters import Clip
from pipeline.store.transitions import JobStatus


@dataclass(frozen=True)
class JobResult:
    """How one job ended in this run."""

    request: PlannedRequest
    status: JobStatus | str
    clip: Clip | None = None
    error: str | None = None
    reused: bool = False

    @property
    def ok(self) -> bool:
        """A verified clip is on disk."""
        return self.clip is not None


def image_identity(path_or_url: str | None) -> str | None:
    """How an image input enters a job's identity: its content hash, or the URL itself.

    Reads the whole file: call it from a worker thread (the engine does).
    """
    if path_or_url is None:
        return None
    if path_or_url.startswith(("https://", "http://")):
        return path_or_url
    return "sha256:" + sha256_file(Path(path_or_url))


def job_body(request: PlannedRequest, start_image: str | None, end_image: str | None) -> dict[str, Any]:
    """What determines the job's output (hashes image files: call it from a worker thread)."""
    spec = request.spec(start_image_url=start_image)
    return {
        "model_id": spec.model_id,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "duration": spec.duration,
        "aspect_ratio": spec.aspect_ratio,
        "cfg_scale": spec.cfg_scale,
        "generate_audio": spec.generate_audio,
        "seed": spec.seed,
        "start_image": image_identity(start_image),
        "end_image": image_identity(end_image),
    }
