"""Moved to :mod:`pipeline.storage.s3client` and :mod:`pipeline.storage.errors`.

Kept only for the test fixtures that import it from here (``tests/pipeline/archive/conftest.py``,
being moved to the shared test stack); remove it once nothing imports it.
"""

from pipeline.storage.errors import (
    AUTH_CODES,
    CONFLICT_CODES,
    MISSING_BUCKET_CODES,
    UNAVAILABLE_CODES,
    error_code,
    translate_s3_error,
)
from pipeline.storage.s3client import FALLBACK_REGION, make_s3_client

__all__ = [
    "AUTH_CODES",
    "CONFLICT_CODES",
    "FALLBACK_REGION",
    "MISSING_BUCKET_CODES",
    "UNAVAILABLE_CODES",
    "error_code",
    "make_s3_client",
    "translate_s3_error",
]
