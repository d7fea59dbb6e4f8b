"""The realistic sandbox over TLS: token, strict schemas, data:/https images, CDN-style URLs.

Facts pinned here come from RunComfy's own clients: the model-info fields the CLI prints
(runcomfy-com/runcomfy-cli ``src/cmd/models.rs``: ``model_id``, ``display_name``, ``categories``,
``base_price_usd``, ``price_unit``; list answer ``{models, total}``) and that the partner nodes
check (runcomfy-com/comfyui-runcomfy-partner-nodes ``runcomfy/pricing.py``); the 6 MiB data-URI
image limit (the same repository's ``runcomfy/media.py``); the CLI's download allow-list
(``src/download.rs``: hosts ending ``.runcomfy.net``, any port).
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.media.probe import probe
from pipeline.media.run import ffmpeg
from pipeline.pricing import Tier
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.render import frame_size
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox

TOKEN = "realistic-token"
CDN_HOST = "cdn-sandbox.runcomfy.net"
I2V = "/models/kling/kling-3.0/standard/image-to-video"
T2V = "/models/kling/kling-3.0/standard/text-to-video"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server certificate for loopback and the CDN name, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", CDN_HOST)
    chain, key = folder / "cert.pem", folder / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return chain, key


@pytest.fixture(scope="module")
def trust(ca: trustme.CA) -> ssl.SSLContext:
    """A client TLS context that trusts only the throwaway CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="module")
def real(tls_files: tuple[Path, Path]) -> Iterator[SandboxHandle]:
    """A realistic sandbox over TLS whose videos point at the CDN name (on the API's port)."""
    config = SandboxConfig(
        realistic=True,
        token=SecretStr(TOKEN),
        cdn_base_url=f"https://{CDN_HOST}",
        latency_scale=0.005,
        render_scale=0.1,
    )
    with run_sandbox(config, tls=tls_files) as handle:
        yield handle


@pytest.fixture
def client(real: SandboxHandle, trust: ssl.SSLContext) -> Iterator[httpx.Client]:
    """An authenticated HTTPS client of the realistic sandbox."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=real.base_url, verify=trust, headers=headers, timeout=30) as c:
        yield c


def png_bytes(tmp_path: Path, color: str, size: str) -> bytes:
    path = tmp_path / f"{color}-{size}.png"
    ffmpeg(["-f", "lavfi", "-i", f"color=c={color}:s={size}:d=1", "-frames:v", "1", "-y", str(path)])
    return path.read_bytes()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def finish(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit, poll until finished, return the result body."""
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    rid = answer.json()["request_id"]
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    while time.monotonic() < deadline:
        result = client.get(f"/requests/{rid}/result", params={"include_cost": "true"}).json()
        if result["status"] in {"completed", "failed", "cancelled"}:
            return dict(result)
        time.sleep(0.05)
    raise AssertionError(f"request {rid} did not finish")


def fetch_video(real: SandboxHandle, trust: ssl.SSLContext, url: str, target: Path) -> Path:
    """Download ``url`` (on the CDN name) from the sandbox, as a client mapping that name to
    loopback would: connect to 127.0.0.1, present the CDN name for SNI and Host."""
    parts = httpx.URL(url)
    assert parts.host == CDN_HOST
    loopback = parts.copy_with(host="127.0.0.1")
    with httpx.Client(verify=trust) as c:
        answer = c.get(
            loopback, headers={"Host": f"{CDN_HOST}:{parts.port}"}, extensions={"sni_hostname": CDN_HOST}
        )
    assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
    target.write_bytes(answer.content)
    return target


