"""Public URLs for image inputs: the provider fetches start/end images over HTTPS.

Local reference images and chained last frames are uploaded to a staging prefix of the S3
archive (an :class:`~pipeline.storage.s3.S3Store`), ``{prefix}/_staging/{sha256}{ext}``
(content-addressed, so staging the same image twice uploads it once), and the provider is handed
a presigned GET URL. The URL must outlive the generation: its expiry is the expected generation
time plus as much again (at least an hour), capped at S3's maximum of 7 days. URLs signed with
temporary credentials (a role, SSO) expire with those credentials, whatever the expiry says.

The sandbox provider has its own stager (its local uploads) implementing :class:`ImageStager`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from pipeline.errors import ConfigError, InputNotFound
from pipeline.hashing import sha256_file
from pipeline.storage.location import S3Location
from pipeline.storage.s3 import S3Store
from pipeline.storage.settings import S3Settings

STAGING_DIR: Final = "_staging"
#: S3's limit on a presigned URL's lifetime (SigV4).
MAX_EXPIRY: Final = timedelta(days=7)
MIN_MARGIN: Final = timedelta(hours=1)


@runtime_checkable
class ImageStager(Protocol):
    """Turns a local image into a URL the generation provider can fetch."""

    def stage(self, path: Path) -> str:
        """Make ``path`` fetchable by the provider and return its URL."""
        ...


def url_expiry(expected_generation: timedelta) -> timedelta:
    """How long a staged image's URL lives: the expected time plus max(it, 1 h), ≤ 7 days."""
    if expected_generation < timedelta(0):
        raise ConfigError("the expected generation time cannot be negative")
    return min(expected_generation + max(expected_generation, MIN_MARGIN), MAX_EXPIRY)


class S3ImageStager:
    """Stages images under ``{prefix}/_staging/`` of an S3 archive and presigns GET URLs.

    >>> stager = S3ImageStager(archive, expected_generation=timedelta(minutes=20))  # doctest: +SKIP
    >>> stager.stage(Path("assets/deck.jpg"))  # doctest: +SKIP
    'https://my-bucket.s3.amazonaws.com/campaigns/_staging/9f86d0…jpg?X-Amz-Algorithm=…'
    """

    def __init__(self, archive: S3Store, *, expected_generation: timedelta = timedelta(minutes=30)) -> None:
        self._archive = archive
        self._expires_in = int(url_expiry(expected_generation).total_seconds())

    @classmethod
    def for_location(
        cls,
        location: S3Location,
        *,
        settings: S3Settings | None = None,
        expected_generation: timedelta = timedelta(minutes=30),
    ) -> S3ImageStager:
        """A stager for the archive at ``location`` with a client from the one factory."""
        from pipeline.storage.factory import open_store

        archive = open_store(location, settings=settings)
        assert isinstance(archive, S3Store)  # an S3Location always opens an S3Store
        return cls(archive, expected_generation=expected_generation)

    @property
    def expires_in(self) -> int:
        """Lifetime of the URLs this stager hands out, in seconds."""
        return self._expires_in

    def close(self) -> None:
        """Release the archive's connections."""
        self._archive.close()

    def key_for(self, path: Path, sha256: str) -> str:
        """The staging key of an image: its content hash and (lowercased) extension."""
        return self._archive.location.key(STAGING_DIR, f"{sha256}{path.suffix.lower()}")

    def stage(self, path: Path) -> str:
        """Upload ``path`` (once per content) and return a presigned GET URL for it."""
        if not path.is_file():
            raise InputNotFound(f"{path}: no such image")
        sha256 = sha256_file(path)
        key = self.key_for(path, sha256)
        self._archive.put(key, path, sha256)
        return self._archive.presign_get(key, self._expires_in)
