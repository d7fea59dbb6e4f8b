"""Where a render script is read from: a local path, or ``s3://bucket/key.yaml`` copied locally.

A script in S3 is downloaded to ``{cache}/{bucket}/{key}`` (default cache ``.klingflow/scripts``)
together with every asset it names by a relative path (element images and voices, start and end
images; see :func:`pipeline.script.checks.asset_refs`), fetched from beside it in the same
bucket. The copy mirrors the bucket's layout, so the script validates and renders exactly as the
same files would locally. Files are written to a temporary name and renamed into place.

Example::

    >>> fetch_script("configs/weekly-campaign.yaml").path
    PosixPath('configs/weekly-campaign.yaml')
    >>> fetch_script("s3://my-bucket/campaigns/summer.yaml").path  # doctest: +SKIP
    PosixPath('.klingflow/scripts/my-bucket/campaigns/summer.yaml')

Reading an unchanged object again costs one conditional GET (``If-None-Match`` with the ETag
recorded in ``.NAME.s3.json`` beside the copy): the store answers 304 and sends no bytes. The
copy is trusted only while its sha256 matches the one recorded; otherwise it is downloaded again.
An object that no longer exists has its copy removed, so a stale asset never validates.

Errors: a missing script object is InputNotFound (66); everything else S3 can answer comes from
:mod:`pipeline.storage.errors` (StorageAuthError 77, StorageUnavailable 69, StorageError 74),
named after the URI, with the setting to check. boto3 is imported only when an ``s3://`` script
is read, so ``validate`` and ``plan`` of local files stay fast.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pipeline.errors import InputNotFound, StorageAuthError, StorageError, StorageUnavailable
from pipeline.hashing import sha256_file
from pipeline.script import checks
from pipeline.script.yaml_limits import MAX_SCRIPT_BYTES
from pipeline.script.yaml_source import parse_yaml
from pipeline.storage.files import translate_os_error, write_file

if TYPE_CHECKING:
    import boto3

    from pipeline.storage.s3 import S3Store
    from pipeline.storage.settings import S3Settings

#: Where copies of S3 scripts and their assets go, relative to the working directory.
DEFAULT_CACHE_DIR: Final = Path(".klingflow/scripts")
SCHEME: Final = "s3://"


def is_s3_uri(reference: str | Path) -> bool:
    """True for a string starting with ``s3://`` (any case); a Path is always a local file."""
    return isinstance(reference, str) and reference[: len(SCHEME)].lower() == SCHEME


@dataclass(frozen=True)
class S3Object:
    """A bucket and the key of one object in it."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """``s3://bucket/key``, for messages."""
        return f"{SCHEME}{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Object:
    """The object named by ``s3://bucket/key``; InputNotFound (66) when no object can have that name.

    >>> parse_s3_uri("s3://my-bucket/campaigns/summer.yaml")
    S3Object(bucket='my-bucket', key='campaigns/summer.yaml')
    """
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not checks.S3_BUCKET_RE.fullmatch(bucket):
        raise InputNotFound(f"{uri}: {bucket!r} is not a valid S3 bucket name; expected s3://bucket/key.yaml")
    if not key or key.endswith("/"):
        raise InputNotFound(
            f"{uri}: names no object, expected a render script such as s3://{bucket}/key.yaml"
        )
    if not _mirrorable(key):
        raise InputNotFound(
            f"{uri}: the key cannot be copied to a local file (empty, '.' or '..' parts, or control characters)"
        )
    return S3Object(bucket, key)


def _mirrorable(key: str) -> bool:
    """True when ``key`` maps to one path under a bucket's directory, and back."""
    return all(
        part not in {"", ".", ".."} and not any(ord(ch) < 32 or ord(ch) == 127 for ch in part)
        for part in key.split("/")
    )


def asset_key(script_key: str, path: str) -> str | None:
    """The key of the asset written as ``path`` in the script at ``script_key``.

    None when ``path`` is absolute or leaves the bucket: such a file cannot come from S3 (the
    checks then report it).

    >>> asset_key("campaigns/summer.yaml", "../shared/logo.png")
    'shared/logo.png'
    """
    if path.startswith("/"):
        return None
    key = posixpath.normpath(posixpath.join(posixpath.dirname(script_key), path))
    if key in {".", ".."} or key.startswith("../") or not _mirrorable(key):
        return None
    return key


@dataclass(frozen=True)
class ScriptFile:
    """A render script ready to be read from a local file."""

    #: The script as the user named it (a path or an ``s3://`` URI): what messages call it.
    reference: str
    #: The local file to read.
    path: Path
    #: For a script from S3: the local copy of its bucket (assets must come from there).
    mirror: checks.Mirror | None = None


