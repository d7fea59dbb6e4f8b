"""Submit-body validation the way the Model API does it: every problem, as 422 detail items."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.generation import MAX_PROMPT_CHARS
from pipeline.pricing import Tier
from pipeline.providers.sandbox.inputs import parse_model_id, validate_input


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("kling/kling-3.0/pro/image-to-video", (Tier.PRO, "image-to-video")),
        ("/kling/kling-3.0/4k/text-to-video/", (Tier.K4, "text-to-video")),
        ("kling/kling-3.0/ultra/text-to-video", None),
        ("kling/kling-2.6/pro/text-to-video", None),
        ("kling/kling-3.0/pro/video-to-video", None),
        ("kling/kling-3.0/pro", None),
    ],
)
def test_parse_model_id(model_id: str, expected: tuple[Tier, str] | None) -> None:
    assert parse_model_id(model_id) == expected


def test_a_minimal_body_gets_the_documented_defaults() -> None:
    inp, problems = validate_input(Tier.STANDARD, "text-to-video", {"prompt": "a kite"})

    assert problems == [] and inp is not None
    assert (inp.duration, inp.aspect_ratio, inp.cfg_scale, inp.generate_audio) == (5, "16:9", 0.5, False)
    assert inp.seed is None and inp.negative_prompt is None and inp.start_image_url is None


def test_every_problem_is_reported_not_just_the_first() -> None:
    body: dict[str, Any] = {
        "prompt": "  ",
        "duration": 16,
        "aspect_ratio": "2:1",
        "cfg_scale": True,
        "generate_audio": "yes",
        "seed": -1,
        "negative_prompt": 3,
    }

    inp, problems = validate_input(Tier.PRO, "text-to-video", body)

    assert inp is None
    assert [p["loc"] for p in problems] == [
        ["body", f]
        for f in (
            "prompt",
            "duration",
            "aspect_ratio",
            "cfg_scale",
            "generate_audio",
            "seed",
            "negative_prompt",
        )
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
        ({"prompt": "p", "duration": 2}, "duration"),
        ({"prompt": "p", "duration": True}, "duration"),  # a bool is not an integer
        ({"prompt": "p", "duration": 5.0}, "duration"),
        ({"prompt": "p", "seed": False}, "seed"),
        ({"prompt": "p", "cfg_scale": 1.5}, "cfg_scale"),
    ],
)
def test_out_of_range_values_are_refused(body: dict[str, Any], field: str) -> None:
    inp, problems = validate_input(Tier.STANDARD, "text-to-video", body)

    assert inp is None and [p["loc"] for p in problems] == [["body", field]]


def test_a_non_object_body_is_one_problem() -> None:
    inp, problems = validate_input(Tier.STANDARD, "text-to-video", ["prompt"])

    assert inp is None and problems == [
        {"loc": ["body"], "msg": "body must be a JSON object", "type": "type_error"}
    ]


def test_image_to_video_takes_either_spelling_of_the_image_fields() -> None:
    body = {
        "prompt": "p",
        "image_url": "https://a.example/s.png",
        "tail_image_url": "https://a.example/e.png",
    }

    inp, problems = validate_input(Tier.PRO, "image-to-video", body)

    assert problems == [] and inp is not None
    assert inp.start_image_url == "https://a.example/s.png" and inp.end_image_url == "https://a.example/e.png"


def test_image_to_video_needs_a_start_image_and_text_to_video_drops_images() -> None:
    _, problems = validate_input(Tier.PRO, "image-to-video", {"prompt": "p"})
    assert problems == [
        {"loc": ["body", "start_image_url"], "msg": "field required for image-to-video", "type": "missing"}
    ]

    inp, _ = validate_input(Tier.PRO, "text-to-video", {"prompt": "p", "start_image_url": "https://a/s.png"})
    assert inp is not None and inp.start_image_url is None


def test_a_non_string_image_is_refused() -> None:
    inp, problems = validate_input(Tier.PRO, "image-to-video", {"prompt": "p", "start_image_url": 42})

    assert inp is None and [p["loc"] for p in problems] == [["body", "start_image_url"]]
