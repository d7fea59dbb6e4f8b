"""An object store in an S3 bucket (AWS or a compatible store).

Small files go up with one ``PutObject``, large ones as a multipart upload with parallel parts;
every request carries a ``Content-MD5`` (the store refuses a part corrupted on the way) and the
object's sha256 in its metadata; the write is conditional (``If-None-Match: *``), and the object
is read back and hashed before it counts as stored. Every boto3 call runs inside
:func:`~pipeline.storage.errors.map_s3_errors`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pipeline.errors import StorageConflict, StorageError, StorageNotFound
from pipeline.storage.base import Outcome, PutResult, content_type, kept
from pipeline.storage.errors import NotModified, map_s3_errors
from pipeline.storage.files import make_dirs, translate_os_error, write_file
from pipeline.storage.location import S3Location

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from pipeline.storage.settings import S3Settings

log = logging.getLogger(__name__)

#: Metadata key holding the object's sha256 (S3 returns it as ``x-amz-meta-sha256``).
SHA256_META: Final = "sha256"
READ_CHUNK: Final = 1024 * 1024


def content_md5(data: bytes) -> str:
    """Base64 MD5 for the ``Content-MD5`` header (transport integrity only, not identity)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


@dataclass(frozen=True)
class _Head:
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Fetched:
    """What a conditional download found (see :meth:`S3Store.fetch`)."""

    #: False when the store answered "not modified": the copy at ``dest`` is current, untouched.
    changed: bool
    etag: str | None = None
    #: sha256 of the bytes now at ``dest`` (None when nothing was written).
    sha256: str | None = None