def fetch_script(
    reference: str | Path,
    *,
    cache_dir: Path | None = None,
    settings: S3Settings | None = None,
    session: boto3.Session | None = None,
) -> ScriptFile:
    """The local file of the script ``reference``: a path as it is, an ``s3://`` URI downloaded.

    For S3, the assets the script names by relative paths are downloaded too, from the same
    bucket; ones that do not exist are left for the script's checks to report. ``settings``
    default to the environment (``KLINGFLOW_S3_*``), credentials to the AWS chain (``session``).
    Raises InputNotFound (66) for a missing object, ConfigError (78) for bad S3 settings, and the
    storage errors of :mod:`pipeline.storage.errors` for the rest.
    """
    if not is_s3_uri(reference):
        return ScriptFile(str(Path(reference)), Path(reference))
    uri = str(reference)
    script = parse_s3_uri(uri)
    cache = S3Cache.connect(
        cache_dir or DEFAULT_CACHE_DIR, bucket=script.bucket, uri=uri, settings=settings, session=session
    )
    path = cache.fetch(script)
    if path is None:
        raise InputNotFound(f"{uri}: no such object ({cache.store})")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SCRIPT_BYTES + 1)  # enough to refuse an oversized script
    except OSError as exc:
        raise translate_os_error(exc, what=f"reading the local copy of {uri}") from exc
    # A script that is not valid YAML names no assets; the loader reports why.
    refs = checks.asset_refs(parse_yaml(uri, raw).data)
    keys = (asset_key(script.key, p) for p in (ref.local_path for ref in refs) if p is not None)
    for key in dict.fromkeys(k for k in keys if k is not None):
        cache.fetch(S3Object(script.bucket, key))
    return ScriptFile(uri, path, checks.Mirror(cache.root / script.bucket, f"{SCHEME}{script.bucket}"))


class S3Cache:
    """Local copies of one bucket's objects at ``root/{bucket}/{key}``, refreshed with conditional GETs."""

    def __init__(self, store: S3Store, root: Path, *, uri: str, endpoint_url: str | None) -> None:
        self._objects = store
        self.root = root
        self._uri = uri
        self._endpoint_url = endpoint_url

    @classmethod
    def connect(
        cls,
        root: Path,
        *,
        bucket: str,
        uri: str,
        settings: S3Settings | None = None,
        session: boto3.Session | None = None,
    ) -> S3Cache:
        """A cache of ``bucket`` with a client from the project's factory; errors name ``uri``."""
        from pipeline.errors import ConfigError
        from pipeline.storage.factory import open_store
        from pipeline.storage.location import S3Location
        from pipeline.storage.s3 import S3Store
        from pipeline.storage.settings import load_s3_settings

        try:
            settings = settings or load_s3_settings()
            store = open_store(S3Location(bucket), settings=settings, session=session)
        except StorageError as exc:  # no credentials at all: the message says what to set
            raise type(exc)(f"reading {uri}: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"reading {uri}: {exc}") from exc
        assert isinstance(store, S3Store)  # an S3Location always opens an S3Store
        return cls(store, root.absolute(), uri=uri, endpoint_url=settings.endpoint_url)

    @property
    def store(self) -> str:
        """Which store is asked, and the setting that chooses it (for messages)."""
        if self._endpoint_url:
            return f"store: KLINGFLOW_S3_ENDPOINT_URL={self._endpoint_url}"
        return "store: AWS S3; set KLINGFLOW_S3_ENDPOINT_URL for an S3-compatible one"

    def path_of(self, obj: S3Object) -> Path:
        """Where the copy of ``obj`` lives."""
        return self.root / obj.bucket / obj.key

    def fetch(self, obj: S3Object) -> Path | None:
        """The up-to-date local copy of ``obj``, or None (and no copy) when the object does not exist."""
        from pipeline.storage.errors import from_s3

        dest = self.path_of(obj)
        record = _record_path(dest)
        what = f"reading {obj.uri}" if obj.uri == self._uri else f"reading {obj.uri} (for {self._uri})"
        try:
            fetched = self._objects.fetch(obj.key, dest, etag=_trusted_etag(dest, record), what=what)
        except StorageError as exc:
            if not from_s3(exc):  # writing the local copy: the message names the file already
                raise
            raise self._with_hint(exc) from exc
        if fetched is None:
            _forget(dest, record)
            return None
        if fetched.changed:
            _write_record(record, {"etag": fetched.etag, "sha256": fetched.sha256})
        return dest

    def _with_hint(self, error: StorageError) -> StorageError:
        """``error`` with the setting to check added (never a secret)."""
        if isinstance(error, StorageAuthError):
            hint = f" (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; {self.store})"
        elif isinstance(error, StorageUnavailable) and self._endpoint_url:
            hint = f"; check KLINGFLOW_S3_ENDPOINT_URL (now {self._endpoint_url})"
        else:
            hint = f" ({self.store})"
        return type(error)(f"{error}{hint}")


def _record_path(dest: Path) -> Path:
    """The file beside a copy that records the ETag and sha256 it was downloaded with."""
    return dest.with_name(f".{dest.name}.s3.json")


def _trusted_etag(dest: Path, record: Path) -> str | None:
    """The recorded ETag of ``dest`` if the file is still what was downloaded, else None."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        etag, sha256 = data["etag"], data["sha256"]
        if isinstance(etag, str) and etag and dest.is_file() and sha256_file(dest) == sha256:
            return etag
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or an unreadable one: download again
    return None


def _write_record(record: Path, data: dict[str, Any]) -> None:
    write_file(record, [json.dumps(data).encode()], replace=True)


def _forget(dest: Path, record: Path) -> None:
    """Remove the copy of an object that no longer exists (so it cannot pass for one)."""
    for path in (record, dest):
        try:
            if path.is_file():
                path.unlink()
        except OSError as exc:
            raise translate_os_error(exc, what=f"removing the stale copy {path}") from exc
