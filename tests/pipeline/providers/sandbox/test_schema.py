"""The model catalogue: published JSON Schemas, and validation against them."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.pricing import Tier
from pipeline.providers.sandbox.schema import input_schema, list_models, model_info, schema_problems


def kinds(problems: list[dict[str, Any]]) -> dict[str, str]:
    return {p["loc"][-1]: p["type"] for p in problems}


def test_a_full_valid_body_passes() -> None:
    body = {
        "prompt": "Shot 1: a kite",
        "negative_prompt": "blur",
        "duration": 15,
        "cfg_scale": 1,
        "generate_audio": True,
        "seed": 0,
        "start_image_url": "https://x.example/a.png",
        "end_image_url": "data:image/png;base64,AAAA",
    }
    assert schema_problems(input_schema("image-to-video", strict=True), body) == []
    assert (
        schema_problems(input_schema("text-to-video", strict=True), {"prompt": "x", "aspect_ratio": "21:9"})
        == []
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"prompt": "missing"}),
        ({"prompt": ""}, {"prompt": "string_too_short"}),
        ({"prompt": "x" * 2501}, {"prompt": "string_too_long"}),
        ({"prompt": "x", "duration": 2}, {"duration": "greater_than_equal"}),
        ({"prompt": "x", "duration": 5.0}, {"duration": "int_type"}),
        ({"prompt": "x", "duration": True}, {"duration": "int_type"}),
        ({"prompt": "x", "cfg_scale": "0.5"}, {"cfg_scale": "float_type"}),
        ({"prompt": "x", "cfg_scale": 1.5}, {"cfg_scale": "less_than_equal"}),
        ({"prompt": "x", "aspect_ratio": "5:4"}, {"aspect_ratio": "enum"}),
        ({"prompt": "x", "seed": -1}, {"seed": "greater_than_equal"}),
        ({"prompt": "x", "seed": None}, {"seed": "int_type"}),
        (
            {"prompt": 3, "extra": 1, "other": 2},
            {"prompt": "string_type", "extra": "extra_forbidden", "other": "extra_forbidden"},
        ),
    ],
)
def test_every_problem_is_reported(body: dict[str, Any], expected: dict[str, str]) -> None:
    assert kinds(schema_problems(input_schema("text-to-video", strict=True), body)) == expected


def test_extra_field_detail_reads_like_the_api() -> None:
    (problem,) = schema_problems(input_schema("text-to-video", strict=True), {"prompt": "x", "foo": 1})
    assert problem == {"loc": ["body", "foo"], "msg": "extra fields not permitted", "type": "extra_forbidden"}
    assert schema_problems(input_schema("text-to-video", strict=True), [1]) == [
        {"loc": ["body"], "msg": "Input should be a valid JSON object", "type": "model_type"}
    ]


def test_lenient_schema_describes_what_the_lenient_sandbox_takes() -> None:
    schema = input_schema("image-to-video", strict=False)
    assert schema["additionalProperties"] is True and schema["required"] == ["prompt"]
    assert {"aspect_ratio", "image_url", "tail_image_url", "start_image_url"} <= set(schema["properties"])
    assert schema_problems(schema, {"prompt": "x", "image_url": "u", "unknown": 1}) == []


def test_model_info_prices_come_from_the_price_table() -> None:
    info = model_info("kling/kling-3.0/standard/text-to-video", Tier.STANDARD, "text-to-video", strict=True)
    assert info["base_price_usd"] == 0.084 and info["price_unit"] == "second"
    assert "0.126" in info["pricing_note"]


def test_list_models_search_is_case_insensitive_and_counts_before_paging() -> None:
    found = list_models(strict=True, search="4K", category=None, include_schema=False, limit=1, offset=1)
    assert found["total"] == 2
    assert [m["model_id"] for m in found["models"]] == ["kling/kling-3.0/4k/image-to-video"]
    assert list_models(
        strict=True, search="nothing", category=None, include_schema=False, limit=5, offset=0
    ) == {
        "models": [],
        "total": 0,
    }
