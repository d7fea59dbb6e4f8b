"""The exact submit body of a request per provider, built without network (``plan --json``).

Each adapter has a pure body builder (RunComfy's :func:`~pipeline.providers.runcomfy.build_request_body`,
fal's ``fal_wire.build_body``, Kling's ``kling_wire.build_body``); this registry imports the one
asked for lazily, with that adapter's settings from the environment, so that ``plan`` loads no
HTTP client and no other adapter. A missing or broken adapter gives a :class:`BodyUnavailable`
naming why, never a guess at the body.

Example::

    build = body_builder("fal")
    body = build(spec)      # what FalProvider.submit would send for spec
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError
from pipeline.generation import GenerationSpec

BodyBuilder = Callable[[GenerationSpec], dict[str, Any]]


class BodyUnavailable(ConfigError):
    """No body builder for this provider in this build (its adapter is missing or unreadable)."""


def _runcomfy() -> BodyBuilder:
    from pipeline.providers.runcomfy import build_request_body
    from pipeline.providers.settings import ProviderSettings

    settings = ProviderSettings()
    return lambda spec: build_request_body(spec, settings)


def _fal() -> BodyBuilder:
    wire = importlib.import_module("pipeline.providers.fal_wire")
    settings = importlib.import_module("pipeline.providers.fal_settings").FalSettings()
    return lambda spec: dict(wire.build_body(spec, settings))


def _kling() -> BodyBuilder:
    wire = importlib.import_module("pipeline.providers.kling_wire")
    settings = importlib.import_module("pipeline.providers.kling_settings").KlingSettings()
    return lambda spec: dict(wire.body_for(spec, settings))


#: Provider name → how to get its body builder (the sandbox speaks RunComfy's API).
_REGISTRY: dict[str, Callable[[], BodyBuilder]] = {
    "runcomfy": _runcomfy,
    "sandbox": _runcomfy,
    "fal": _fal,
    "kling": _kling,
}


def body_builder(provider: str) -> BodyBuilder:
    """The pure body builder of ``provider``.

    Raises BodyUnavailable (78) when the provider is unknown or its adapter cannot be loaded
    (the message says which and why).
    """
    make = _REGISTRY.get(provider)
    if make is None:
        raise BodyUnavailable(
            f"no request body builder for provider {provider!r}: known are {', '.join(_REGISTRY)}"
        )
    try:
        return make()
    except (ImportError, AttributeError, ValueError) as exc:
        # ValueError covers pydantic's ValidationError (bad settings in the environment).
        raise BodyUnavailable(f"the {provider} adapter cannot build request bodies here: {exc}") from exc
