"""The price and input-schema checks of planned requests (no HTTP here)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import BadRequest, ConfigError
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.model_check import check_price, check_schema, schema_problems, value_problems
from pipeline.providers.wire import ModelInfo

PRO = GenerationSpec(tier=Tier.PRO, prompt="p", duration=5)


def info(**kw: Any) -> ModelInfo:
    values: dict[str, Any] = {"model_id": PRO.model_id, "base_price_usd": 0.112, "price_unit": "second", **kw}
    return ModelInfo.model_validate(values)


def test_matching_price_passes_with_and_without_an_audio_price() -> None:
    check_price(info(), PRO)
    check_price(info(price_with_audio_usd=0.168), PRO)
    check_price(info(base_price_usd="0.1120"), PRO)  # Decimal comparison, not text


@pytest.mark.parametrize(
    ("kw", "shown"),
    [
        ({"base_price_usd": 0.15}, ("$0.15/second", "$0.112/second")),
        ({"price_unit": "output"}, ("$0.112/output", "$0.112/second")),
        ({"price_with_audio_usd": 0.2}, ("$0.2/second with audio", "$0.168/second")),
    ],
)
def test_price_mismatch_names_both_prices(kw: dict[str, Any], shown: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        check_price(info(**kw), PRO)
    text = str(err.value)
    assert PRO.model_id in text and "pipeline/pricing.py" in text
    assert all(part in text for part in shown), text
    assert err.value.exit_code == 78


@pytest.mark.parametrize("kw", [{"base_price_usd": None}, {"price_unit": None}, {"base_price_usd": -1}])
def test_missing_or_unusable_price_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        check_price(info(**kw), PRO)


def test_a_boolean_is_not_a_price() -> None:
    with pytest.raises(ValueError, match="price"):
        info(base_price_usd=True)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "maxLength": 10},
        "duration": {"type": "integer", "minimum": 3, "maximum": 15},
        "cfg_scale": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "aspect_ratio": {"type": "string", "enum": ["16:9", "9:16"]},
        "generate_audio": {"type": "boolean"},
        "seed": {"type": ["integer", "null"]},
    },
    "required": ["prompt", "start_image_url"],
    "additionalProperties": False,
}


def test_a_fitting_body_has_no_problem() -> None:
    body = {
        "prompt": "a kite",
        "duration": 5,
        "cfg_scale": 0.5,
        "aspect_ratio": "16:9",
        "start_image_url": "x",
    }
    assert (
        schema_problems({**SCHEMA, "properties": {**SCHEMA["properties"], "start_image_url": {}}}, body) == []
    )


def test_every_problem_is_listed_by_field() -> None:
    body = {
        "prompt": "far too long a prompt",
        "duration": 20,
        "cfg_scale": 1,
        "aspect_ratio": "21:9",
        "generate_audio": 1,
        "seed": None,
        "elements": [],
    }
    problems = schema_problems(SCHEMA, body)
    fields = sorted(p.split(":")[0] for p in problems)
    assert fields == [
        "aspect_ratio",
        "cfg_scale",
        "duration",
        "elements",
        "generate_audio",
        "prompt",
        "start_image_url",
    ]


def test_unknown_fields_pass_unless_additional_properties_is_false() -> None:
    open_schema = {k: v for k, v in SCHEMA.items() if k != "additionalProperties"}
    assert not any(p.startswith("elements") for p in schema_problems(open_schema, {"elements": []}))


@pytest.mark.parametrize(
    ("rule", "value", "ok"),
    [
        ({"type": "integer"}, True, False),  # a JSON boolean is not an integer
        ({"type": "number"}, 5, True),
        ({"type": "float"}, 0.5, True),  # the catalog's spelling of number
        ({"enum": [1, 2]}, True, False),
        ({"enum": [5]}, 5.0, True),
        ({"type": "weird"}, "x", True),  # unknown keywords and types are not this checker's
        ({"minimum": 3}, 3, True),
        ({"exclusiveMinimum": 3}, 3, False),
    ],
)
def test_value_rules(rule: dict[str, Any], value: Any, ok: bool) -> None:
    assert (value_problems(rule, value) == []) is ok


def test_check_schema_raises_bad_request_with_counts() -> None:
    with_schema = info(input_schema=SCHEMA)
    bodies = [
        {"prompt": "ok", "duration": 20, "start_image_url": "x"},
        {"prompt": "ok", "start_image_url": "y"},
    ]
    with pytest.raises(BadRequest) as err:
        check_schema(with_schema, bodies)  # type: ignore[arg-type]
    text = str(err.value)
    assert err.value.exit_code == 65
    assert "duration: 20 is above the maximum 15 (1 of 2 requests)" in text
    assert "start_image_url: not a field of this model (2 of 2 requests)" in text
    assert PRO.model_id in text and "nothing was submitted" in text


def test_no_schema_means_no_schema_check() -> None:
    check_schema(info(), [{"anything": object()}])
    assert info(schema={"type": "object"}).input_schema == {"type": "object"}  # other spelling
    assert info().base_price_usd == Decimal("0.112")
