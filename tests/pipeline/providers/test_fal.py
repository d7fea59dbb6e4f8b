"""The fal adapter against a scripted queue (httpx MockTransport): no sockets, no ffmpeg."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import AuthError, BadRequest, NoBalance, SubmitOutcomeUnknown
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers.base import JobState
from pipeline.providers.fal import FalProvider, KeyAuth, check_spec, voice_source_url
from pipeline.providers.fal_settings import FalSettings
from tests.pipeline.providers.conftest import run

QUEUE = "https://queue.fal.run"
KEY = "fal-key-123:secret"
BASE = f"{QUEUE}/fal-ai/kling-video/requests"
Handler = Callable[[httpx.Request], httpx.Response]


def settings(**kw: Any) -> FalSettings:
    return FalSettings(key=SecretStr(KEY), max_attempts=3, **kw)


def spec(**kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {"tier": Tier.PRO, "prompt": "a kite over a beach", "duration": 5}
    values.update(kw)
    return GenerationSpec(**values)


def provider(handler: Handler, **kw: Any) -> FalProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FalProvider(settings(**kw), http_client=client)


def submitted(rid: str = "r1") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "request_id": rid,
            "response_url": f"{BASE}/{rid}",
            "status_url": f"{BASE}/{rid}/status",
            "cancel_url": f"{BASE}/{rid}/cancel",
        },
    )


def test_submit_posts_the_body_to_the_app_with_the_key_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return submitted()

    sub = run(provider(handler).submit(spec()))
    assert sub.request_id == "r1" and sub.model_id == "fal-ai/kling-video/v3/pro/text-to-video"
    assert str(seen[0].url) == f"{QUEUE}/fal-ai/kling-video/v3/pro/text-to-video"
    assert seen[0].headers["authorization"] == f"Key {KEY}"
    assert json.loads(seen[0].content)["duration"] == "5"


def test_a_lost_submit_answer_is_unknown_and_never_resent() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("lost", request=request)

    with pytest.raises(SubmitOutcomeUnknown):
        run(provider(handler).submit(spec()))
    assert calls == 1  # fal's own client would retry this (client.py _should_retry): not ours


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_to_a_submit_is_unknown(status: int) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"detail": "oops"})

    with pytest.raises(SubmitOutcomeUnknown):
        run(provider(handler).submit(spec()))
    assert calls == 1


def test_a_submit_refused_with_429_or_never_sent_is_retried() -> None:
    answers = iter(["connect", "429", "ok"])

    def handler(request: httpx.Request) -> httpx.Response:
        what = next(answers)
        if what == "connect":
            raise httpx.ConnectError("refused", request=request)
        if what == "429":
            return httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "0"})
        return submitted("r9")

    assert run(provider(handler).submit(spec())).request_id == "r9"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"detail": "No key"}, AuthError),
        (403, {"detail": "Invalid key"}, AuthError),
        (403, {"detail": "User is locked. Reason: Exhausted balance. Top up your balance."}, NoBalance),
        (422, {"detail": [{"loc": ["body", "duration"], "msg": "bad", "type": "enum"}]}, BadRequest),
    ],
)
def test_refusals_map_to_the_error_tree(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        run(provider(lambda r: httpx.Response(status, json=body)).submit(spec()))
    assert KEY not in str(caught.value)


def test_status_words_and_a_failed_completion() -> None:
    answers = {
        "q": {"status": "IN_QUEUE", "queue_position": 3},
        "p": {"status": "IN_PROGRESS"},
        "c": {"status": "COMPLETED"},
        "f": {"status": "COMPLETED", "error": "NSFW", "error_type": "content"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        rid = request.url.path.split("/")[-2]
        assert request.url.path == f"/fal-ai/kling-video/requests/{rid}/status"
        return httpx.Response(200, json=answers[rid])

    fal = provider(handler)
    states = [run(fal.status(rid)).state for rid in "qpcf"]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED, JobState.FAILED]
    failed = run(fal.result("f"))
    assert failed.state is JobState.FAILED and failed.error == "NSFW"


def test_result_reads_the_video_url_once_completed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED"})
        return httpx.Response(200, json={"video": {"url": "https://v3.fal.media/files/x.mp4"}})

    res = run(provider(handler).result("r1"))
    assert res.state is JobState.COMPLETED and res.video_url == "https://v3.fal.media/files/x.mp4"


def test_result_of_a_running_request_makes_no_result_call() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"status": "IN_PROGRESS"})

    assert run(provider(handler).result("r1")).state is JobState.RUNNING
    assert paths == ["/fal-ai/kling-video/requests/r1/status"]


@pytest.mark.parametrize(
    ("before", "answer", "cancelled", "billing"),
    [
        ("IN_QUEUE", (202, "CANCELLATION_REQUESTED"), True, False),
        ("IN_PROGRESS", (202, "CANCELLATION_REQUESTED"), False, True),
        ("COMPLETED", (400, "ALREADY_COMPLETED"), False, True),
    ],
)
def test_cancel_is_honest_about_running_requests(
    before: str, answer: tuple[int, str], cancelled: bool, billing: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            assert request.url.path == "/fal-ai/kling-video/requests/r1/cancel"
            return httpx.Response(answer[0], json={"status": answer[1]})
        return httpx.Response(200, json={"status": before})

    outcome = run(provider(handler).cancel("r1"))
    assert (outcome.cancelled, outcome.still_billing) == (cancelled, billing)


def test_a_voice_file_becomes_a_fal_voice_once(tmp_path: Path) -> None:
    clip = tmp_path / "mara.wav"
    clip.write_bytes(b"RIFF0000WAVE")
    bodies: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            bodies.append((request.url.path, json.loads(request.content)))
            return submitted("v1" if request.url.path.endswith("create-voice") else "g1")
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED"})
        return httpx.Response(200, json={"voice_id": "829877809978941442"})

    mara = ElementRef("mara", "a woman", ("https://x.example/m.png",), voice=str(clip))
    storyboard = spec(
        generate_audio=True,
        duration=5,
        shots=(ShotPrompt("@mara waves", 2), ShotPrompt('@mara says: "hi"', 3)),
        elements=(mara,),
    )
    fal = provider(handler)

    async def twice() -> None:
        await asyncio.gather(fal.submit(storyboard), fal.submit(storyboard))  # at once

    run(twice())
    paths = [p for p, _ in bodies]
    assert paths.count("/fal-ai/kling-video/create-voice") == 1  # created once, paid once
    assert bodies[0][1]["voice_url"].startswith("data:audio/")
    body = bodies[1][1]
    assert body["voice_ids"] == ["829877809978941442"]
    assert body["multi_prompt"][0]["prompt"] == "@Element1 <<<voice_1>>> waves"


def test_preflight_needs_a_key_and_refuses_what_fal_does_not_sell() -> None:
    fal = FalProvider(FalSettings(key=None), http_client=httpx.AsyncClient())
    with pytest.raises(AuthError):
        run(fal.preflight([spec()]))
    assert check_spec(spec(tier=Tier.K4))
    assert check_spec(spec(aspect_ratio="21:9"))
    assert check_spec(spec(duration=6, shots=(ShotPrompt("a", 2), ShotPrompt("b", 3))))
    assert not check_spec(spec(duration=5, shots=(ShotPrompt("a", 2), ShotPrompt("b", 3))))


def test_the_key_never_shows_and_never_reaches_the_cdn(tmp_path: Path) -> None:
    auth = KeyAuth(SecretStr(KEY))
    assert KEY not in repr(auth)
    seen: list[httpx.Request] = []

    def cdn(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    fal = FalProvider(
        settings(),
        http_client=httpx.AsyncClient(),
        download_client=httpx.AsyncClient(transport=httpx.MockTransport(cdn)),
    )
    assert KEY not in repr(fal)
    with pytest.raises(Exception):  # noqa: B017,PT011 - the 404 is the download's business
        run(fal.download("https://v3.fal.media/files/x.mp4", tmp_path / "x.mp4", spec()))
    assert seen and all("authorization" not in r.headers for r in seen)


def test_a_client_with_a_default_authorization_header_is_refused() -> None:
    with pytest.raises(Exception, match="Authorization"):
        FalProvider(settings(), http_client=httpx.AsyncClient(headers={"Authorization": "Key x"}))


def test_voice_sources() -> None:
    assert voice_source_url("https://cdn.example/v.wav") == "https://cdn.example/v.wav"
    with pytest.raises(Exception, match="voice"):
        voice_source_url("/no/such/voice.wav")


FAL_SCRIPT = """\
version: 1
name: fal-e2e
provider: fal
defaults: {audio: true, style: "rehearsal card"}
elements:
  ines:
    description: "a lighthouse keeper in a green coat"
    images: [ines.png]
    voice: ines.wav
  tom:
    description: "a boy with a kite"
    images: [tom.png]
