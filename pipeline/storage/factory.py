"""The one place that picks a store's implementation from where it lives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.storage.local import LocalStore
from pipeline.storage.location import LocalLocation, S3Location, StoreLocation, parse_location

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

    from pipeline.storage.s3 import S3Store
    from pipeline.storage.settings import S3Settings


def open_store(
    location: StoreLocation | str,
    *,
    settings: S3Settings | None = None,
    client: S3Client | None = None,
    session: boto3.Session | None = None,
) -> S3Store | LocalStore:
    """The store at ``location`` (``s3://bucket/prefix`` or a directory).

    An S3 store uses ``client`` if given, else one from
    :func:`~pipeline.storage.s3client.make_s3_client` (``settings`` default: from the
    environment; credentials: ``session`` or the AWS chain). boto3 is imported only for S3.
    """
    where = location if isinstance(location, S3Location | LocalLocation) else parse_location(location)
    if isinstance(where, LocalLocation):
        return LocalStore(where)
    # Imported here: boto3 is needed only when a store really is in S3.
    from pipeline.storage.s3 import S3Store
    from pipeline.storage.settings import load_s3_settings

    settings = settings or load_s3_settings()
    if client is None:
        from pipeline.storage.s3client import make_s3_client

        client = make_s3_client(settings, session=session)
    return S3Store(client, where, settings)
