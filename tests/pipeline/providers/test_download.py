"""Downloads: allow-list, size cap, atomic placement, ffprobe verification."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pipeline.errors import DownloadError, DownloadIncomplete, RateLimited, TransportError, UpstreamError
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.download import DownloadPolicy, check_url, download_clip, fetch_to_file

CDN = "https://cdn.runcomfy.net/out/clip.mp4"
POLICY = DownloadPolicy()
AUDIO_SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=3, generate_audio=True)


@pytest.mark.parametrize(
    "url",
    ["https://cdn.runcomfy.net/a.mp4", "https://runcomfy.com/a.mp4", "https://a.b.runcomfy.com/x.mp4"],
)
def test_cdn_hosts_allowed(url: str) -> None:
    check_url(url, POLICY)


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.runcomfy.net/a.mp4",  # not https
        "https://evil.example/a.mp4",
        "https://runcomfy.net.evil.example/a.mp4",
        "https://127.0.0.1/a.mp4",
        "https://[::1]/a.mp4",
        "https://10.0.0.5/a.mp4",
        "https://localhost/a.mp4",
        "http://127.0.0.1:8000/cdn/a.mp4",  # loopback, but not the configured sandbox origin
    ],
)
def test_other_hosts_refused(url: str) -> None:
    with pytest.raises(DownloadError, match="refusing"):
        check_url(url, POLICY)


def test_sandbox_origin_allowed_only_exactly() -> None:
    policy = DownloadPolicy(origins=("http://127.0.0.1:8000",))
    check_url("http://127.0.0.1:8000/cdn/videos/a.mp4", policy)
    with pytest.raises(DownloadError):
        check_url("http://127.0.0.1:8001/cdn/videos/a.mp4", policy)


def _client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_valid_clip_is_placed_with_size_and_hash(small_clip: Path, tmp_path: Path) -> None:
    data = small_clip.read_bytes()
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=data))
    dest = tmp_path / "sub" / "clip.mp4"
    clip = asyncio.run(download_clip(_client(transport), CDN, dest, AUDIO_SPEC, POLICY))
    assert dest.read_bytes() == data
    assert clip.size == len(data) and clip.sha256 == hashlib.sha256(data).hexdigest()
    assert clip.duration == pytest.approx(3.0, abs=0.05) and clip.has_audio
    assert (clip.width, clip.height) == (192, 108)
    assert _leftovers(dest.parent) == []


def test_content_length_over_the_cap_is_refused_up_front(tmp_path: Path) -> None:
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(1)
        return httpx.Response(200, headers={"Content-Length": str(3 * 1024**3)}, content=b"")

    with pytest.raises(DownloadError, match="cap"):
        asyncio.run(fetch_to_file(_client(httpx.MockTransport(handler)), CDN, tmp_path / ".x.part", POLICY))
    assert _leftovers(tmp_path) == []


def test_stream_over_the_cap_is_cut_and_removed(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=chunks()))
    policy = DownloadPolicy(max_bytes=4000)
    with pytest.raises(DownloadError, match="exceeded"):
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "c.mp4", AUDIO_SPEC, policy))
    assert list(tmp_path.iterdir()) == []


def test_short_body_is_incomplete(tmp_path: Path, small_clip: Path) -> None:
    data = small_clip.read_bytes()
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"Content-Length": str(len(data) + 10)}, content=data)
    )
    with pytest.raises((DownloadIncomplete, TransportError)):
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "c.mp4", AUDIO_SPEC, POLICY))
    assert list(tmp_path.iterdir()) == []


def test_garbage_is_incomplete_and_removed(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=b"\0" * 5000))
    with pytest.raises(DownloadIncomplete, match="not readable media"):
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "c.mp4", AUDIO_SPEC, POLICY))
    assert list(tmp_path.iterdir()) == []


def test_wrong_duration_or_audio_is_refused(tmp_path: Path, small_clip: Path) -> None:
    data = small_clip.read_bytes()
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=data))
    longer = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5, generate_audio=True)
    with pytest.raises(DownloadIncomplete, match="duration"):
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "a.mp4", longer, POLICY))
    silent = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=3, generate_audio=False)
    with pytest.raises(DownloadError, match="no audio track") as info:
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "b.mp4", silent, POLICY))
    assert not isinstance(info.value, DownloadIncomplete)  # final: downloading again cannot help
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_checked_hop_by_hop(tmp_path: Path) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(302, headers={"Location": "https://169.254.169.254/latest"})
    )
    with pytest.raises(DownloadError, match="refusing"):
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "c.mp4", AUDIO_SPEC, POLICY))


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RateLimited), (503, UpstreamError), (408, TransportError), (404, DownloadError)],
)
def test_http_errors_are_classified(tmp_path: Path, status: int, kind: type[Exception]) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, headers={"Retry-After": "1"}))
    with pytest.raises(kind) as info:
        asyncio.run(download_clip(_client(transport), CDN, tmp_path / "c.mp4", AUDIO_SPEC, POLICY))
    assert type(info.value) is kind
