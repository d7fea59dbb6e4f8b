"""The sandbox's model catalog: each Kling 3.0 model's JSON Schema, price and info answer.

``GET /v1/models/{model_id}`` answers ``{model_id, display_name, categories, base_price_usd,
price_unit, input_schema, ...}`` and ``GET /v1/models`` ``{models: [...], total}``: the fields the
official clients read (runcomfy-com/runcomfy-cli ``src/cmd/models.rs`` prints ``model_id``,
``display_name``, ``categories``, ``base_price_usd``/``price_unit``; the partner nodes'
``runcomfy/pricing.py`` checks ``model_id``, ``price_unit`` and a numeric ``base_price_usd``).

A realistic sandbox validates a submit against the strict schema with :func:`schema_problems`
(the schema is the single source, so what it publishes is what it enforces); the lenient one
publishes what it really accepts: extra fields ignored, both image-field spellings.
"""

from __future__ import annotations

import math
from typing import Any, Final

from pipeline.generation import ASPECT_RATIOS, MAX_DURATION, MAX_PROMPT_CHARS, MIN_DURATION
from pipeline.pricing import Tier, rate
from pipeline.providers.sandbox.inputs import MODES

TIER_NAMES: Final = {Tier.STANDARD: "Standard", Tier.PRO: "Pro", Tier.K4: "4K"}
MODE_NAMES: Final = {"text-to-video": "Text to Video", "image-to-video": "Image to Video"}
MODELS: Final = tuple((tier, mode) for tier in Tier for mode in MODES)

_IMAGE_URL: Final = {
    "type": "string",
    "description": "A public https:// URL or a data:image/png|jpeg;base64, URI (at most 6 MiB).",
}


def input_schema(mode: str, *, strict: bool) -> dict[str, Any]:
    """The JSON Schema of a Kling 3.0 ``mode``'s submit body (strict: as a realistic sandbox enforces)."""
    properties: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
        "negative_prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS},
        "duration": {"type": "integer", "minimum": MIN_DURATION, "maximum": MAX_DURATION, "default": 5},
        "aspect_ratio": {"type": "string", "enum": list(ASPECT_RATIOS), "default": "16:9"},
        "cfg_scale": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "generate_audio": {"type": "boolean", "default": False},
        "seed": {"type": "integer", "minimum": 0},
    }
    required = ["prompt"]
    if mode == "image-to-video":
        if strict:
            # Whether the hosted image-to-video endpoints accept aspect_ratio is unverified
            # (shared/docs/provider-api.md): the picture's shape comes from the start image.
            # A realistic sandbox refuses it, so a client that sends it finds out for free.
            del properties["aspect_ratio"]
        properties["start_image_url"] = dict(_IMAGE_URL)
        # The end-image field name is unverified too; end_image_url is RunComfy's spelling.
        properties["end_image_url"] = dict(_IMAGE_URL)
        required.append("start_image_url")
        if not strict:
            properties["image_url"] = dict(_IMAGE_URL)
            properties["tail_image_url"] = dict(_IMAGE_URL)
            required.remove("start_image_url")  # either spelling will do
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": not strict,
    }


def model_info(
    model_id: str, tier: Tier, mode: str, *, strict: bool, with_schema: bool = True
) -> dict[str, Any]:
    """The model-info answer of one model."""
    info: dict[str, Any] = {
        "model_id": model_id,
        "display_name": f"Kling 3.0 {TIER_NAMES[tier]} · {MODE_NAMES[mode]}",
        "categories": [mode],
        # The audio-off rate: the hosted API publishes one base price per model.
        "base_price_usd": float(rate(tier, False)),
        "price_unit": "second",
        "pricing_note": f"with generate_audio: ${rate(tier, True)}/second",
        # Not a documented field of the hosted API (its audio price has no published name):
        # kept so that a client can check the audio rate against the sandbox; clients that do
        # not know it ignore it.
        "price_with_audio_usd": float(rate(tier, True)),
    }
    if with_schema:
        info["input_schema"] = input_schema(mode, strict=strict)
    return info


def _problem(field: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": msg, "type": kind}


#: JSON Schema type → (error type, message) of a value of the wrong type.
_TYPE_ERRORS: Final = {
    "string": ("string_type", "Input should be a valid string"),
    "integer": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
}


def _has_type(kind: str, value: object) -> bool:
    # bool is an int to Python, never to JSON Schema.
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


def _field_problems(field: str, rule: dict[str, Any], value: object) -> list[dict[str, Any]]:
    if not _has_type(rule["type"], value):
        kind, msg = _TYPE_ERRORS[rule["type"]]
        return [_problem(field, msg, kind)]
    if "enum" in rule and value not in rule["enum"]:
        return [_problem(field, f"Input should be one of {', '.join(map(str, rule['enum']))}", "enum")]
    if isinstance(value, str):
        if len(value) > rule.get("maxLength", len(value)):
            return [_problem(field, f"at most {rule['maxLength']} characters", "string_too_long")]
        if len(value) < rule.get("minLength", 0):
            return [_problem(field, f"at least {rule['minLength']} character(s)", "string_too_short")]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in rule and value < rule["minimum"]:
            return [_problem(field, f"Input should be >= {rule['minimum']}", "greater_than_equal")]
        if "maximum" in rule and value > rule["maximum"]:
            return [_problem(field, f"Input should be <= {rule['maximum']}", "less_than_equal")]
    return []


def schema_problems(schema: dict[str, Any], body: object) -> list[dict[str, Any]]:
    """Every way ``body`` breaks ``schema`` (one of :func:`input_schema`'s), as 422 ``detail`` items."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid JSON object", "type": "model_type"}]
    properties: dict[str, Any] = schema["properties"]
    problems = [
        _problem(name, "Field required", "missing") for name in schema["required"] if name not in body
    ]
    for name, value in body.items():
        rule = properties.get(name)
        if rule is None:
            if not schema["additionalProperties"]:
                problems.append(_problem(name, "extra fields not permitted", "extra_forbidden"))
            continue
        problems.extend(_field_problems(name, rule, value))
    return problems


def list_models(
    *, strict: bool, search: str | None, category: str | None, include_schema: bool, limit: int, offset: int
) -> dict[str, Any]:
    """``GET /v1/models``: the catalog filtered by ``search`` (model id or name) and ``category``."""
    found: list[dict[str, Any]] = []
    for tier, mode in MODELS:
        model_id = f"kling/kling-3.0/{tier.value}/{mode}"
        info = model_info(model_id, tier, mode, strict=strict, with_schema=include_schema)
        text = f"{model_id} {info['display_name']}".lower()
        if search and search.strip().lower() not in text:
            continue
        if category and category.strip() and category.strip() not in info["categories"]:
            continue
        found.append(info)
    return {"models": found[offset : offset + limit], "total": len(found)}
