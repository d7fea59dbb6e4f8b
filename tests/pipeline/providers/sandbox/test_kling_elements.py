"""The sandbox's Kling element API: creation tasks, ids checked in element_list, images logged.

What it mimics is pinned by tests/pipeline/providers/test_kling_contract.py (sources cited there).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.generation import ElementRef, GenerationSpec
from pipeline.media.run import ffmpeg
from pipeline.pricing import Tier
from pipeline.providers.kling import KlingProvider
from pipeline.providers.kling_settings import KlingSettings
from pipeline.providers.kling_wire import sign_token
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.kling_elements import ELEMENTS_PATH, image_values
from pipeline.providers.sandbox.render import RenderJob
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox

ACCESS = "ak-elements"
SECRET = "e" * 40
I2V = "/v1/videos/image2video"


@pytest.fixture(scope="module")
def kling() -> Iterator[SandboxHandle]:
    config = SandboxConfig(
        latency_scale=0.005, render_scale=0.1, kling_access_key=ACCESS, kling_secret_key=SecretStr(SECRET)
    )
    with run_sandbox(config) as handle:
        yield handle


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = {}
    for name, color in (("start", "gray"), ("mara", "red"), ("leo", "blue")):
        png = tmp_path_factory.mktemp(name) / f"{name}.png"
        ffmpeg(["-f", "lavfi", "-i", f"color=c={color}:s=64x64:d=1", "-frames:v", "1", "-y", str(png)])
        out[name] = png.read_bytes()
    return out


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_token(ACCESS, SECRET, ttl_s=600)}"}


def adapter(handle: SandboxHandle, client: httpx.AsyncClient) -> KlingProvider:
    settings = KlingSettings(
        access_key=SecretStr(ACCESS),
        secret_key=SecretStr(SECRET),
        base_url=handle.origin,
        element_poll_s=0.01,
    )
    return KlingProvider(settings, http_client=client)


def test_the_adapter_creates_elements_and_the_log_shows_their_images(
    kling: SandboxHandle, pngs: dict[str, bytes]
) -> None:
    mara = ElementRef("mara", "woman, red hair", (data_uri(pngs["mara"]),))
    leo = ElementRef("leo", "old fisherman", (data_uri(pngs["leo"]), data_uri(pngs["start"])))
    spec = GenerationSpec(
        tier=Tier.STANDARD,
        prompt="@mara (woman, red hair) hands @leo (old fisherman) a rope",
        duration=3,
        start_image_url=data_uri(pngs["start"]),
        elements=(mara, leo),
    )

    async def main() -> list[str]:
        async with httpx.AsyncClient() as client:
            provider = adapter(kling, client)
            subs = await asyncio.gather(*(provider.submit(spec) for _ in range(2)))
            assert provider.elements.created == 2  # both submits share one creation of each
            return [s.request_id for s in subs]

    ids = asyncio.run(main())
    logged = [r for r in kling.requests() if r["request_id"] in ids]
    assert len(logged) == 2
    for entry in logged:
        assert [[i["sha256"] for i in images] for images in entry["elements"]] == [
            # One image: sent as the frontal image and, repeated, as its reference image.
            [hashlib.sha256(pngs["mara"]).hexdigest()] * 2,
            [hashlib.sha256(pngs["leo"]).hexdigest(), hashlib.sha256(pngs["start"]).hexdigest()],
        ]
        assert {i["kind"] for images in entry["elements"] for i in images} == {"data-uri"}
        assert "base64" not in str(entry["elements"])  # digests, never the image


def create(handle: SandboxHandle, png: bytes, **change: Any) -> httpx.Response:
    raw = base64.b64encode(png).decode()
    body = {
        "element_name": "mara",
        "element_description": "woman, red hair",
        "reference_type": "image_refer",
        "element_image_list": {"frontal_image": raw, "refer_images": [{"image_url": raw}]},
        "tag_list": [{"tag_id": "o_108"}],
        **change,
    }
    return httpx.post(f"{handle.origin}{ELEMENTS_PATH}", json=body, headers=headers())


def element_id(handle: SandboxHandle, png: bytes) -> int:
    task = create(handle, png).json()["data"]["task_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = httpx.get(f"{handle.origin}{ELEMENTS_PATH}/{task}", headers=headers()).json()["data"]
        if data["task_status"] == "succeed":
            assert data["final_unit_deduction"] == "0"  # creating an element is free
            found: int = data["task_result"]["elements"][0]["element_id"]
            return found
        time.sleep(0.02)
    raise AssertionError("the element was never ready")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"element_name": "x" * 21}, "element_name"),
        ({"element_description": ""}, "element_description"),
        ({"reference_type": "video_refer"}, "reference_type"),
        (
            {"element_image_list": {"frontal_image": "https://a.test/x.png", "refer_images": []}},
            "refer_images",
        ),
    ],
)
def test_bad_element_bodies_get_code_1201(
    kling: SandboxHandle, pngs: dict[str, bytes], change: dict[str, Any], needle: str
) -> None:
    answer = create(kling, pngs["mara"], **change)
    assert answer.status_code == 400 and answer.json()["code"] == 1201
    assert needle in answer.json()["message"]


def video(handle: SandboxHandle, png: bytes, path: str = I2V, **change: Any) -> httpx.Response:
    body = {
        "model_name": "kling-v3",
        "mode": "std",
        "duration": "3",
        "prompt": "<<<element_1>>> waves",
        "image": base64.b64encode(png).decode(),
        **change,
    }
    return httpx.post(f"{handle.origin}{path}", json=body, headers=headers())


def test_element_list_must_name_created_elements_on_image_to_video(
    kling: SandboxHandle, pngs: dict[str, bytes]
) -> None:
    made = element_id(kling, pngs["mara"])
    assert video(kling, pngs["start"], element_list=[{"element_id": made}]).status_code == 200
    refusals = [
        video(kling, pngs["start"], element_list=[{"element_id": 12345}]),
        video(kling, pngs["start"], element_list=[{"element_id": made}], voice_list=[{"voice_id": "v"}]),
        video(kling, pngs["start"], element_list=[{"element_id": made}], prompt="<<<element_2>>> waves"),
        video(kling, pngs["start"], element_list=[{"element_id": made}] * 4),
        video(kling, pngs["start"], "/v1/videos/text2video", element_list=[{"element_id": made}]),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refusals] == [(400, 1201)] * 5
    missing = httpx.get(f"{kling.origin}{ELEMENTS_PATH}/no-such-task", headers=headers())
    assert missing.status_code == 404


def test_image_values_lists_the_frontal_image_first() -> None:
    body = {
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": "f",
            "refer_images": [{"image_url": "a"}, {"image_url": "b"}],
        },
    }
    assert image_values(body) == (["f", "a", "b"], None)
    assert image_values([]) == ([], "the body must be a JSON object")


def test_no_jwt_no_element(kling: SandboxHandle, tmp_path: Path) -> None:
    answer = httpx.post(f"{kling.origin}{ELEMENTS_PATH}", json={})
    assert answer.status_code == 401 and answer.json()["code"] == 1001


def test_the_render_shows_an_element_in_the_shots_whose_prompt_names_it(tmp_path: Path) -> None:
    # The dialect hands the renderer each referenced element as ``element_n``: the name its
    # ``<<<element_n>>>`` mention contains, so the element's image is drawn in those shots.
    image = tmp_path / "mara.png"
    job = RenderJob(
        fingerprint="f",
        tier=Tier.STANDARD,
        aspect_ratio="16:9",
        duration=5,
        audio=False,
        seed=1,
        prompt="",
        width=64,
        height=36,
        shots=(("a quiet harbour", 2), ("<<<element_1>>> waves", 3)),
        elements=(("element_1", (image,)),),
    )
    assert job.element_spans() == [("element_1", image, [(2.0, 5.0)])]
