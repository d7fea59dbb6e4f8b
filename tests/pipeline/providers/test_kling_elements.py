"""Kling elements by id: created once per adapter (content-keyed, concurrent-safe), then referenced.

Facts about the element API are pinned (with sources) in test_kling_contract.py; these tests
drive the adapter over httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import BadRequest, UpstreamError
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers import kling_elements as ke
from pipeline.providers import kling_wire as kw
from pipeline.providers.kling import KlingProvider
from pipeline.providers.kling_settings import KlingSettings

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
MARA = ElementRef("mara", "woman, red hair", (f"data:image/png;base64,{PNG}",))
LEO = ElementRef(
    "leo", "old fisherman", ("https://cdn.test/leo-front.png?sig=1", "https://cdn.test/leo-side.png")
)
START = "https://cdn.test/start.png"


class ElementApi:
    """Kling's element and video endpoints, scripted: element tasks need ``polls`` looks."""

    def __init__(self, *, polls: int = 1, fail: bool = False) -> None:
        self.polls = polls
        self.fail = fail
        self.created: list[dict[str, Any]] = []
        self.videos: list[dict[str, Any]] = []
        self.looks: dict[str, int] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == ke.ELEMENTS_PATH:
            self.created.append(json.loads(request.content))
            task = f"el-task-{len(self.created)}"
            return self.answer({"task_id": task, "task_status": "submitted"})
        if path.startswith(ke.ELEMENTS_PATH + "/"):
            task = path.rsplit("/", 1)[1]
            self.looks[task] = self.looks.get(task, 0) + 1
            if self.looks[task] < self.polls:
                return self.answer({"task_id": task, "task_status": "processing"})
            if self.fail:
                return self.answer({"task_id": task, "task_status": "failed", "task_status_msg": "blurry"})
            number = int(task.rsplit("-", 1)[1])
            result = {"elements": [{"element_id": 7000 + number, "status": "succeed"}]}
            return self.answer({"task_id": task, "task_status": "succeed", "task_result": result})
        self.videos.append(json.loads(request.content))
        return self.answer({"task_id": f"video-{len(self.videos)}", "task_status": "submitted"})

    @staticmethod
    def answer(data: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})


