"""One job of a run as the engine reports it, and what a job's identity is made of.

A job's identity (its key in the job store) hashes everything that determines its output;
images enter it by content, never by the presigned URL they are uploaded to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
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


#: A script's file reference as an absolute path (local files) or the URL itself.
Localize = Callable[[str | None], str | None]


def _local_voices(spec: GenerationSpec, local: Localize) -> GenerationSpec:
    """``spec`` with each element's voice file resolved like the images (URLs stay)."""
    elements = tuple(dataclasses.replace(e, voice=local(e.voice)) for e in spec.elements)
    return dataclasses.replace(spec, elements=elements)


def local_spec(request: PlannedRequest, start_image: str | None, local: Localize) -> GenerationSpec:
    """The request's spec with local files in place of URLs (the job identity reads them)."""
    images = {e.name: [local(i) or i for i in e.images] for e in request.elements}
    return _local_voices(request.spec(start_image_url=start_image, element_image_urls=images), local)


async def native_spec(
    request: PlannedRequest,
    start_url: str | None,
    end_url: str | None,
    local: Localize,
    image_url: Callable[[str], Awaitable[str]],
) -> GenerationSpec:
    """The spec to submit: element images made provider-fetchable like the start image (uploaded,
    inlined or shared, by the run's image transport); voice files resolved to local paths for
    the adapter (which turns them into provider voices where its API can)."""
    images = {e.name: [await image_url(local(i) or i) for i in e.images] for e in request.elements}
    return _local_voices(request.spec(start_url, end_url, images), local)


def job_body(
    request: PlannedRequest, start_image: str | None, end_image: str | None, local: Localize | None = None
) -> dict[str, Any]:
    """What determines the job's output (hashes image files: call it from a worker thread).

    ``local`` resolves native elements' images and voice files (script-relative) for hashing.
    """
    spec = local_spec(request, start_image, local or (lambda p: p))
    # Every field of the spec but the images' URLs (and the tier, which the model id names);
    # images by content. The job key hashes this with sorted keys.
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in _NOT_IDENTITY}
    body: dict[str, Any] = {
        "model_id": spec.model_id,
        **fields,
        "start_image": image_identity(start_image),
        "end_image": image_identity(end_image),
    }
    # A run uses one provider: a job compiled for fal or Kling is never one a RunComfy run (or a
    # run on the other) submitted, even where the bodies agree. RunComfy's and the sandbox's
    # jobs keep the identity they always had.
    if request.provider not in _RUNCOMFY_API:
        body["provider"] = request.provider
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


#: Providers speaking RunComfy's API, whose job identities name no provider (as before fal/Kling).
_RUNCOMFY_API = frozenset({"runcomfy", "sandbox"})

_NOT_IDENTITY = frozenset({"tier", "start_image_url", "end_image_url", "shots", "elements", "external_id"})
