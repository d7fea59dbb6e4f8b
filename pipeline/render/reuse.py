"""Reusing paid clips across runs: request identities, and the library step of a job.

A request's *identity* hashes what determines its clip: the provider, the job body (model id and
every spec field but the image URLs; images by content — :func:`pipeline.render.job.job_body`)
and, for a ``continuity: chain`` segment, the identity of the segment before it instead of its
start frame. The start frame is that segment's last frame, so it changes exactly when the segment
before changes — and so an edit to segment 2 of a chain changes the identity of 2, 3, 4 …, which a
plan can tell before anything runs.

:class:`LibraryStep` is what the engine calls around each job: a request whose identity the
library (:class:`pipeline.store.library.ClipLibrary`) holds is taken from it — its file hardlinked
or copied into this run's directory, or fetched from shared storage, sha256-checked — and never
bought; a clip this run buys is recorded for the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import KlingflowError
from pipeline.hashing import sha256_file
from pipeline.planning.plan import PlannedRequest
from pipeline.render.job import JobResult, job_body
from pipeline.render.masters import Clip
from pipeline.render.shared import ClipShare
from pipeline.store.jobs import SqlJobStore
from pipeline.store.library import ClipLibrary, LibraryClip
from pipeline.store.transitions import JobStatus

#: Job states in which this run has bought (or may have bought) the request: it is followed to
#: its own clip, never swapped for the library's.
BOUGHT = frozenset(
    {JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.CHARGED, JobStatus.UNKNOWN, JobStatus.COMPLETED}
)

log = logging.getLogger(__name__)

#: ``local(path_or_url)``: a script's image reference as an absolute path, or the URL itself.
Localize = Callable[[str | None], str | None]


def clip_identity(provider: str, body: Mapping[str, Any]) -> str:
    """The library key of a request: sha256 over its provider and identity body."""
    canonical = json.dumps(
        {"provider": provider, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def identity_bodies(requests: Sequence[PlannedRequest], local: Localize) -> list[dict[str, Any]]:
    """The identity body of each request (reads image files: call it from a worker thread).

    A chained request's start image is its predecessor's identity body digest
    (``after:<sha256>``), so that a change anywhere up the chain reaches every later segment.
    ``requests`` must hold each chain whole, in segment order (a plan's and a pass's do).
    """
    digests: dict[tuple[str, str, str, int], str] = {}
    out: list[dict[str, Any]] = []
    for r in requests:
        body = job_body(r, None if r.chained else local(r.start_image), local(r.end_image), local)
        if r.chained:
            previous = digests.get((r.narrative, r.variant, r.pass_, r.segment - 1), "none")
            body["start_image"] = f"after:{previous}"
        digests[(r.narrative, r.variant, r.pass_, r.segment)] = clip_identity("", body)
        out.append(body)
    return out


def identities(requests: Sequence[PlannedRequest], provider: str, local: Localize) -> list[str]:
    """The library identity of each request, in order (reads image files)."""
    return [clip_identity(provider, body) for body in identity_bodies(requests, local)]


def base_dir_local(base_dir: Path) -> Localize:
    """Resolves script-relative image paths against ``base_dir`` (URLs stay as they are)."""

    def local(path_or_url: str | None) -> str | None:
        if path_or_url is None or path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return str(base_dir / path_or_url)

    return local


def place(source: Path, dest: Path, sha256: str) -> bool:
    """Put the library's file at ``dest`` (a hardlink when it can, else a copy), checked against
    ``sha256``; False when the source is gone or damaged."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return True
    if not source.is_file() or sha256_file(source) != sha256:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        # Another filesystem (or no hardlinks there): a copy, checked again below.
        shutil.copyfile(source, partial)
    if sha256_file(partial) != sha256:
        partial.unlink(missing_ok=True)
        return False
    os.replace(partial, dest)
    return True


@dataclass
class LibraryStep:
    """The library's part in one run's jobs (see the module docstring)."""

    library: ClipLibrary
    provider: str
    run_id: str
    local: Localize
    shared: ClipShare | None = None
    #: The run's job store: a request this run already bought is followed, not taken from here.
    store: SqlJobStore | None = None
    #: ``id(request)`` → (identity, identity body) of the requests of the passes prepared so far.
    known: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    async def prepare(self, requests: Sequence[PlannedRequest]) -> None:
        """Compute the identities of a pass's requests (hashes image files, in a thread)."""
        bodies = await asyncio.to_thread(identity_bodies, requests, self.local)
        for request, body in zip(requests, bodies, strict=True):
            self.known[id(request)] = (clip_identity(self.provider, body), body)

    async def through(
        self,
        request: PlannedRequest,
        dest: Path,
        job: Callable[[], Awaitable[JobResult]],
        emit: Callable[[str, PlannedRequest, str], None],
    ) -> JobResult:
        """The library's clip for ``request`` if it has one (event ``reused``), else ``job()``'s
        (then recorded)."""
        known = self.known.get(id(request))
        if known is None:
            # Not prepared (its chain unknown): no identity to trust, so neither reused nor recorded.
            return await job()
        identity, body = known
        found = None
        if not await asyncio.to_thread(self._bought_here, request, body):
            found = await asyncio.to_thread(self.library.find, identity)
        if found is not None:
            clip = await self._take(request, found, dest)
            if clip is not None:
                emit("reused", request, f"from run {found.run_id}" if clip.paid_by else "")
                return JobResult(request, JobStatus.COMPLETED, clip=clip, reused=True)
        result = await job()
        if result.clip is not None:
            await self._keep(request, identity, body, result.clip)
        return result

    def _bought_here(self, request: PlannedRequest, body: Mapping[str, Any]) -> bool:
        """Whether this run has a job of this request that it bought (in flight, maybe billed, or
        done): a request the provider may bill is followed to its clip, never abandoned."""
        if self.store is None:
            return False
        # A chained job's start image is its frame's hash, the identity's its predecessor's.
        ignore = {"start_image"} if request.chained else set()
        same = {k: v for k, v in body.items() if k not in ignore}
        return any(
            job.status in BOUGHT and {k: v for k, v in job.body.items() if k not in ignore} == same
            for job in self.store.jobs_at(
                self.run_id, request.narrative, request.variant, request.pass_, request.segment
            )
        )

    async def _take(self, request: PlannedRequest, found: LibraryClip, dest: Path) -> Clip | None:
        placed = await asyncio.to_thread(place, Path(found.file), dest, found.sha256)
        if not placed and self.shared is not None and found.shared_key is not None:
            try:
                placed = await asyncio.to_thread(
                    self.shared.archive.get, found.shared_key, dest, found.sha256
                )
            except KlingflowError as exc:
                log.warning("library clip %s not fetched from shared storage: %s", found.identity, exc)
        if not placed:
            return None
        await asyncio.to_thread(self.library.note_use, found.identity, self.run_id)
        paid_by = found.run_id if found.run_id != self.run_id else None
        return Clip(request, dest, found.sha256, found.request_id, found.cost, paid_by=paid_by)

    async def _keep(self, request: PlannedRequest, identity: str, body: dict[str, Any], clip: Clip) -> None:
        if clip.paid_by is not None:
            return  # another run's clip: the library has it already
        size = await asyncio.to_thread(os.path.getsize, clip.path)
        await asyncio.to_thread(
            self.library.record,
            identity,
            provider=self.provider,
            body=body,
            file=str(clip.path),
            sha256=clip.sha256,
            size=size,
            request_id=clip.request_id,
            cost=clip.cost,
            run_id=self.run_id,
            shared_key=self.shared.key(request, clip.path.name) if self.shared is not None else None,
        )