class S3Store:
    """An object store in an S3 bucket; see the module docstring for how objects are written."""

    def __init__(self, client: S3Client, location: S3Location, settings: S3Settings) -> None:
        self._client = client
        self._location = location
        self._settings = settings

    @property
    def location(self) -> S3Location:
        """The bucket and prefix."""
        return self._location

    @property
    def client(self) -> S3Client:
        """The boto3 client (for tests to observe its events)."""
        return self._client

    def check(self) -> None:
        """HEAD the bucket: wrong credentials → StorageAuthError, missing → StorageUnavailable."""
        bucket = self._location.bucket
        with map_s3_errors(f"opening {self._location}", bucket=bucket, bucket_level=True):
            self._client.head_bucket(Bucket=bucket)

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Upload ``path`` to ``key`` unless an identical object is there; verify by reading back."""
        uri = self._location.uri(key)
        size = path.stat().st_size
        existing = self._head(key)
        if existing is not None:
            return self._confirm_existing(key, path, size, sha256, existing)
        try:
            # A write cannot miss its key: a bare 404 there is the bucket.
            with map_s3_errors(f"uploading {path} to {uri}", bucket=self._location.bucket, bucket_level=True):
                if size < self._settings.multipart_threshold:
                    self._put_single(key, path, sha256)
                else:
                    self._put_multipart(key, path, size, sha256)
        except StorageConflict as exc:
            # Another writer got there between our HEAD and our write: judge what it wrote.
            existing = self._head(key)
            if existing is not None:
                return self._confirm_existing(key, path, size, sha256, existing)
            raise kept(exc, path) from exc
        except StorageError as exc:
            raise kept(exc, path) from exc
        except OSError as exc:  # reading the local file (it vanished, or an I/O error)
            raise translate_os_error(exc, what=f"uploading {path} to {uri}") from exc
        self._verify_written(key, path, size, sha256)
        log.info("archived %s (%d bytes, sha256 %s)", uri, size, sha256)
        return PutResult(Outcome.UPLOADED, key, uri, size, sha256)

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Download ``key`` and hash it: (size, sha256), or None when there is no such object."""
        size = 0
        digest = hashlib.sha256()
        try:
            with map_s3_errors(f"reading back {self._location.uri(key)}"):
                body = self._client.get_object(Bucket=self._location.bucket, Key=key)["Body"]
                with closing(body):
                    for chunk in body.iter_chunks(READ_CHUNK):
                        size += len(chunk)
                        digest.update(chunk)
        except StorageNotFound:
            return None
        return size, digest.hexdigest()

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Download ``key`` to ``dest`` (published only when its sha256 matches); False if absent."""
        try:
            with map_s3_errors(f"downloading {self._location.uri(key)}"):
                body = self._client.get_object(Bucket=self._location.bucket, Key=key)["Body"]
                with closing(body):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    write_file(dest, body.iter_chunks(READ_CHUNK), expected_sha256=sha256, replace=True)
        except StorageNotFound:
            return False
        return True

    def fetch(
        self, key: str, dest: Path, *, etag: str | None = None, what: str | None = None
    ) -> Fetched | None:
        """Download ``key`` to ``dest`` (atomically replaced) unless the store says ``etag`` is current.

        One conditional GET (``If-None-Match: etag``): an unchanged object sends no bytes and
        leaves ``dest`` as it is. None when there is no such object (``dest`` is then left for
        the caller to judge). ``what`` begins error messages (default: ``reading s3://…``).
        """
        request: dict[str, Any] = {"Bucket": self._location.bucket, "Key": key}
        if etag is not None:
            request["IfNoneMatch"] = etag
        try:
            with map_s3_errors(what or f"reading {self._location.uri(key)}", bucket=self._location.bucket):
                reply = self._client.get_object(**request)
                with closing(reply["Body"]) as body:
                    make_dirs(dest.parent)
                    sha256 = write_file(dest, body.iter_chunks(), replace=True)
        except NotModified:
            return Fetched(changed=False, etag=etag)
        except StorageNotFound:
            return None
        return Fetched(changed=True, etag=reply.get("ETag"), sha256=sha256)

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    def presign_get(self, key: str, expires_in: int) -> str:
        """A presigned GET URL for ``key`` valid ``expires_in`` seconds (S3 allows ≤ 7 days)."""
        with map_s3_errors(f"presigning {self._location.uri(key)}"):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._location.bucket, "Key": key}, ExpiresIn=expires_in
            )

    # -- internals

    def _head(self, key: str) -> _Head | None:
        try:
            with map_s3_errors(f"checking {self._location.uri(key)}"):
                head = self._client.head_object(Bucket=self._location.bucket, Key=key)
        except StorageNotFound:
            return None
        return _Head(size=head["ContentLength"], sha256=head.get("Metadata", {}).get(SHA256_META))

    def _confirm_existing(self, key: str, path: Path, size: int, sha256: str, existing: _Head) -> PutResult:
        uri = self._location.uri(key)
        if existing.size != size or (existing.sha256 is not None and existing.sha256 != sha256):
            raise StorageConflict(
                f"{uri}: a different object is already archived there ({existing.size} bytes, sha256 "
                f"{existing.sha256 or 'unknown'}; ours: {size} bytes, sha256 {sha256}); refusing to "
                f"overwrite it. The local copy is kept at {path}"
            )
        # Same size and recorded sha256: prove it by content, since metadata is only a claim.
        stored = self.read_back(key)
        if stored != (size, sha256):
            got = stored[1] if stored else "nothing"
            if existing.sha256 is None:
                raise StorageConflict(
                    f"{uri}: a different object is already archived there (sha256 {got}); refusing to "
                    f"overwrite it. The local copy is kept at {path}"
                )
            raise StorageError(
                f"{uri}: the archived object is corrupt (its content hashes to {got}, its metadata "
                f"says {existing.sha256}); remove it and archive again. The local copy is kept at {path}"
            )
        return PutResult(Outcome.PRESENT, key, uri, size, sha256)

    def _put_single(self, key: str, path: Path, sha256: str) -> None:
        data = path.read_bytes()
        self._client.put_object(
            Bucket=self._location.bucket,
            Key=key,
            Body=data,
            ContentMD5=content_md5(data),
            ContentType=content_type(key),
            Metadata={SHA256_META: sha256},
            IfNoneMatch="*",
        )

    def _put_multipart(self, key: str, path: Path, size: int, sha256: str) -> None:
        bucket = self._location.bucket
        part_size = self._settings.part_size_for(size)
        count = math.ceil(size / part_size)
        upload_id = self._client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type(key), Metadata={SHA256_META: sha256}
        )["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, path, part_size, count)
            self._client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_parts(
        self, key: str, upload_id: str, path: Path, part_size: int, count: int
    ) -> list[CompletedPartTypeDef]:
        def upload(number: int) -> CompletedPartTypeDef:
            with path.open("rb") as stream:
                stream.seek((number - 1) * part_size)
                data = stream.read(part_size)
            reply = self._client.upload_part(
                Bucket=self._location.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=content_md5(data),
            )
            return {"PartNumber": number, "ETag": reply["ETag"]}

        workers = min(self._settings.max_concurrency, count)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-part") as pool:
            futures: list[Future[CompletedPartTypeDef]] = [
                pool.submit(upload, n) for n in range(1, count + 1)
            ]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            # The first failure wins; parts still in flight finish (or fail) before we return.
            for future in futures:
                error = future.exception() if future in done else None
                if error is not None:
                    raise error
        return [f.result() for f in futures]

    def _abort(self, key: str, upload_id: str) -> None:
        uri = self._location.uri(key)
        try:
            with map_s3_errors(f"aborting the multipart upload of {uri}"):
                self._client.abort_multipart_upload(Bucket=self._location.bucket, Key=key, UploadId=upload_id)
        except StorageError as exc:
            # The original failure is what the caller must see; the store expires stale uploads
            # with a lifecycle rule (AbortIncompleteMultipartUpload).
            log.warning("could not abort the multipart upload of %s: %s", uri, exc)

    def _verify_written(self, key: str, path: Path, size: int, sha256: str) -> None:
        stored = self.read_back(key)
        if stored == (size, sha256):
            return
        uri = self._location.uri(key)
        got = f"{stored[0]} bytes, sha256 {stored[1]}" if stored else "nothing"
        self._delete_unverified(key)
        raise StorageError(
            f"{uri}: verification failed: read back {got}, expected {size} bytes, sha256 {sha256} "
            f"(did {path} change during the upload?); the object was removed and the local copy is kept"
        )

    def _delete_unverified(self, key: str) -> None:
        # We just wrote this object and it is wrong: leaving it would let a later run take it
        # for a good copy (its metadata claims the right sha256).
        uri = self._location.uri(key)
        try:
            with map_s3_errors(f"removing {uri}"):
                self._client.delete_object(Bucket=self._location.bucket, Key=key)
        except StorageError as exc:
            log.warning("could not remove the unverified object %s: %s", uri, exc)