def provider(api: ElementApi, **overrides: Any) -> KlingProvider:
    values: dict[str, Any] = {
        "access_key": SecretStr("ak"),
        "secret_key": SecretStr("k" * 40),
        "base_url": "https://api.test.klingai.com",
        "element_poll_s": 0.001,
        **overrides,
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    return KlingProvider(KlingSettings(**values), http_client=client)


def i2v(*elements: ElementRef, **kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {
        "tier": Tier.PRO,
        "prompt": "Shot 1: @mara (woman, red hair) waves at @leo (old fisherman).",
        "duration": 5,
        "start_image_url": START,
        "elements": elements,
        "external_id": "run-job-1",
        **kw,
    }
    return GenerationSpec(**values)


def test_elements_are_created_then_referenced_by_id_in_order() -> None:
    api = ElementApi(polls=3)
    adapter = provider(api)
    asyncio.run(adapter.submit(i2v(MARA, LEO)))
    assert [c["element_name"] for c in api.created] == ["mara", "leo"]
    mara = api.created[0]
    assert mara["reference_type"] == "image_refer" and mara["element_description"] == "woman, red hair"
    # One image: it is the frontal image and, repeated, its reference (the API wants 1-3 others).
    assert mara["element_image_list"] == {"frontal_image": PNG, "refer_images": [{"image_url": PNG}]}
    assert api.created[1]["element_image_list"]["refer_images"] == [
        {"image_url": "https://cdn.test/leo-side.png"}
    ]
    assert api.looks == {"el-task-1": 3, "el-task-2": 3}  # polled until succeed
    (video,) = api.videos
    assert video["element_list"] == [{"element_id": 7001}, {"element_id": 7002}]
    assert (
        video["prompt"]
        == "Shot 1: <<<element_1>>> (woman, red hair) waves at <<<element_2>>> (old fisherman)."
    )
    assert "voice_list" not in video


def test_concurrent_submits_create_each_element_once_and_later_ones_reuse_it() -> None:
    api = ElementApi(polls=2)
    adapter = provider(api)

    async def main() -> None:
        await asyncio.gather(*(adapter.submit(i2v(MARA, LEO, external_id=f"job-{k}")) for k in range(4)))
        await adapter.submit(i2v(LEO, external_id="job-last"))

    asyncio.run(main())
    assert len(api.created) == 2 and adapter.elements.created == 2
    assert len(api.videos) == 5
    assert api.videos[-1]["element_list"] == [{"element_id": adapter.elements.known(LEO)}]
    # The same images and description under a new presigned URL are the same element.
    assert adapter.elements.known(
        replace(LEO, image_urls=("https://cdn.test/leo-front.png?sig=2", LEO.image_urls[1]))
    )


def test_a_storyboard_names_elements_in_each_shot() -> None:
    api = ElementApi()
    shots = (ShotPrompt("Close-up: @mara looks up", 2), ShotPrompt("@leo and @mara laugh", 3))
    asyncio.run(provider(api).submit(i2v(MARA, LEO, shots=shots)))
    prompts = [s["prompt"] for s in api.videos[0]["multi_prompt"]]
    assert prompts == ["Close-up: <<<element_1>>> looks up", "<<<element_2>>> and <<<element_1>>> laugh"]


def test_text_to_video_and_elements_past_the_limit_go_as_descriptions() -> None:
    body = kw.build_body(replace(i2v(MARA, LEO), start_image_url=None), model_name="kling-v3")
    assert "element_list" not in body and "<<<" not in body["prompt"] and "@" not in body["prompt"]
    shots = (ShotPrompt("@mara rows", 2), ShotPrompt("@leo and @mara sing", 3))
    one = kw.build_body(
        i2v(MARA, LEO, shots=shots), model_name="kling-v3", max_elements=1, element_ids={"mara": 1}
    )
    assert one["element_list"] == [{"element_id": 1}]
    assert [s["prompt"] for s in one["multi_prompt"]] == [
        "<<<element_1>>> rows",
        "leo (old fisherman) and <<<element_1>>> sing",  # described at its first mention only
    ]


def test_single_image_elements_can_be_sent_in_words_instead() -> None:
    body = kw.build_body(i2v(MARA, LEO), model_name="kling-v3", single_image="describe")
    assert [e["create"]["element_name"] for e in body["element_list"]] == ["leo"]
    # The prose prompt has the description inlined already: the mention becomes the name.
    assert body["prompt"].startswith("Shot 1: mara (woman, red hair) waves at <<<element_1>>> (old")


def test_the_plan_body_shows_what_an_element_not_yet_created_will_be_made_of() -> None:
    adapter = provider(ElementApi())
    (entry,) = adapter.build_body(i2v(LEO))["element_list"]
    assert entry["element_id"] is None
    assert entry["create"]["element_image_list"]["frontal_image"] == LEO.image_urls[0]
    asyncio.run(adapter.submit(i2v(LEO)))
    assert adapter.build_body(i2v(LEO))["element_list"] == [{"element_id": 7001}]


def test_a_mention_template_from_settings_is_used() -> None:
    api = ElementApi()
    asyncio.run(provider(api, element_mention="[element {n}]").submit(i2v(MARA)))
    assert api.videos[0]["prompt"].startswith("Shot 1: [element 1] (woman, red hair)")
    with pytest.raises(ValueError, match=r"\{n\}"):
        KlingSettings(element_mention="<<<element>>>")


def test_a_refused_element_fails_the_request_before_any_video_is_bought() -> None:
    api = ElementApi(fail=True)
    with pytest.raises(BadRequest, match=r"create element mara.*blurry"):
        asyncio.run(provider(api).submit(i2v(MARA)))
    assert api.videos == []


def test_preflight_counts_the_rewritten_mentions_in_a_shots_length() -> None:
    # "<<<element_1>>>" is 10 characters longer than "@mara": 505 characters become 515, over 512.
    fits = ShotPrompt("@mara " + "x" * 494, 2)
    over = ShotPrompt("@mara " + "x" * 499, 2)
    assert kw.check_spec(i2v(MARA, shots=(fits, ShotPrompt("@mara", 3)))) == []
    with pytest.raises(BadRequest, match="shot 1: prompt over 512"):
        asyncio.run(provider(ElementApi()).preflight([i2v(MARA, shots=(over, ShotPrompt("@mara", 3)))]))


def test_an_answer_without_a_task_or_an_element_id_is_unreadable() -> None:
    with pytest.raises(UpstreamError, match=r"no data\.task_id"):
        ke.element_task_of({"task_status": "succeed"}, "create element x")
    assert ke.element_task_of({"task_id": "t", "task_status": "succeed"}, "x").element_id is None
    assert ke.element_key(MARA) != ke.element_key(replace(MARA, description="someone else"))
