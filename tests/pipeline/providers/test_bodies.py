"""The body registry gives each adapter's own pure body, without network or a key."""

from __future__ import annotations

import pytest

from pipeline.errors import EXIT_CONFIG
from pipeline.generation import ElementRef, GenerationSpec, ShotPrompt
from pipeline.pricing import Tier
from pipeline.providers import bodies
from pipeline.providers.runcomfy import build_request_body
from pipeline.providers.settings import ProviderSettings

SPEC = GenerationSpec(
    tier=Tier.PRO,
    prompt="@mara (woman) waves",
    duration=8,
    start_image_url="https://x.invalid/start.png",
    shots=(ShotPrompt("@mara waves", 3), ShotPrompt("the sea", 5)),
    elements=(ElementRef("mara", "woman", ("https://x.invalid/mara.png",)),),
)


def test_runcomfy_and_the_sandbox_build_runcomfys_body() -> None:
    expected = build_request_body(SPEC, ProviderSettings())
    assert bodies.body_builder("runcomfy")(SPEC) == expected == bodies.body_builder("sandbox")(SPEC)
    assert "multi_prompt" not in expected  # one prose prompt on RunComfy


@pytest.mark.parametrize("provider", ["fal", "kling"])
def test_fal_and_kling_send_the_storyboard_natively(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)  # no key is needed to build a body
    body = bodies.body_builder(provider)(SPEC)
    assert [int(s["duration"]) for s in body["multi_prompt"]] == [3, 5]


def test_an_unknown_provider_has_no_body_builder() -> None:
    with pytest.raises(bodies.BodyUnavailable, match="known are runcomfy, sandbox, fal, kling") as caught:
        bodies.body_builder("replicate")
    assert caught.value.exit_code == EXIT_CONFIG


def test_an_adapter_that_cannot_load_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bodies.BodyBuilder:
        raise ImportError("No module named 'pipeline.providers.kling_wire'")

    monkeypatch.setitem(bodies._REGISTRY, "kling", broken)
    with pytest.raises(bodies.BodyUnavailable, match="the kling adapter cannot build request bodies here"):
        bodies.body_builder("kling")
