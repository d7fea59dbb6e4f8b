"""The one place an S3 client is made.

Every S3 call in klingflow goes through a client from :func:`make_s3_client`, and its failures
through :func:`pipeline.storage.errors.map_s3_errors`.

Retries happen here and only here: botocore's ``standard`` mode retries throttling, 5xx and
connection errors up to ``max_attempts`` times with jittered backoff. Callers do not retry again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import boto3
from botocore.config import Config

from pipeline.errors import StorageAuthError
from pipeline.storage.errors import map_s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pipeline.storage.settings import S3Settings

#: Region used to sign requests to a custom endpoint when none is configured anywhere: such
#: stores accept any region, but SigV4 needs one.
FALLBACK_REGION: Final = "us-east-1"


def make_s3_client(settings: S3Settings, *, session: boto3.Session | None = None) -> S3Client:
    """A boto3 S3 client configured from ``settings``.

    Credentials come from ``session`` (default: a new :class:`boto3.Session`, i.e. the standard
    AWS chain). For a custom ``endpoint_url`` the client sends checksums only where S3 requires
    them (boto3 ≥ 1.36 otherwise adds CRC headers many compatible stores reject) and uses path
    addressing. Raises StorageAuthError when the chain finds no credentials at all.

    >>> client = make_s3_client(load_s3_settings())  # doctest: +SKIP
    """
    with map_s3_errors("reading AWS credentials"):  # e.g. a profile that does not exist
        session = session or boto3.Session()
        credentials = session.get_credentials()
    if credentials is None:
        raise StorageAuthError(
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
