"""The one place an S3 client is made, and where botocore's errors become klingflow's.

Every S3 call in klingflow goes through a client from :func:`make_s3_client` and, when it fails,
through :func:`translate_s3_error`, so callers only ever see :mod:`pipeline.errors`::

    wrong / missing credentials, access denied      -> ArchiveAuthError    (77)
    missing bucket, unreachable server, 5xx         -> ArchiveUnavailable  (69)
    a conditional write lost (412 / 409)            -> ArchiveConflict     (73)
    anything else (bad digest, odd replies)         -> ArchiveError        (74)

Retries happen here and only here: botocore's ``standard`` mode retries throttling, 5xx and
connection errors up to ``max_attempts`` times with jittered backoff. Callers do not retry again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline.archive.settings import S3Settings
from pipeline.errors import ArchiveAuthError, ArchiveConflict, ArchiveError, ArchiveUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Region used to sign requests to a custom endpoint when none is configured anywhere: such
#: stores accept any region, but SigV4 needs one.
FALLBACK_REGION: Final = "us-east-1"

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


def make_s3_client(settings: S3Settings, *, session: boto3.Session | None = None) -> S3Client:
    """A boto3 S3 client configured from ``settings``.

    Credentials come from ``session`` (default: a new :class:`boto3.Session`, i.e. the standard
    AWS chain). For a custom ``endpoint_url`` the client sends checksums only where S3 requires
    them (boto3 ≥ 1.36 otherwise adds CRC headers many compatible stores reject) and uses path
    addressing. Raises ArchiveAuthError when the chain finds no credentials at all.

    >>> client = make_s3_client(load_s3_settings())  # doctest: +SKIP
    """
    try:
        session = session or boto3.Session()
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:  # e.g. a profile that does not exist
        raise translate_s3_error(exc, what="reading AWS credentials") from exc
    if credentials is None:
        raise ArchiveAuthError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    region = settings.region or session.region_name or (FALLBACK_REGION if settings.custom_endpoint else None)
    checksum: Literal["when_required", "when_supported"] = (
        "when_required" if settings.custom_endpoint else "when_supported"
    )
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": settings.effective_addressing_style},
        request_checksum_calculation=checksum,
        response_checksum_validation=checksum,
        # total_max_attempts counts the first try; botocore's "max_attempts" key would not.
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # One connection per concurrent part, plus room for HEAD/GET beside them.
        max_pool_connections=settings.max_concurrency + 2,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def error_code(exc: botocore.exceptions.ClientError) -> str:
    """The S3 error code of ``exc``, or its HTTP status as text when the reply had no body."""
    code = exc.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate_s3_error(exc: Exception, *, what: str, bucket: str | None = None) -> ArchiveError:
    """The :mod:`pipeline.errors` exception for a botocore failure while doing ``what``.

    ``bucket`` lets a bare 404 on a bucket-level call be reported as a missing bucket. The
    message never contains credentials (botocore's messages do not either).
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code in AUTH_CODES:
            return ArchiveAuthError(f"{what}: access denied ({code}): check the AWS credentials")
        if code in MISSING_BUCKET_CODES or (code == "404" and bucket is not None):
            name = f"bucket {bucket}" if bucket else "the bucket"
            return ArchiveUnavailable(f"{what}: {name} does not exist")
        if code in CONFLICT_CODES:
            return ArchiveConflict(f"{what}: a different object was written under the same key ({code})")
        if code in UNAVAILABLE_CODES:
            return ArchiveUnavailable(f"{what}: the store failed ({code}: {message})")
        return ArchiveError(f"{what}: refused ({code}: {message})")
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return ArchiveAuthError(f"{what}: {exc}")
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return ArchiveAuthError(f"{what}: {exc}")
    if isinstance(
        exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
    ):  # refused, reset, timed out, DNS: the server is not (or no longer) there
        return ArchiveUnavailable(f"{what}: the S3 server cannot be reached ({exc})")
    return ArchiveError(f"{what}: {exc}")
