"""Delivering masters to the archive: verified, idempotent, never overwriting.

Two implementations of one :class:`Archive` interface, picked in :func:`open_archive`:

- :class:`S3Archive` — an S3 bucket (AWS or a compatible store). Small files go up with one
  ``PutObject``, large ones as a multipart upload with parallel parts; every request carries a
  ``Content-MD5`` (the store refuses a part corrupted on the way) and the object's sha256 in its
  metadata; the write is conditional (``If-None-Match: *``), and the object is read back and
  hashed before it counts as archived.
- :class:`LocalArchive` — a directory, with the same keys as relative paths; files are written
  beside their destination, read back, and published with a hard link (also conditional).

For both, an identical object already at the key is not written again (``present``), and a
different one is never overwritten (:class:`~pipeline.errors.ArchiveConflict`).

:func:`archive_run` archives a finished run directory::

    RUN_DIR/run.json                                   {"script": ..., "run_id": ...}
    RUN_DIR/<narrative>/<variant>/<draft|final>/{master.mp4, master.srt, contact-sheet.png,
                                                 manifest.json}

to ``{prefix}/{script}/{run_id}/{narrative}/{variant}/{pass}/{file}``, each master's
``manifest.json`` last, after every other file of that master is verified.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from pipeline.archive.files import partial_path, sha256_of, translate_os_error, write_file
from pipeline.archive.location import (
    ArchiveLocation,
    LocalLocation,
    S3Location,
    key_segment,
    parse_location,
)
from pipeline.archive.manifest import (
    MANIFEST_NAME,
    MASTER_NAME,
    SIDECAR_NAMES,
    assert_no_secrets,
    load_manifest,
)
from pipeline.archive.settings import S3Settings, load_s3_settings
from pipeline.errors import (
    ArchiveAuthError,
    ArchiveConflict,
    ArchiveError,
    ArchiveUnavailable,
    ConfigError,
    DiskFull,
    InputError,
    InputNotFound,
    KlingflowError,
)
from pipeline.hashing import iter_file

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

PASSES: Final = ("draft", "final")
RUN_INFO_NAME: Final = "run.json"
#: Metadata key holding the object's sha256 (S3 returns it as ``x-amz-meta-sha256``).
SHA256_META: Final = "sha256"
READ_CHUNK: Final = 1024 * 1024

CONTENT_TYPES: Final = {
    ".mp4": "video/mp4",
    ".srt": "application/x-subrip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".json": "application/json",
}


class Outcome(StrEnum):
    """What happened to one file."""

    UPLOADED = "uploaded"
    PRESENT = "already archived"
    REFUSED = "refused"


@dataclass(frozen=True)
class PutResult:
    """One file stored (or found already stored) and verified."""

    outcome: Outcome
    key: str
    uri: str
    size: int
    sha256: str


class Archive(Protocol):
    """Where masters are delivered. ``put`` returns only once the object is verified."""

    @property
    def location(self) -> ArchiveLocation:
        """Where this archive lives."""
        ...

    def check(self) -> None:
        """Fail early (ArchiveAuthError, ArchiveUnavailable, DiskFull) if nothing can be stored."""
        ...

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Store ``path`` (whose content hashes to ``sha256``) under ``key``, verified.

        Returns ``PRESENT`` when an identical object is already there; raises ArchiveConflict
        when a different one is, and ArchiveError when what was stored does not verify.
        """
        ...

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Size and sha256 of the stored object at ``key`` (read in full), or None if absent."""
        ...

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Copy ``key`` to ``dest`` if it is there with this sha256; False when it is absent."""
        ...

    def close(self) -> None:
        """Release connections (the archive cannot be used afterwards)."""
        ...


