"""Image field values: classification, data-URI decoding and checks, picture dimensions."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from pipeline.media.run import ffmpeg
from pipeline.providers.sandbox.images import MAX_DATA_URI_BYTES, classify, closest_aspect, dimensions


def picture(tmp_path: Path, ext: str, size: str) -> bytes:
    out = tmp_path / f"p.{ext}"
    ffmpeg(["-f", "lavfi", "-i", f"color=c=green:s={size}:d=1", "-frames:v", "1", "-y", str(out)])
    return out.read_bytes()


@pytest.mark.parametrize(("ext", "mime"), [("png", "image/png"), ("jpg", "image/jpeg")])
def test_data_uri_is_decoded_and_measured(tmp_path: Path, ext: str, mime: str) -> None:
    data = picture(tmp_path, ext, "96x54")
    image = classify(f"data:{mime};base64,{base64.b64encode(data).decode()}")
    assert (image.kind, image.problem, image.mime, image.size) == ("data-uri", None, mime, len(data))
    assert image.sha256 == hashlib.sha256(data).hexdigest() and image.data == data
    assert dimensions(data) == (96, 54)
    assert "base64" not in repr(image) and str(len(data)) in str(image.log_entry())


@pytest.mark.parametrize(
    ("value", "kind", "host"),
    [
        ("https://bucket.s3.example/k.png?sig=1", "https", "bucket.s3.example"),
        ("http://a.example/k.png", "http", "a.example"),
        ("http://127.0.0.1:9/cdn/uploads/abc.png", "upload", "127.0.0.1"),
        ("ftp://a.example/k.png", "invalid", None),
        ("just text", "invalid", None),
        ("https://[::1", "invalid", None),
    ],
)
def test_urls_are_classified(value: str, kind: str, host: str | None) -> None:
    image = classify(value)
    assert (image.kind, image.host) == (kind, host)


def test_data_uri_problems() -> None:
    assert "base64" in (classify("data:image/png,plain").problem or "")
    assert "PNG or JPEG" in (
        classify("data:image/png;base64," + base64.b64encode(b"hello").decode()).problem or ""
    )
    big = b"\xff\xd8\xff" + bytes(MAX_DATA_URI_BYTES)
    too_big = classify("data:image/jpeg;base64," + base64.b64encode(big).decode())
    assert "over" in (too_big.problem or "") and too_big.data is None


def test_closest_aspect() -> None:
    assert closest_aspect(1920, 1080) == "16:9"
    assert closest_aspect(720, 1280) == "9:16"
    assert closest_aspect(1000, 990) == "1:1"
    assert closest_aspect(2560, 1080) == "21:9"
    assert dimensions(b"GIF89a") is None
