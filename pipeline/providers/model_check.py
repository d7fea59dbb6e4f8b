"""Checks of planned requests against what ``GET /v1/models/{id}`` publishes, before any money.

Two checks, both free and both done before the first reservation of a run:

* **price** — the provider's ``base_price_usd`` per ``price_unit`` must be klingflow's price
  (:mod:`pipeline.pricing`): a plan must never promise a price the provider will not charge.
  The partner nodes' ``runcomfy/pricing.py`` likewise refuses to generate without a valid price.
* **input schema** — when the answer carries one (``input_schema``, the name the partner nodes'
  ``scripts/update_model_catalog.py`` reads from the catalog), the exact body a submit would
  send must satisfy it.

The schema check is a deliberately small JSON-Schema subset (``type``, ``enum``, ``minimum`` /
``maximum`` and their exclusive forms, ``minLength`` / ``maxLength``, ``required``,
``additionalProperties: false``), the constraints the catalog's model schemas use: the
``jsonschema`` package is not a dependency, and a keyword this checker does not know is ignored
(the provider still validates on submit, answering 422 before anything is created).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from pipeline.errors import BadRequest, ConfigError
from pipeline.generation import GenerationSpec
from pipeline.pricing import rate
from pipeline.providers.wire import ModelInfo

#: The only price unit klingflow's table is written in.
PRICE_UNIT: Final = "second"
PRICING_MODULE: Final = "pipeline/pricing.py"

#: JSON-Schema type names → a test of a decoded JSON value. ``float`` is a spelling the
#: catalog uses for ``number`` (the partner nodes' ``update_model_catalog.py`` normalises it).
_TYPES: Final[dict[str, Any]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _usd(amount: Decimal) -> str:
    return f"${amount.normalize():f}"


def check_price(info: ModelInfo, spec: GenerationSpec) -> None:
    """ConfigError (78) unless the provider charges what klingflow's price table says for ``spec``.

    Checks ``price_unit`` and ``base_price_usd`` (without audio), and the audio price too when
    the answer carries one. A missing or unusable price is refused as well: it cannot be confirmed.
    """
    model = spec.model_id
    ours = rate(spec.tier, audio=False)
    where = f"update {PRICING_MODULE} or do not run"
    if info.base_price_usd is None or info.price_unit is None:
        raise ConfigError(
            f"{model}: the provider publishes no price (base_price_usd / price_unit missing), so "
            f"klingflow's {_usd(ours)}/{PRICE_UNIT} cannot be confirmed; do not run"
        )
    theirs = info.base_price_usd
    if not theirs.is_finite() or theirs < 0:
        raise ConfigError(f"{model}: the provider's price {theirs} is not a usable price; do not run")
    if info.price_unit.strip().lower() != PRICE_UNIT or theirs != ours:
        raise ConfigError(
            f"{model}: the provider charges {_usd(theirs)}/{info.price_unit}, klingflow's price "
            f"table says {_usd(ours)}/{PRICE_UNIT}; {where}"
        )
    if info.audio_price_usd is not None:
        ours_audio = rate(spec.tier, audio=True)
        if info.audio_price_usd != ours_audio:
            raise ConfigError(
                f"{model}: the provider charges {_usd(info.audio_price_usd)}/{PRICE_UNIT} with audio, "
                f"klingflow's price table says {_usd(ours_audio)}/{PRICE_UNIT}; {where}"
            )


def schema_problems(schema: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """Every way ``body`` breaks ``schema`` (the subset in the module docstring), as ``field: why``."""
    problems: list[str] = []
    properties = schema.get("properties")
    props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str) and name not in body:
            problems.append(f"{name}: required by the model, but klingflow does not send it")
    for name, value in body.items():
        if name not in props:
            if schema.get("additionalProperties") is False:
                problems.append(f"{name}: not a field of this model")
            continue
        rule = props[name]
        if isinstance(rule, Mapping):
            problems.extend(f"{name}: {why}" for why in value_problems(rule, value))
    return problems


def value_problems(rule: Mapping[str, Any], value: Any) -> list[str]:
    """Why ``value`` breaks one property's ``rule`` (empty when it fits)."""
    kinds = rule.get("type")
    names = [kinds] if isinstance(kinds, str) else [k for k in kinds or [] if isinstance(k, str)]
    known = [k for k in names if k in _TYPES]
    if known and not any(_TYPES[k](value) for k in known):
        return [f"{value!r} is not of type {' or '.join(known)}"]
    found: list[str] = []
    enum = rule.get("enum")
    if isinstance(enum, list) and not any(_same(value, option) for option in enum):
        found.append(f"{value!r} is not one of {enum}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        found.extend(_bound_problems(rule, value))
    if isinstance(value, str):
        if isinstance(low := rule.get("minLength"), int) and len(value) < low:
            found.append(f"{len(value)} characters, fewer than {low}")
        if isinstance(high := rule.get("maxLength"), int) and len(value) > high:
            found.append(f"{len(value)} characters, more than {high}")
    return found


def _same(value: Any, option: Any) -> bool:
    # JSON equality: True is not 1, but 5 is 5.0.
    if isinstance(value, bool) or isinstance(option, bool):
        return isinstance(value, bool) and isinstance(option, bool) and value is option
    return bool(value == option)


def _bound_problems(rule: Mapping[str, Any], value: float) -> Iterable[str]:
    def number(key: str) -> float | None:
        bound = rule.get(key)
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
            return None
        return float(bound)

    if (low := number("minimum")) is not None and value < low:
        yield f"{value} is below the minimum {low:g}"
    if (high := number("maximum")) is not None and value > high:
        yield f"{value} is above the maximum {high:g}"
    if (low := number("exclusiveMinimum")) is not None and value <= low:
        yield f"{value} is not above {low:g}"
    if (high := number("exclusiveMaximum")) is not None and value >= high:
        yield f"{value} is not below {high:g}"


def check_schema(info: ModelInfo, bodies: Iterable[Mapping[str, Any]]) -> None:
    """BadRequest (65) listing every problem of ``bodies`` against the model's input schema.

    No schema in the answer: nothing to check here (the price check still ran).
    """
    if not info.input_schema:
        return
    problems: dict[str, int] = {}
    total = 0
    for body in bodies:
        total += 1
        for problem in schema_problems(info.input_schema, body):
            problems[problem] = problems.get(problem, 0) + 1
    if not problems:
        return
    lines = [
        f"  {info.model_id}: {problem}" + (f" ({count} of {total} requests)" if total > 1 else "")
        for problem, count in problems.items()
    ]
    raise BadRequest(
        f"{info.model_id}: the model's published input schema refuses {len(problems)} thing(s) "
        "klingflow would send; nothing was submitted or reserved:\n" + "\n".join(lines),
        detail=list(problems),
    )