def content_type(name: str) -> str:
    """The MIME type stored with an archived file."""
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def content_md5(data: bytes) -> str:
    """Base64 MD5 for the ``Content-MD5`` header (transport integrity only, not identity)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# --- S3 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    size: int
    sha256: str | None


class S3Archive:
    """An archive in an S3 bucket; see the module docstring for how objects are written."""

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
        """The boto3 client (for presigning, and for tests to observe its events)."""
        return self._client

    def check(self) -> None:
        """HEAD the bucket: wrong credentials → ArchiveAuthError, missing → ArchiveUnavailable."""
        import botocore.exceptions

        from pipeline.archive.s3client import translate_s3_error

        bucket = self._location.bucket
        try:
            self._client.head_bucket(Bucket=bucket)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise translate_s3_error(exc, what=f"opening {self._location}", bucket=bucket) from exc

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Upload ``path`` to ``key`` unless an identical object is there; verify by reading back."""
        import botocore.exceptions

        from pipeline.archive.s3client import CONFLICT_CODES, error_code, translate_s3_error

        uri = self._location.uri(key)
        size = path.stat().st_size
        existing = self._head(key)
        if existing is not None:
            return self._confirm_existing(key, path, size, sha256, existing)
        what = f"uploading {path} to {uri}"
        try:
            if size < self._settings.multipart_threshold:
                self._put_single(key, path, sha256)
            else:
                self._put_multipart(key, path, size, sha256)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in CONFLICT_CODES:
                # Another writer got there between our HEAD and our write: judge what it wrote.
                existing = self._head(key)
                if existing is not None:
                    return self._confirm_existing(key, path, size, sha256, existing)
            raise _kept(translate_s3_error(exc, what=what, bucket=self._location.bucket), path) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _kept(translate_s3_error(exc, what=what), path) from exc
        except OSError as exc:  # reading the local file (it vanished, or an I/O error)
            raise translate_os_error(exc, what=what) from exc
        self._verify_written(key, path, size, sha256)
        log.info("archived %s (%d bytes, sha256 %s)", uri, size, sha256)
        return PutResult(Outcome.UPLOADED, key, uri, size, sha256)

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Download ``key`` and hash it: (size, sha256), or None when there is no such object."""
        import botocore.exceptions

        from pipeline.archive.s3client import error_code, translate_s3_error

        what = f"reading back {self._location.uri(key)}"
        try:
            body = self._client.get_object(Bucket=self._location.bucket, Key=key)["Body"]
            size = 0
            digest = hashlib.sha256()
            for chunk in body.iter_chunks(READ_CHUNK):
                size += len(chunk)
                digest.update(chunk)
            body.close()
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise translate_s3_error(exc, what=what) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate_s3_error(exc, what=what) from exc
        return size, digest.hexdigest()

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Download ``key`` to ``dest`` (published only when its sha256 matches); False if absent."""
        import botocore.exceptions

        from pipeline.archive.s3client import error_code, translate_s3_error

        what = f"downloading {self._location.uri(key)}"
        try:
            body = self._client.get_object(Bucket=self._location.bucket, Key=key)["Body"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise translate_s3_error(exc, what=what) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate_s3_error(exc, what=what) from exc
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_file(dest, body.iter_chunks(READ_CHUNK), expected_sha256=sha256, replace=True)
        except botocore.exceptions.BotoCoreError as exc:
            raise translate_s3_error(exc, what=what) from exc
        finally:
            body.close()
        return True

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    def presign_get(self, key: str, expires_in: int) -> str:
        """A presigned GET URL for ``key`` valid ``expires_in`` seconds (S3 allows ≤ 7 days)."""
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._location.bucket, "Key": key}, ExpiresIn=expires_in
        )

    # -- internals

    def _head(self, key: str) -> _Head | None:
        import botocore.exceptions

        from pipeline.archive.s3client import error_code, translate_s3_error

        try:
            head = self._client.head_object(Bucket=self._location.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise translate_s3_error(exc, what=f"checking {self._location.uri(key)}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate_s3_error(exc, what=f"checking {self._location.uri(key)}") from exc
        return _Head(size=head["ContentLength"], sha256=head.get("Metadata", {}).get(SHA256_META))

    def _confirm_existing(self, key: str, path: Path, size: int, sha256: str, existing: _Head) -> PutResult:
        uri = self._location.uri(key)
        if existing.size != size or (existing.sha256 is not None and existing.sha256 != sha256):
            raise ArchiveConflict(
                f"{uri}: a different object is already archived there ({existing.size} bytes, sha256 "
                f"{existing.sha256 or 'unknown'}; ours: {size} bytes, sha256 {sha256}); refusing to "
                f"overwrite it. The local copy is kept at {path}"
            )
        # Same size and recorded sha256: prove it by content, since metadata is only a claim.
        stored = self.read_back(key)
        if stored != (size, sha256):
            got = stored[1] if stored else "nothing"
            if existing.sha256 is None:
                raise ArchiveConflict(
                    f"{uri}: a different object is already archived there (sha256 {got}); refusing to "
                    f"overwrite it. The local copy is kept at {path}"
                )
            raise ArchiveError(
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
        import botocore.exceptions

        try:
            self._client.abort_multipart_upload(Bucket=self._location.bucket, Key=key, UploadId=upload_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            # The original failure is what the caller must see; the store expires stale uploads
            # with a lifecycle rule (AbortIncompleteMultipartUpload).
            log.warning("could not abort the multipart upload of %s: %s", self._location.uri(key), exc)

    def _verify_written(self, key: str, path: Path, size: int, sha256: str) -> None:
        stored = self.read_back(key)
        if stored == (size, sha256):
            return
        uri = self._location.uri(key)
        got = f"{stored[0]} bytes, sha256 {stored[1]}" if stored else "nothing"
        self._delete_unverified(key)
        raise ArchiveError(
            f"{uri}: verification failed: read back {got}, expected {size} bytes, sha256 {sha256} "
            f"(did {path} change during the upload?); the object was removed and the local copy is kept"
        )

    def _delete_unverified(self, key: str) -> None:
        import botocore.exceptions

        # We just wrote this object and it is wrong: leaving it would let a later run take it
        # for a good copy (its metadata claims the right sha256).
        try:
            self._client.delete_object(Bucket=self._location.bucket, Key=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning("could not remove the unverified object %s: %s", self._location.uri(key), exc)


def _kept(error: ArchiveError, path: Path) -> ArchiveError:
    """``error`` with the local copy's path added to its message (same class)."""
    return type(error)(f"{error}; the local copy is kept at {path}")


# --- local directory ------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def remove_stale_partials(dest: Path) -> list[Path]:
    """Remove partial copies of ``dest`` whose writer is gone.

    :func:`~pipeline.archive.files.write_file` removes its partial file whatever happens, except
    when the process is killed outright (SIGKILL, power loss); such a partial is named after the
    dead process and is removed by the next write of the same file. Returns what was removed.
    """
    removed: list[Path] = []
    mine = partial_path(dest).name
    prefix, suffix = f".{dest.name}.", ".partial"
    for path in dest.parent.glob(f"{glob.escape(prefix)}*{suffix}"):
        pid = path.name[len(prefix) : -len(suffix)]
        if path.name == mine or not pid.isdigit() or _process_alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class LocalArchive:
    """An archive in a local directory, with the S3 layout as relative paths."""

    def __init__(self, location: LocalLocation) -> None:
        self._location = location

    @property
    def location(self) -> LocalLocation:
        """The directory."""
        return self._location

    def check(self) -> None:
        """Create the directory if needed (permission → ArchiveAuthError, full → DiskFull)."""
        root = self._location.root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise translate_os_error(exc, what=f"creating the archive directory {root}") from exc
        if not root.is_dir():
            raise ArchiveUnavailable(f"archive {root} is not a directory")

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Copy ``path`` to ``root/key`` unless an identical file is there; read back first."""
        dest = self._location.root / key
        uri = str(dest)
        size = path.stat().st_size
        if dest.parent.is_dir():
            remove_stale_partials(dest)
        if dest.exists():
            return self._confirm_existing(key, dest, path, size, sha256)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _kept(translate_os_error(exc, what=f"creating {dest.parent}"), path) from exc
        try:
            write_file(dest, iter_file(path), expected_sha256=sha256)
        except FileExistsError:
            return self._confirm_existing(key, dest, path, size, sha256)
        except ArchiveError as exc:
            raise _kept(exc, path) from exc
        return PutResult(Outcome.UPLOADED, key, uri, size, sha256)

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Copy ``root/key`` to ``dest`` (published only when its sha256 matches); False if absent."""
        source = self._location.root / key
        if not source.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_file(dest, iter_file(source), expected_sha256=sha256, replace=True)
        return True

    def close(self) -> None:
        """Nothing to release for a directory."""

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Size and sha256 of ``root/key``, or None when it does not exist."""
        dest = self._location.root / key
        if not dest.is_file():
            return None
        return dest.stat().st_size, sha256_of(dest, what=f"reading {dest}")

    def _confirm_existing(self, key: str, dest: Path, path: Path, size: int, sha256: str) -> PutResult:
        stored = self.read_back(key)
        if stored != (size, sha256):
            got = f"{stored[0]} bytes, sha256 {stored[1]}" if stored else "not a file"
            raise ArchiveConflict(
                f"{dest}: a different file is already archived there ({got}; ours: {size} bytes, "
                f"sha256 {sha256}); refusing to overwrite it. The local copy is kept at {path}"
            )
        return PutResult(Outcome.PRESENT, key, str(dest), size, sha256)


def open_archive(
    location: ArchiveLocation | str | None,
    *,
    settings: S3Settings | None = None,
    client: S3Client | None = None,
    session: boto3.Session | None = None,
) -> S3Archive | LocalArchive:
    """The archive at ``location`` (``s3://bucket/prefix`` or a directory; default ``./renders``).

    The one place that picks the implementation. An S3 archive uses ``client`` if given, else
    one from :func:`~pipeline.archive.s3client.make_s3_client` (``settings`` default: from the
    environment; credentials: ``session`` or the AWS chain).
    """
    where = location if isinstance(location, S3Location | LocalLocation) else parse_location(location)
    if isinstance(where, LocalLocation):
        return LocalArchive(where)
    settings = settings or load_s3_settings()
    if client is None:
        from pipeline.archive.s3client import make_s3_client

        client = make_s3_client(settings, session=session)
    return S3Archive(client, where, settings)


# --- archiving a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    """What happened to one file of a run."""

    outcome: Outcome
    path: Path
    uri: str
    size: int = 0
    sha256: str = ""
    error: KlingflowError | None = None


@dataclass
class ArchiveReport:
    """What :func:`archive_run` did, file by file."""

    destination: str
    files: list[FileReport] = field(default_factory=list)
    masters_complete: list[Path] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many files had ``outcome``."""
        return sum(1 for f in self.files if f.outcome is outcome)

    @property
    def refused(self) -> list[FileReport]:
        """Files (or masters) that were not archived, with the reason."""
        return [f for f in self.files if f.outcome is Outcome.REFUSED]

    def raise_if_refused(self) -> None:
        """Raise the first refusal's error (its exit code is the CLI's) if anything was refused."""
        for report in self.refused:
            if report.error is not None:
                raise report.error


@dataclass(frozen=True)
class RunInfo:
    """The part of ``run.json`` the archive needs."""

    script: str
    run_id: str


@dataclass(frozen=True)
class _MasterFiles:
    pass_dir: Path
    narrative: str
    variant: str
    pass_: str
    files: tuple[tuple[Path, str], ...]  # (path, sha256), the manifest last


def read_run_info(run_dir: Path) -> RunInfo:
    """Script name and run id from ``RUN_DIR/run.json`` (InputNotFound, InputError)."""
    path = run_dir / RUN_INFO_NAME
    if not path.is_file():
        raise InputNotFound(f"{path}: no such file ({run_dir} is not a run directory)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        script, run_id = raw["script"], raw["run_id"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: needs a JSON object with 'script' and 'run_id' ({exc})") from exc
    if not isinstance(script, str) or not isinstance(run_id, str):
        raise InputError(f"{path}: 'script' and 'run_id' must be strings")
    try:
        return RunInfo(key_segment(script, "script name"), key_segment(run_id, "run id"))
    except ConfigError as exc:
        raise InputError(f"{path}: {exc}") from exc


def find_pass_dirs(run_dir: Path) -> Iterator[Path]:
    """``RUN_DIR/<narrative>/<variant>/<draft|final>/`` directories holding a master or manifest."""
    for narrative in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for variant in sorted(p for p in narrative.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for pass_ in PASSES:
                pass_dir = variant / pass_
                if (pass_dir / MASTER_NAME).is_file() or (pass_dir / MANIFEST_NAME).is_file():
                    yield pass_dir


def _master_files(pass_dir: Path, info: RunInfo) -> _MasterFiles:
    """The files of one master with their sha256, checked against its manifest (refuse otherwise)."""
    manifest_path = pass_dir / MANIFEST_NAME
    manifest = load_manifest(manifest_path)
    assert_no_secrets(manifest_path.read_text(encoding="utf-8"), what=str(manifest_path))
    narrative, variant, pass_ = pass_dir.parent.parent.name, pass_dir.parent.name, pass_dir.name
    expected = {
        "script": (manifest.script.name, info.script),
        "run_id": (manifest.run_id, info.run_id),
        "narrative": (manifest.narrative, narrative),
        "variant": (manifest.variant, variant),
        "pass": (manifest.pass_, pass_),
    }
    for name, (in_manifest, actual) in expected.items():
        if in_manifest != actual:
            raise InputError(f"{manifest_path}: {name} is {in_manifest!r} but the run says {actual!r}")
    files = [_checked(pass_dir, manifest.master.name, manifest.master.sha256, manifest.master.size_bytes)]
    listed = {f.name for f in manifest.files} | {manifest.master.name}
    for record in manifest.files:
        files.append(_checked(pass_dir, record.name, record.sha256, record.size_bytes))
    for name in SIDECAR_NAMES:
        if (pass_dir / name).is_file() and name not in listed:
            raise ArchiveError(
                f"{pass_dir / name}: not in {manifest_path}; refusing to archive it unrecorded"
            )
    files.append((manifest_path, sha256_of(manifest_path, what=f"reading {manifest_path}")))
    return _MasterFiles(pass_dir, narrative, variant, pass_, tuple(files))


def _checked(pass_dir: Path, name: str, sha256: str, size: int) -> tuple[Path, str]:
    path = pass_dir / key_segment(name, "file name")
    if not path.is_file():
        raise InputNotFound(f"{path}: listed in the manifest but missing")
    actual = sha256_of(path, what=f"reading {path}")
    if actual != sha256 or path.stat().st_size != size:
        raise ArchiveError(
            f"{path}: sha256 {actual} on disk does not match its manifest ({sha256}); refusing to archive it"
        )
    return path, actual


def archive_run(
    run_dir: str | Path,
    destination: Archive | ArchiveLocation | str | None = None,
    *,
    remove_local_masters: bool = False,
    progress: Callable[[FileReport], None] | None = None,
    settings: S3Settings | None = None,
) -> ArchiveReport:
    """Archive every finished master of ``run_dir`` to ``destination`` (default ``./renders``).

    Each master's files are checked against its manifest, stored and verified, the manifest
    last. A master that cannot be archived (a conflict, a mismatch, a failed verification) is
    reported as refused and the others go on; failures that would hit every master (credentials,
    an unreachable server or missing bucket, a full disk) raise at once. With
    ``remove_local_masters`` a ``master.mp4`` is deleted only after its whole master (manifest
    included) is verified in the archive. ``progress`` is called with each file's report.

    >>> report = archive_run("runs/summer-launch-0001", "s3://my-bucket/campaigns")  # doctest: +SKIP
    >>> report.raise_if_refused()  # doctest: +SKIP
    """
    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise InputNotFound(f"{run_path}: no such run directory")
    info = read_run_info(run_path)
    pass_dirs = list(find_pass_dirs(run_path))
    if not pass_dirs:
        raise InputNotFound(
            f"{run_path}: no master to archive (expected <narrative>/<variant>/<draft|final>/{MASTER_NAME})"
        )
    if destination is None or isinstance(destination, str | S3Location | LocalLocation):
        archive = open_archive(destination, settings=settings)
        try:
            return _archive_masters(archive, info, pass_dirs, remove_local_masters, progress)
        finally:
            archive.close()  # we opened it
    return _archive_masters(destination, info, pass_dirs, remove_local_masters, progress)


def _archive_masters(
    archive: Archive,
    info: RunInfo,
    pass_dirs: list[Path],
    remove_local_masters: bool,
    progress: Callable[[FileReport], None] | None,
) -> ArchiveReport:
    archive.check()
    report = ArchiveReport(destination=str(archive.location))

    def record(entry: FileReport) -> None:
        report.files.append(entry)
        if progress is not None:
            progress(entry)

    for pass_dir in pass_dirs:
        try:
            master = _master_files(pass_dir, info)
        except (ArchiveAuthError, ArchiveUnavailable, DiskFull):
            raise
        except (ArchiveError, InputError) as exc:
            record(FileReport(Outcome.REFUSED, pass_dir, archive.location.uri(""), error=exc))
            continue
        complete = True
        for path, sha256 in master.files:
            key = archive.location.key(
                info.script, info.run_id, master.narrative, master.variant, master.pass_, path.name
            )
            try:
                result = archive.put(key, path, sha256)
            except (ArchiveAuthError, ArchiveUnavailable, DiskFull):
                raise
            except ArchiveError as exc:
                record(FileReport(Outcome.REFUSED, path, archive.location.uri(key), error=exc))
                complete = False
                break  # never archive the manifest of an incomplete master
            record(FileReport(result.outcome, path, result.uri, result.size, result.sha256))
        if complete:
            report.masters_complete.append(pass_dir)
            if remove_local_masters:
                (pass_dir / MASTER_NAME).unlink(missing_ok=True)
    return report
