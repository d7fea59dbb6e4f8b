"""One job of a run as the engine reports it, and what a job's identity is made of.

A job's identity (its key in the job store) hashes everything that determines its output;
images enter it by content, never by the presigned URL they are uploaded to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.generation import GenerationSpec
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


def with_external_id(spec: GenerationSpec, key: str, attempt: int) -> GenerationSpec:
    """``spec`` carrying our id for one submit of a job: its key and attempt number."""
    return dataclasses.replace(spec, external_id=f"{key}-{attempt}")


def job_body(request: PlannedRequest, start_image: str | None, end_image: str | None) -> dict[str, Any]:
    """What determines the job's output (hashes image files: call it from a worker thread)."""
    spec = request.spec(start_image_url=start_image)
    # Every field of the spec but the images' URLs (and the tier, which the model id names);
    # images by content. The job key hashes this with sorted keys.
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in _NOT_IDENTITY}
    body: dict[str, Any] = {
        "model_id": spec.model_id,
        **fields,
        "start_image": image_identity(start_image),
        "end_image": image_identity(end_image),
    }
    # A native storyboard and native elements enter only when the request has them, so the
    # identity of a prose-prompt request (every RunComfy job) is what it always was.
    if spec.shots:
        body["shots"] = [[shot.prompt, shot.duration] for shot in spec.shots]
    if spec.elements:
        body["elements"] = [
            {
                "name": e.name,
                "description": e.description,
                "images": [image_identity(u) for u in e.image_urls],
                "voice": image_identity(e.voice),
            }
            for e in spec.elements
        ]
    return body


_NOT_IDENTITY = frozenset({"tier", "start_image_url", "end_image_url", "shots", "elements", "external_id"})
