"""Kling's own API: each fact the adapter relies on, with the source it comes from.

Sources:

- [GI] Kling API "General Information" (app.klingai.com/global/dev/document-api/apiReference/
  commonInfo; read via a mirror of the page and a repository copy of its error table): JWT HS256
  with iss = access key, exp = now + 1800, nbf = now - 5, ``Authorization: Bearer <token>``;
  the service-code table (HTTP status, code).
- [SDK] The Vercel AI SDK's Kling provider, ``vercel/ai`` ``packages/klingai/src``:
  ``klingai-auth.ts`` (the token), ``klingai-provider.ts`` (default base URL, bearer header),
  ``klingai-video-model.ts`` (paths, ``model_name``, body fields, answer schemas, status words),
  ``klingai-video-model-options.ts`` (mode std/pro, sound on/off, multi_shot + shot_type +
  multi_prompt with string durations, at most 6 shots of 512 characters).
- [CT] Kling API "Create Task" for text2video (the page's example body carries
  ``external_task_id`` and ``callback_url``; the answer echoes ``task_info.external_task_id``),
  and "Query Task (Single)" (``GET /v1/videos/text2video/{id}``: task_id or external_task_id);
  its parameter table as mirrored in docs.anyfast.ai/api-reference/model-api/kuaishou/kling-v1-t2v
  (aspect_ratio 16:9, 9:16, 1:1; external_task_id "must be unique per account").
- [EL] Kling API "General — Create Element" and "Query Custom Element": as mirrored in
  docs.anyfast.ai/api-reference/model-api/kuaishou/kling-element-create and ``kling-element-query``
  (``POST /v1/general/advanced-custom-elements``; ``reference_type: image_refer``;
  ``element_image_list: {frontal_image, refer_images: [{image_url}]}``; ``tag_list: [{tag_id}]``
  with o_101…o_108, o_108 "Other"; the query ``GET …/{task_id}`` answers ``task_status``
  submitted/succeed/failed and ``task_result.elements[].element_id``, an integer, with
  ``final_unit_deduction: "0"``), and a capture of the official page's sections
  (``apiReference_model__element_sections.json``: element_name ≤ 20 characters,
  element_description ≤ 100, "at least one frontal reference image … and 1 to 3 additional
  reference images"). Free: the query's ``final_unit_deduction`` "0"; doc.ezmodel.cloud/en/kling/
  element.html ("Element APIs are treated as management endpoints: no billing");
  artcoreai.com/guides/v2-kling-elements-guide ("Creating elements is free").
- [EO] [SDK] ``klingai-video-model-options.ts``: ``elementList: [{element_id: number}]`` — "I2V:
  Up to 3 reference elements. Cannot coexist with voiceList"; docs.evolink.ai …/kling-custom-element:
  "element_id can be referenced in … Kling V3 Image-to-Video via the element_list parameter".
- [PG] How a prompt names an element: ``<<<element_1>>>`` for ``element_list[0]`` in Kling's
  Omni prompt guide (as quoted by a published prompt guide, "Kling 3.0 Omni 提示词写作指南");
  no page we read spells it out for 3.0 image2video, so it is the setting ``element_mention``.
  Whether the API accepts the frontal image repeated as the only reference image is not
  documented either: setting ``single_image_elements`` (``repeat`` or ``describe``).
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import jwt
import pytest

from pipeline.errors import AuthError, BadRequest, NoBalance, RateLimited, UpstreamError
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers import kling_elements as ke
from pipeline.providers import kling_wire as kw
from pipeline.providers.base import JobState
from pipeline.providers.kling_settings import (
    DEFAULT_BASE_URL,
    DEFAULT_ELEMENT_MENTION,
    DEFAULT_ELEMENT_TAG,
    DEFAULT_MODEL_NAME,
    DEFAULT_TOKEN_TTL_S,
)

SECRET = "s" * 32  # long enough that PyJWT does not warn about the key length


def test_the_token_is_hs256_with_issuer_expiry_and_not_before() -> None:
    # [GI] "API Authentication" Python example; [SDK] klingai-auth.ts (exp now+1800, nbf now-5).
    now = 1_700_000_000
    token = kw.sign_token("ak-1", SECRET, ttl_s=DEFAULT_TOKEN_TTL_S, now=now)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims == {"iss": "ak-1", "exp": now + 1800, "nbf": now - 5}


def test_defaults_come_from_the_sources() -> None:
    # [GI] "API Domain" (api-singapore for servers outside China); [SDK] klingai-provider.ts
    # defaultBaseURL; klingai-video-model.ts getApiModelName('kling-v3.0-t2v') == 'kling-v3'.
    assert DEFAULT_BASE_URL == "https://api-singapore.klingai.com"
    assert DEFAULT_MODEL_NAME == "kling-v3"
    assert DEFAULT_TOKEN_TTL_S == 1800  # [GI] exp = now + 1800 in the example


def test_text_to_video_body_with_a_native_storyboard() -> None:
    # [SDK] buildT2VBody + options: model_name, mode, duration as a string, sound on/off,
    # multi_shot + shot_type customize + multi_prompt [{index, prompt, duration (string)}],
    # aspect_ratio; [CT] external_task_id.
    spec = GenerationSpec(
        tier=Tier.PRO,
        prompt="prose",
        duration=8,
        generate_audio=True,
        shots=(ShotPrompt("@mara opens the door", 3), ShotPrompt("she smiles", 5)),
        external_id="job-1",
    )
    body = kw.build_body(spec, model_name="kling-v3")
    assert body == {
        "model_name": "kling-v3",
        "mode": "pro",
        "duration": "8",
        "multi_shot": True,
        "shot_type": "customize",
        "multi_prompt": [
            {"index": 1, "prompt": "mara opens the door", "duration": "3"},
            {"index": 2, "prompt": "she smiles", "duration": "5"},
        ],
        "sound": "on",
        "aspect_ratio": "16:9",
        "external_task_id": "job-1",
    }
    assert kw.kind_of(spec) == kw.TEXT2VIDEO


def test_image_to_video_body_takes_raw_base64_and_no_aspect_ratio() -> None:
    # [SDK] buildI2VBody: image / image_tail as a URL or raw base64 (fileToImageString), and
    # aspect_ratio unsupported on image-to-video (the image gives the shape).
    spec = GenerationSpec(
        tier=Tier.STANDARD,
        prompt="she waves",
        duration=5,
        start_image_url="data:image/png;base64,iVBORw0KGgo=",
        end_image_url="https://example.com/end.png",
    )
    body = kw.build_body(spec, model_name="kling-v3")
    assert body["image"] == "iVBORw0KGgo="
    assert body["image_tail"] == "https://example.com/end.png"
    assert body["prompt"] == "she waves" and body["sound"] == "off" and body["mode"] == "std"
    assert "aspect_ratio" not in body and "external_task_id" not in body
    assert kw.kind_of(spec) == kw.IMAGE2VIDEO


def test_documented_storyboard_limits_are_checked_before_any_money() -> None:
    # [SDK] klingai-video-model-options.ts: up to 6 shots, each prompt at most 512 characters,
    # shot durations summing to the total.
    shots = tuple(ShotPrompt("x" * 513 if k == 0 else "y", 1) for k in range(7))
    problems = kw.check_spec(GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5, shots=shots))
    assert any("at most 6" in p for p in problems)
    assert any("sum to 7 s" in p for p in problems)
    assert any("shot 1: prompt over 512" in p for p in problems)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("submitted", JobState.QUEUED),
        ("processing", JobState.RUNNING),
        ("succeed", JobState.COMPLETED),
        ("failed", JobState.FAILED),
    ],
)
def test_status_words(word: str, state: JobState) -> None:
    # [CT] / [SDK] klingaiTaskStatusSchema: task_status submitted | processing | succeed | failed.
    assert kw.Task("1", word).state is state


def test_a_finished_task_lists_its_videos_under_task_result() -> None:
    # [SDK] klingaiTaskStatusSchema: data.task_result.videos[{id, url, duration}], task_info.
    data = {
        "task_id": "8672",
        "task_status": "succeed",
        "task_info": {"external_task_id": "job-1"},
        "task_result": {"videos": [{"id": "v", "url": "https://cdn.klingai.com/v.mp4", "duration": "5"}]},
    }
    task = kw.task_of(data, "query")
    assert task == kw.Task("8672", "succeed", "job-1", None, ("https://cdn.klingai.com/v.mp4",))


def _answer(status: int, code: int) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": "m", "request_id": "r"})


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, 1000, AuthError),
        (401, 1004, AuthError),  # Authorization has expired
        (429, 1100, AuthError),  # account exception: stop
        (429, 1101, NoBalance),  # account in arrears (postpaid)
        (429, 1102, NoBalance),  # resource pack depleted or expired (prepaid)
        (403, 1103, AuthError),  # no access to this API/model
        (400, 1201, BadRequest),
        (400, 1301, BadRequest),  # content security policy
        (429, 1302, RateLimited),  # requests too fast: retry
        (429, 1303, RateLimited),  # concurrency over the resource pack's limit: retry
        (429, 1304, AuthError),  # IP whitelist: stop
        (500, 5000, UpstreamError),
        (503, 5001, UpstreamError),
        (504, 5002, UpstreamError),
    ],
)
def test_service_codes_map_to_the_error_tree(status: int, code: int, error: type[Exception]) -> None:
    # [GI] "Error Code": one HTTP 429 means "stop" (1100-1102, 1304) or "slow down" (1302, 1303).
    found = kw.error_of(_answer(status, code), operation="submit")
    assert type(found) is error
    assert found is not None and found.error_code == code


def test_code_zero_is_success() -> None:
    # [GI] "200 | 0 | Request successful".
    assert kw.error_of(_answer(200, 0), operation="query") is None


def test_text_to_video_takes_three_shapes() -> None:
    # [CT] aspect_ratio: 16:9, 9:16, 1:1 (image-to-video takes the image's own shape).
    assert kw.ASPECT_RATIOS == ("16:9", "9:16", "1:1")
    square = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5, aspect_ratio="1:1")
    assert kw.check_spec(square) == []
    wide = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5, aspect_ratio="21:9")
    assert kw.check_spec(wide) == ["aspect ratio 21:9: text2video takes 16:9, 9:16, 1:1"]


def _element(images: int = 2) -> ElementRef:
    urls = tuple(f"https://cdn.test/mara-{k}.png" for k in range(images))
    return ElementRef("a-very-long-element-name", "d" * 150, urls)


def test_an_element_is_created_with_a_frontal_image_and_one_to_three_others() -> None:
    # [EL] the create body: name ≤ 20, description ≤ 100, image_refer, frontal + 1-3 refer_images.
    body = ke.creation_body(_element(5), tag=DEFAULT_ELEMENT_TAG, image_value=kw.image_value)
    assert ke.ELEMENTS_PATH == "/v1/general/advanced-custom-elements"
    assert len(body["element_name"]) == 20 and len(body["element_description"]) == 100
    assert body["reference_type"] == "image_refer" and body["tag_list"] == [{"tag_id": "o_108"}]
    assert body["element_image_list"]["frontal_image"] == "https://cdn.test/mara-0.png"
    assert [r["image_url"] for r in body["element_image_list"]["refer_images"]] == [
        f"https://cdn.test/mara-{k}.png" for k in (1, 2, 3)
    ]


def test_the_creation_task_gives_the_element_id_when_it_succeeds() -> None:
    # [EL] the query answer's example (anyfast's kling-element-query), trimmed.
    data = {
        "task_id": "863121016086724692",
        "task_status": "succeed",
        "task_result": {"elements": [{"element_id": 863121023120580600, "status": "succeed"}]},
        "final_unit_deduction": "0",
    }
    task = ke.element_task_of(data, "query")
    assert (task.status, task.element_id) == ("succeed", 863121023120580600)


def test_element_list_goes_on_image_to_video_only_at_most_three_and_never_with_voices() -> None:
    # [EO] elementList: [{element_id: number}], I2V, up to 3, not with voiceList; [PG] the mention.
    elements = tuple(replace(_element(), name=n, description=n) for n in ("a", "b", "c", "d"))
    spec = GenerationSpec(
        tier=Tier.PRO,
        prompt="@a @b @c @d",
        duration=5,
        start_image_url="https://cdn.test/s.png",
        elements=elements,
    )
    body = kw.build_body(spec, model_name=DEFAULT_MODEL_NAME, element_ids={"a": 1, "b": 2, "c": 3})
    assert body["element_list"] == [{"element_id": 1}, {"element_id": 2}, {"element_id": 3}]
    assert body["prompt"] == "<<<element_1>>> <<<element_2>>> <<<element_3>>> d"
    assert "voice_list" not in body and DEFAULT_ELEMENT_MENTION == "<<<element_{n}>>>"
    text = kw.build_body(replace(spec, start_image_url=None), model_name=DEFAULT_MODEL_NAME)
    assert "element_list" not in text