narratives:
  - id: lighthouse
    continuity: chain
    shots:
      - {duration: 3, action: "@tom runs along the pier"}
      - {duration: 2, action: "the kite climbs"}
      - {duration: 2, action: "@ines opens the lamp room"}
      - {duration: 2, action: "waves hit the rocks"}
      - {duration: 2, action: "@tom waves", dialogue: [{speaker: tom, line: "Look up!"}]}
      - {duration: 2, action: "@ines waves back"}
      - {duration: 13, action: "@ines climbs the stairs", dialogue: [{speaker: ines, line: "Storm tonight."}]}
      - {duration: 14, action: "@tom reels the kite in at dusk"}
budget: {limit_usd: 60}
output: {archive: ARCHIVE}
"""


@pytest.mark.slow
def test_a_script_rehearses_end_to_end_on_fal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14's end-to-end run on fal's rehearsal sandbox (no FAL_KEY): masters of the scripted
    length, native multi_prompt with the scripted seconds, element images sent, spend = ledger."""
    from decimal import Decimal

    from pipeline.media.run import ffmpeg
    from pipeline.planning.plan import build_plan
    from pipeline.render.session import open_run
    from pipeline.render.settings import RunSettings
    from pipeline.script.loader import load_script
    from tests.pipeline.providers.conftest import solid_png

    monkeypatch.delenv("FAL_KEY", raising=False)
    solid_png(tmp_path / "ines.png", "green", "320x320")
    solid_png(tmp_path / "tom.png", "orange", "320x320")
    ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:duration=6", "-y", str(tmp_path / "ines.wav")])
    script = FAL_SCRIPT.replace("ARCHIVE", str(tmp_path / "archive"))  # never ./renders
    (tmp_path / "script.yaml").write_text(script, encoding="utf-8")
    run_settings = RunSettings(
        runs_dir=tmp_path / "runs", sandbox_latency_scale=0.01, sandbox_render_scale=0.1
    )

    async def rehearse() -> tuple[Any, Any, list[dict[str, Any]]]:
        loaded = load_script(tmp_path / "script.yaml")
        plan = build_plan(loaded.script, provider="fal")
        async with open_run(
            loaded, plan, run_id="fal", settings=run_settings, provider="fal", rehearse=True
        ) as s:
            outcome = await s.run.execute()
            handle: Any = s.provider.sandbox
            return outcome, handle.ledger(), handle.requests()

    result, ledger, requests = asyncio.run(rehearse())
    assert result.delivered, ([m.error for m in result.undelivered], result.archive_error, result.archive)
    sent = [r for r in requests if not r["refused"]]
    assert {r["dialect"] for r in sent} == {"fal"} and len(ledger) == len(sent) == len(result.jobs)
    assert all(e.charge_count == 1 and e.dialect == "fal" for e in ledger)
    assert [3, 2, 2, 2, 2, 2] in [r["shots"] for r in sent]  # the 6-shot segment, native
    with_images = [r for r in sent if r["elements"]]
    assert with_images and all(i["kind"] == "data-uri" for r in with_images for e in r["elements"] for i in e)
    assert any(r["voices"] == 1 for r in sent)  # the script's voice file became a fal voice
    scripted = 3 + 2 + 2 + 2 + 2 + 2 + 13 + 14  # 40 s
    assert result.masters
    for master in result.masters:
        # Chained segments are joined by crossfades: each one shortens the master a little.
        assert scripted - 3 <= master.duration_s <= scripted + 0.5, master
    charged = sum((e.cost_usd for e in ledger if e.charged), Decimal(0))
    assert sum((j.clip.cost for j in result.jobs if j.clip), Decimal(0)) == charged
