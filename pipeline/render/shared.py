"""Shared storage for a run's intermediate clips, so that any worker can resume and stitch it.

With ``KLINGFLOW_SHARED_URL`` (``s3://bucket/prefix``, or a directory every worker mounts) each
verified clip is copied there as soon as it is downloaded, under
``{prefix}/runs/{run_id}/clips/{narrative}/{variant}/{pass}/seg-000.mp4``. A worker resuming a run
whose clips are not on its own disk fetches them from there (sha256 checked against the job
store) instead of downloading them from the provider again — whose result URLs may have expired.

It is the archive's kind of object store (:mod:`pipeline.storage`: conditional writes, read-back
verification), pointed at another prefix: a clip already there with the same bytes is not
uploaded again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import StorageError
from pipeline.planning.plan import PlannedRequest
from pipeline.storage.base import ObjectStore
from pipeline.storage.factory import open_store
from pipeline.storage.location import key_segment

log = logging.getLogger(__name__)


@dataclass
class ClipShare:
    """One run's clips in shared storage. Failures are logged, never fatal: the clip is paid
    for and on this worker's disk, and a resuming worker can still download it from the provider.
    """

    archive: ObjectStore
    run_id: str

    @classmethod
    def open(cls, url: str, run_id: str) -> ClipShare:
        """The shared storage at ``url`` for ``run_id`` (ConfigError for a malformed URL)."""
        return cls(open_store(url), key_segment(run_id, "run id"))

    def key(self, request: PlannedRequest, file_name: str | None = None) -> str:
        """Where the clip of ``request`` is kept: under its file's name in the run directory
        (``seg-002.take-2.mp4`` for a reroll's take), so that every take has a key of its own."""
        parts = (request.narrative, request.variant, request.pass_)
        for part in parts:
            key_segment(part, "narrative/variant/pass")
        return self.archive.location.key(
            "runs",
            self.run_id,
            "clips",
            *parts,
            key_segment(file_name or f"seg-{request.segment:03d}.mp4", "clip file"),
        )

    async def put(self, request: PlannedRequest, path: Path, sha256: str) -> bool:
        """Copy a verified clip to shared storage; False (and a warning) when that fails."""
        key = self.key(request, path.name)
        try:
            await asyncio.to_thread(self.archive.put, key, path, sha256)
        except StorageError as exc:
            log.warning("clip %s not copied to shared storage: %s", path, exc)
            return False
        return True

    async def get(self, request: PlannedRequest, dest: Path, sha256: str) -> bool:
        """Fetch the clip of ``request`` to ``dest`` if shared storage has these exact bytes."""
        key = self.key(request, dest.name)
        try:
            return await asyncio.to_thread(self.archive.get, key, dest, sha256)
        except StorageError as exc:
            log.warning("clip %s not fetched from shared storage: %s", self.archive.location.uri(key), exc)
            return False

    def close(self) -> None:
        """Release the storage client."""
        self.archive.close()
