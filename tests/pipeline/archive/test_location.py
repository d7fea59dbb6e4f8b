"""pipeline.archive.location: the archive's default (./renders) and its name in messages.

The locations and the key layout themselves are tested in tests/pipeline/storage/test_location.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.archive.location import DEFAULT_ARCHIVE, LocalLocation, S3Location, parse_location
from pipeline.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://my-bucket/campaigns/", S3Location("my-bucket", "campaigns")),
        ("/srv/archive", LocalLocation(Path("/srv/archive"))),
        (None, LocalLocation(Path("renders"))),
        ("", LocalLocation(Path("renders"))),
        ("  ", LocalLocation(Path("renders"))),
        (Path("x/y"), LocalLocation(Path("x/y"))),
    ],
)
def test_parse_with_the_default(text: str | Path | None, expected: object) -> None:
    assert parse_location(text) == expected
    assert parse_location(None) == parse_location(DEFAULT_ARCHIVE)


@pytest.mark.parametrize(
    "text",
    ["s3://", "s3://Upper", "s3://ab", "s3://bucket_underscore/x", "s3://1.2.3.4/x", "s3://b-b/a/../c",
     "gs://bucket/x", "https://example.com/x"],
)  # fmt: skip
def test_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match="archive"):
        parse_location(text)
