"""The sandbox's Kling dialect over loopback HTTP: JWT, bodies, look-ups, duplicates, faults.

What it mimics is pinned by tests/pipeline/providers/test_kling_contract.py (sources cited there).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from pipeline.media.run import ffmpeg
from pipeline.providers.kling_wire import sign_token
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.kling_api import image_input, parse_body
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox

ACCESS = "ak-sandbox"
SECRET = "q" * 40
T2V = "/v1/videos/text2video"


def config(**kw: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "latency_scale": 0.005,
        "render_scale": 0.1,
        "kling_access_key": ACCESS,
        "kling_secret_key": SecretStr(SECRET),
        **kw,
    }
    return SandboxConfig(**values)


@pytest.fixture(scope="module")
def kling() -> Iterator[SandboxHandle]:
    with run_sandbox(config(balance_usd=Decimal(100))) as handle:
        yield handle


def bearer(secret: str = SECRET, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    payload = {"iss": ACCESS, "exp": now + 600, "nbf": now - 5, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm='HS256')}"}


def body(**kw: Any) -> dict[str, Any]:
    return {
        "model_name": "kling-v3",
        "mode": "std",
        "duration": "3",
        "prompt": "a kite",
        "sound": "off",
        **kw,
    }


def post(
    handle: SandboxHandle, path: str, json: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(f"{handle.origin}{path}", json=json, headers=bearer() if headers is None else headers)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1001),
        (bearer("w" * 40), 1002),  # signed with another secret
        (bearer(iss="someone-else"), 1002),
        (bearer(exp=int(time.time()) - 60), 1004),
        (bearer(nbf=int(time.time()) + 600), 1003),
    ],
)
def test_requests_without_a_valid_jwt_are_refused(
    kling: SandboxHandle, headers: dict[str, str], code: int
) -> None:
    answer = post(kling, T2V, body(), headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == code


def test_the_adapters_token_is_accepted(kling: SandboxHandle) -> None:
    token = sign_token(ACCESS, SECRET, ttl_s=1800)
    answer = post(kling, T2V, body(), {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["code"] == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"duration": 3}, "duration"),  # an integer: the API takes a string
        ({"mode": "4k"}, "mode"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"model_name": "kling-v1"}, "model_name"),
        (
            {
                "multi_shot": True,
                "shot_type": "customize",
                "multi_prompt": [{"index": 1, "prompt": "a", "duration": "2"}],
            },
            "sum",
        ),
        ({"multi_shot": True, "multi_prompt": [{"index": 1, "prompt": "a", "duration": "3"}]}, "shot_type"),
    ],
)
def test_bad_bodies_get_code_1201(kling: SandboxHandle, change: dict[str, Any], needle: str) -> None:
    answer = post(kling, T2V, body(**change))
    assert answer.status_code == 400
    assert answer.json()["code"] == 1201 and needle in answer.json()["message"]


def test_a_task_is_read_by_either_id_and_an_external_id_is_taken_once(kling: SandboxHandle) -> None:
    created = post(kling, T2V, body(external_task_id="ext-once")).json()["data"]
    assert created["task_status"] == "submitted"
    assert created["task_info"] == {"external_task_id": "ext-once"}
    by_id = httpx.get(f"{kling.origin}{T2V}/{created['task_id']}", headers=bearer()).json()["data"]
    by_external = httpx.get(f"{kling.origin}{T2V}/ext-once", headers=bearer()).json()["data"]
    assert by_id["task_id"] == by_external["task_id"] == created["task_id"]
    again = post(kling, T2V, body(external_task_id="ext-once"))
    assert again.status_code == 400 and "already exists" in again.json()["message"]
    missing = httpx.get(f"{kling.origin}{T2V}/no-such-task", headers=bearer())
    assert missing.status_code == 404 and missing.json()["code"] == 1203
    other_path = httpx.get(f"{kling.origin}/v1/videos/image2video/ext-once", headers=bearer())
    assert other_path.status_code == 404


def test_a_storyboard_is_accepted_and_billed_once_finished(kling: SandboxHandle) -> None:
    shots = [
        {"index": 1, "prompt": "door opens", "duration": "1"},
        {"index": 2, "prompt": "she smiles", "duration": "2"},
    ]
    created = post(kling, T2V, body(multi_shot=True, shot_type="customize", multi_prompt=shots)).json()[
        "data"
    ]
    deadline = time.monotonic() + 60
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = httpx.get(f"{kling.origin}{T2V}/{created['task_id']}", headers=bearer()).json()["data"]
        if data["task_status"] in ("succeed", "failed"):
            break
        time.sleep(0.05)
    assert data["task_status"] == "succeed"
    assert data["task_result"]["videos"][0]["url"].endswith(f"/videos/{created['task_id']}.mp4")
    entry = next(e for e in kling.ledger() if e.request_id == created["task_id"])
    assert entry.charged and entry.duration == 3


def test_image_to_video_takes_raw_base64(kling: SandboxHandle, tmp_path: Path) -> None:
    png = tmp_path / "start.png"
    ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=64x36:d=1", "-frames:v", "1", "-y", str(png)])
    raw = base64.b64encode(png.read_bytes()).decode()
    assert image_input(raw).kind == "data-uri" and image_input(raw).problem is None
    answer = post(kling, "/v1/videos/image2video", body(image=raw))
    assert answer.status_code == 200, answer.text
    logged = next(r for r in kling.requests() if r["request_id"] == answer.json()["data"]["task_id"])
    assert logged["images"]["image"]["kind"] == "data-uri"
    assert raw not in str(logged)  # the log keeps a digest, never the image


def test_no_balance_is_kling_code_1102(tmp_path: Path) -> None:
    with run_sandbox(config(balance_usd=Decimal("0.10"))) as handle:
        answer = post(handle, T2V, body())
    assert answer.status_code == 429 and answer.json()["code"] == 1102


def test_a_dropped_submit_answer_still_made_the_task() -> None:
    with run_sandbox(config(faults=FaultConfig(submit_drop=1.0))) as handle:
        with pytest.raises(httpx.RemoteProtocolError):
            post(handle, T2V, body(external_task_id="lost-1"))
        found = httpx.get(f"{handle.origin}{T2V}/lost-1", headers=bearer())
    assert found.status_code == 200 and found.json()["data"]["task_info"]["external_task_id"] == "lost-1"


def test_parse_body_reads_a_storyboard() -> None:
    shots = [{"index": 1, "prompt": "a", "duration": "2"}, {"index": 2, "prompt": "b", "duration": "3"}]
    fields, problem = parse_body(
        "text2video", body(duration="5", multi_shot=True, shot_type="customize", multi_prompt=shots)
    )
    assert problem is None
    assert fields["shots"] == (("a", 2), ("b", 3))