def corner_rgb(clip: Path, tmp_path: Path, *, center: bool = False) -> tuple[int, int, int]:
    """Mean colour of the first frame's top-left eighth (or its centre)."""
    crop = "crop=iw/4:ih/4:iw*3/8:ih*3/8" if center else "crop=iw/8:ih/8:0:0"
    out = tmp_path / "px.rgb"
    vf = f"{crop},scale=1:1"
    ffmpeg(
        ["-i", str(clip), "-frames:v", "1", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", str(out)]
    )
    r, g, b = out.read_bytes()[:3]
    return r, g, b


# --- auth and catalogue -----------------------------------------------------------------------


def test_token_is_required_everywhere_but_operator_paths(real: SandboxHandle, trust: ssl.SSLContext) -> None:
    with httpx.Client(base_url=real.base_url, verify=trust) as anonymous:
        for method, path in (("POST", T2V), ("GET", "/models"), ("GET", T2V), ("GET", "/requests/x/status")):
            missing = anonymous.request(method, path, json={"prompt": "x"})
            assert missing.status_code == 401, path
            assert missing.json()["error_code"] == 401001
            wrong = anonymous.request(
                method, path, json={"prompt": "x"}, headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 403 and wrong.json()["error_code"] == 403001
        assert anonymous.get("/sandbox/ledger").status_code == 200
        assert anonymous.get("/sandbox/requests").status_code == 200


def test_tls_is_verified_against_the_ca(real: SandboxHandle) -> None:
    assert real.origin.startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{real.base_url}/sandbox/stats", verify=ssl.create_default_context())


def test_model_info_has_the_official_clients_fields(client: httpx.Client) -> None:
    info = client.get("/models/kling/kling-3.0/pro/image-to-video").json()
    assert info["model_id"] == "kling/kling-3.0/pro/image-to-video"
    assert info["base_price_usd"] == 0.112 and info["price_unit"] == "second"
    assert isinstance(info["display_name"], str) and info["categories"] == ["image-to-video"]
    schema = info["input_schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"prompt", "start_image_url"}
    assert "aspect_ratio" not in schema["properties"]  # unverified for i2v: refused here
    assert schema["properties"]["duration"] == {"type": "integer", "minimum": 3, "maximum": 15, "default": 5}
    t2v = client.get("/models/kling/kling-3.0/4k/text-to-video").json()
    assert t2v["base_price_usd"] == 0.42
    assert t2v["input_schema"]["properties"]["prompt"]["maxLength"] == 2500
    assert "start_image_url" not in t2v["input_schema"]["properties"]
    assert client.get("/models/kling/kling-9/pro/text-to-video").json()["error_code"] == 400001


def test_model_list_pages_filters_and_includes_schemas(client: httpx.Client) -> None:
    everything = client.get("/models", params={"limit": 100}).json()
    assert everything["total"] == 6 and len(everything["models"]) == 6
    assert all("input_schema" not in m for m in everything["models"])
    page = client.get("/models", params={"limit": 2, "offset": 4}).json()
    assert page["total"] == 6 and [m["model_id"] for m in page["models"]] == [
        m["model_id"] for m in everything["models"][4:6]
    ]
    found = client.get("/models", params={"search": "PRO", "include_schema": "true"}).json()
    assert {m["model_id"] for m in found["models"]} == {
        "kling/kling-3.0/pro/text-to-video",
        "kling/kling-3.0/pro/image-to-video",
    }
    assert all(m["input_schema"]["additionalProperties"] is False for m in found["models"])
    assert client.get("/models", params={"category": "image-to-video"}).json()["total"] == 3


# --- strict input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "loc", "kind"),
    [
        (T2V, {"prompt": "x", "foo": 1}, "foo", "extra_forbidden"),
        (T2V, {"prompt": "x", "duration": "5"}, "duration", "int_type"),
        (T2V, {"prompt": "x", "generate_audio": 1}, "generate_audio", "bool_type"),
        (T2V, {"prompt": "x", "duration": 16}, "duration", "less_than_equal"),
        (
            T2V,
            {"prompt": "x", "start_image_url": "https://a.example/x.png"},
            "start_image_url",
            "extra_forbidden",
        ),
        (
            I2V,
            {"prompt": "x", "start_image_url": "https://a.example/x.png", "aspect_ratio": "16:9"},
            "aspect_ratio",
            "extra_forbidden",
        ),
        (I2V, {"prompt": "x", "image_url": "https://a.example/x.png"}, "start_image_url", "missing"),
    ],
)
def test_schema_violations_are_422_with_detail(
    client: httpx.Client, path: str, body: dict[str, Any], loc: str, kind: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error_code"] == 422001
    assert {"loc": ["body", loc], "type": kind} in [
        {"loc": d["loc"], "type": d["type"]} for d in error["detail"]
    ]


def test_refused_images(client: httpx.Client, tmp_path: Path) -> None:
    png = png_bytes(tmp_path, "blue", "32x32")
    cases = {
        "http://images.example/x.png": "https",
        f"{client.base_url.scheme}://127.0.0.1/cdn/uploads/abc.png": "uploads",
        "data:image/png;base64,%%%not-base64": "base64",
        data_uri(b"GIF89a not a png"): "PNG or JPEG",
        data_uri(png, "image/jpeg"): "holds image/png",
        data_uri(b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024)): "over",
    }
    for url, why in cases.items():
        answer = client.post(I2V, json={"prompt": "x", "start_image_url": url})
        assert answer.status_code == 422, url[:40]
        (problem,) = answer.json()["detail"]
        assert problem["loc"] == ["body", "start_image_url"] and why in problem["msg"], problem
    assert client.post("/sandbox/uploads", content=png).status_code == 404


# --- images that work, downloads under the CDN ------------------------------------------------


def test_data_uri_is_the_start_frame_and_decides_the_shape(
    real: SandboxHandle, client: httpx.Client, trust: ssl.SSLContext, tmp_path: Path
) -> None:
    red = png_bytes(tmp_path, "red", "180x320")  # 9:16
    body = {"prompt": "Shot 1: a red door", "duration": 3, "seed": 4, "start_image_url": data_uri(red)}
    result = finish(client, I2V, body)
    assert result["status"] == "completed" and result["cost"] == 0.252
    url = result["output"]["video"]
    rid = result["request_id"]
    assert (
        url == f"https://{CDN_HOST}:{real.port}/videos/{rid}.mp4" == f"{real.cdn_base_url}/videos/{rid}.mp4"
    )
    clip = fetch_video(real, trust, url, tmp_path / "red.mp4")
    info = probe(clip)
    assert info.video is not None
    assert (info.video.width, info.video.height) == frame_size(Tier.STANDARD, "9:16", 0.1)
    r, g, b = corner_rgb(clip, tmp_path, center=True)
    assert r > 200 and g < 60 and b < 60
    (entry,) = [e for e in real.requests() if e["request_id"] == rid]
    assert entry["images"] == {
        "start_image_url": {
            "kind": "data-uri",
            "sha256": hashlib.sha256(red).hexdigest(),
            "bytes": len(red),
            "mime": "image/png",
            "host": None,
        }
    }
    assert entry["fields"] == ["duration", "prompt", "seed", "start_image_url"]
    assert entry["prompt_chars"] == len(str(body["prompt"])) and entry["refused"] is False
    assert "base64" not in str(real.requests())  # the log never keeps a data URI


def test_https_image_gets_a_labelled_placeholder(
    real: SandboxHandle, client: httpx.Client, trust: ssl.SSLContext, tmp_path: Path
) -> None:
    body = {"prompt": "a door", "duration": 3, "seed": 4}
    remote = finish(
        client, I2V, {**body, "start_image_url": "https://bucket.s3.example/a.png?X-Amz-Signature=s"}
    )
    text_only = finish(client, T2V, body)
    placeholder = corner_rgb(
        fetch_video(real, trust, remote["output"]["video"], tmp_path / "p.mp4"), tmp_path
    )
    pattern = corner_rgb(fetch_video(real, trust, text_only["output"]["video"], tmp_path / "t.mp4"), tmp_path)
    assert all(abs(c - 128) < 16 for c in placeholder), placeholder  # the grey card
    assert not all(abs(c - 128) < 16 for c in pattern), pattern  # what it would be without it
    (entry,) = [e for e in real.requests() if e["request_id"] == remote["request_id"]]
    assert entry["images"]["start_image_url"] == {
        "kind": "https",
        "sha256": None,
        "bytes": None,
        "mime": None,
        "host": "bucket.s3.example",
    }
    assert "X-Amz-Signature" not in str(real.requests())  # a presigned URL is a credential


def test_refused_submits_are_logged(real: SandboxHandle, client: httpx.Client, trust: ssl.SSLContext) -> None:
    client.post(T2V, json={"prompt": "logged refusal", "foo": 1})
    entry = real.requests()[-1]
    assert entry["refused"] is True and entry["status"] == 422 and entry["request_id"] is None
    assert (
        entry["fields"] == ["foo", "prompt"] and entry["model_id"] == "kling/kling-3.0/standard/text-to-video"
    )
    over_http = httpx.get(f"{real.base_url}/sandbox/requests", verify=trust)
    assert over_http.json()["requests"][-1] == entry


def test_cut_connections_work_over_tls(
    real: SandboxHandle, client: httpx.Client, trust: ssl.SSLContext
) -> None:
    done = finish(client, T2V, {"prompt": "cut me", "duration": 3})
    real.set_faults(FaultConfig(truncate=1.0))
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            fetch_video(real, trust, done["output"]["video"], Path("/nonexistent/never-written.mp4"))
    finally:
        real.set_faults(FaultConfig())


# --- configuration ----------------------------------------------------------------------------


def test_realistic_config_needs_a_token_and_a_sane_cdn() -> None:
    with pytest.raises(ConfigError, match="token"):
        SandboxConfig(realistic=True)
    with pytest.raises(ConfigError, match="cdn-base-url"):
        SandboxConfig(cdn_base_url="ftp://cdn.example")
    with pytest.raises(ConfigError, match="/v1"):
        SandboxConfig(cdn_base_url="https://cdn.example/v1")
    explicit = SandboxConfig(cdn_base_url="https://cdn.example:8443/files/")
    assert explicit.video_base("https://127.0.0.1:9", 9) == "https://cdn.example:8443/files"
    assert explicit.cdn_path == "/files"


def test_bad_tls_files_are_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="no such file"), run_sandbox(tls=(tmp_path / "none.pem", junk)):
        pass
    with pytest.raises(ConfigError, match="not a usable PEM pair"), run_sandbox(tls=(junk, junk)):
        pass
