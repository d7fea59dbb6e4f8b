"""GenerationSpec: the mode and the RunComfy model id it asks for."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier


def test_text_to_video_without_a_start_image() -> None:
    spec = GenerationSpec(tier=Tier.PRO, prompt="a kite", duration=5)
    assert spec.mode == "text-to-video"
    assert spec.model_id == "kling/kling-3.0/pro/text-to-video"


def test_image_to_video_with_a_start_image() -> None:
    spec = GenerationSpec(tier=Tier.STANDARD, prompt="a kite", duration=5, start_image_url="https://x/y.png")
    assert spec.mode == "image-to-video"
    assert spec.model_id == f"kling/kling-3.0/{Tier.STANDARD.value}/image-to-video"


def test_an_end_image_alone_does_not_make_image_to_video() -> None:
    spec = GenerationSpec(tier=Tier.STANDARD, prompt="a kite", duration=5, end_image_url="https://x/y.png")
    assert spec.mode == "text-to-video"


def test_specs_are_frozen_and_comparable() -> None:
    spec = GenerationSpec(tier=Tier.K4, prompt="p", duration=3)
    assert spec == GenerationSpec(tier=Tier.K4, prompt="p", duration=3)
    assert (spec.aspect_ratio, spec.generate_audio, spec.cfg_scale) == ("16:9", False, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.prompt = "q"  # type: ignore[misc]
