"""The one place where botocore's errors become klingflow's, in the manner of httpx's ``map_exceptions``.

Every boto3 call runs inside :func:`map_s3_errors`, so that callers only ever see
:mod:`pipeline.errors`::

    wrong / missing credentials, access denied      -> StorageAuthError    (77)
    missing bucket, unreachable server, 5xx         -> StorageUnavailable  (69)
    a conditional write lost (412 / 409)            -> StorageConflict     (73)
    no such key (a 404 on an object)                -> StorageNotFound     (74)
    anything else (bad digest, odd replies)         -> StorageError        (74)

A conditional GET answered "not modified" (304) raises :class:`NotModified`: an answer, not an
error, which the one caller that sends such requests turns into its result.

botocore is imported when an error is mapped, not with this module, so importing a store costs
nothing until S3 is used. Retries are not done here: the client's ``standard`` mode (see
:mod:`pipeline.storage.s3client`) has already retried throttling, 5xx and connection errors by
the time an error reaches us.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from pipeline.errors import (
    StorageAuthError,
    StorageConflict,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
)

if TYPE_CHECKING:
    import botocore.exceptions

#: S3 error codes (and bare HTTP statuses, which HEAD replies carry instead) by meaning.
AUTH_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "401",
        "403",
    }
)
MISSING_BUCKET_CODES: Final = frozenset({"NoSuchBucket"})
CONFLICT_CODES: Final = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
UNAVAILABLE_CODES: Final = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503", "504"}
)
#: A missing object (a GET on a missing bucket says NoSuchBucket, so a bare 404 is about the key
#: unless the call is about the bucket: see ``bucket_level``).
NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "NotFound", "404"})
NOT_MODIFIED_CODES: Final = frozenset({"NotModified", "304"})


class NotModified(Exception):  # a signal, not an error: the copy we hold is current
    """A conditional GET (``If-None-Match``) found the object unchanged: nothing was sent."""


def error_code(exc: botocore.exceptions.ClientError) -> str:
    """The S3 error code of ``exc``, or its HTTP status as text when the reply had no body."""
    code = exc.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate_s3_error(
    exc: Exception, *, what: str, bucket: str | None = None, bucket_level: bool = False
) -> StorageError:
    """The :mod:`pipeline.errors` exception for a botocore failure while doing ``what``.

    ``bucket`` names the bucket in messages; ``bucket_level`` says that a bare 404 is about the
    bucket (a HEAD of the bucket, or a write, which cannot miss its key), not a missing object.
    The message never contains credentials (botocore's messages do not either).
    """
    import botocore.exceptions  # here, like every botocore import: only S3 work pays for it

    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code in AUTH_CODES:
            return StorageAuthError(f"{what}: access denied ({code}): check the AWS credentials")
        if code in MISSING_BUCKET_CODES or (code == "404" and bucket_level):
            name = f"bucket {bucket}" if bucket else "the bucket"
            return StorageUnavailable(f"{what}: {name} does not exist")
        if code in CONFLICT_CODES:
            return StorageConflict(f"{what}: a different object was written under the same key ({code})")
        if code in UNAVAILABLE_CODES:
            return StorageUnavailable(f"{what}: the store failed ({code}: {message})")
        if code in NOT_FOUND_CODES:
            return StorageNotFound(f"{what}: no such object ({code})")
        return StorageError(f"{what}: refused ({code}: {message})")
    if isinstance(
        exc,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.PartialCredentialsError
        | botocore.exceptions.ProfileNotFound,
    ):
        return StorageAuthError(f"{what}: {exc}")
    if isinstance(
        exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
    ):  # refused, reset, timed out, DNS: the server is not (or no longer) there
        return StorageUnavailable(f"{what}: the S3 server cannot be reached ({exc})")
    return StorageError(f"{what}: {exc}")


@contextmanager
def map_s3_errors(what: str, *, bucket: str | None = None, bucket_level: bool = False) -> Iterator[None]:
    """Run boto3 calls with their errors translated (see :func:`translate_s3_error`).

    Only botocore's exceptions are caught: ours, and OS errors, pass through unchanged.

    >>> with map_s3_errors(f"checking {uri}"):  # doctest: +SKIP
    ...     client.head_object(Bucket=bucket, Key=key)
    """
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in NOT_MODIFIED_CODES:
            raise NotModified(what) from exc
        raise translate_s3_error(exc, what=what, bucket=bucket, bucket_level=bucket_level) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise translate_s3_error(exc, what=what, bucket=bucket, bucket_level=bucket_level) from exc


def from_s3(error: BaseException) -> bool:
    """True when ``error`` was mapped here from botocore (not from a local file's OS error)."""
    import botocore.exceptions

    return isinstance(error.__cause__, botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError)
