"""How image inputs reach the provider: data URIs within the partner nodes' limits, S3, auto."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, InputError, InputNotFound
from pipeline.providers.images import (
    MAX_IMAGE_BYTES,
    DataUriTransport,
    choose_image_transport,
    data_uri_for,
    s3_location_for,
    sniff,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_image(path: Path, size: str = "64x36", *, noise: bool = False) -> Path:
    source = f"nullsrc=s={size},geq=random(1)*255:128:128" if noise else f"testsrc=s={size}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", "1", str(path)],
        check=True,
    )
    return path


def decode(uri: str) -> tuple[str, bytes]:
    head, _, payload = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64")
    return head[5:-7], base64.b64decode(payload)


def test_the_partner_nodes_limit_is_six_mebibytes() -> None:
    # runcomfy-com/comfyui-runcomfy-partner-nodes, runcomfy/media.py: MAX_IMAGE_BYTES = 6 MiB.
    assert MAX_IMAGE_BYTES == 6 * 1024 * 1024


def test_a_small_png_travels_as_is(tmp_path: Path) -> None:
    image = make_image(tmp_path / "frame.png")
    mime, data = decode(data_uri_for(image))
    assert mime == "image/png" and data == image.read_bytes()


def test_a_too_large_frame_is_reencoded_as_jpeg_under_the_limit(tmp_path: Path) -> None:
    image = make_image(tmp_path / "noise.png", "640x360", noise=True)
    limit = image.stat().st_size // 4
    mime, data = decode(data_uri_for(image, limit=limit))
    assert mime == "image/jpeg" and sniff(data) == "image/jpeg" and len(data) <= limit


def test_an_image_that_is_not_png_or_jpeg_is_converted(tmp_path: Path) -> None:
    image = make_image(tmp_path / "frame.bmp")
    mime, data = decode(data_uri_for(image))
    assert mime == "image/jpeg" and sniff(data) == "image/jpeg"


@pytest.mark.anyio
async def test_urls_and_missing_files(tmp_path: Path) -> None:
    transport = DataUriTransport()
    assert await transport.url_for("https://cdn.example.com/a.png") == "https://cdn.example.com/a.png"
    with pytest.raises(InputError, match="must be https"):
        await transport.url_for("http://cdn.example.com/a.png")
    with pytest.raises(InputNotFound, match="no such image"):
        await transport.url_for(str(tmp_path / "missing.png"))


def test_auto_picks_s3_when_one_is_configured_else_data_uris() -> None:
    assert s3_location_for(None, None) is None
    assert s3_location_for(None, "./renders") is None
    assert s3_location_for(None, "s3://archive/x") == "s3://archive/x"
    assert s3_location_for("s3://shared/y", "s3://archive/x") == "s3://shared/y"
    assert isinstance(choose_image_transport("auto"), DataUriTransport)
    assert isinstance(choose_image_transport("data-uri", archive="s3://archive/x"), DataUriTransport)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="expected one of data-uri, s3, auto"):
        choose_image_transport("ftp")
    with pytest.raises(ConfigError, match="needs an S3 location"):
        choose_image_transport("s3", archive="./renders")
