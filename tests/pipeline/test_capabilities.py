"""Each provider's capabilities and price table, with the source each fact comes from."""

from __future__ import annotations

import datetime

import pytest

from pipeline.capabilities import (
    CAPABILITIES,
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    capabilities_for,
    elements_native,
    storyboard_native,
)
from pipeline.errors import ConfigError
from pipeline.pricing import PRICE_TABLES, Tier


def test_every_provider_has_prices_a_date_and_a_source() -> None:
    assert set(CAPABILITIES) == {"runcomfy", "sandbox", "fal", "kling"}
    for name, caps in CAPABILITIES.items():
        assert caps.name == name
        assert caps.prices is PRICE_TABLES[name]
        assert set(caps.prices) == caps.tiers
        assert isinstance(caps.prices_read_on, datetime.date)
        assert caps.source.startswith(("https://", "pipeline/"))


def test_runcomfy_and_the_sandbox_take_one_prose_prompt() -> None:
    for name in ("runcomfy", "sandbox"):
        caps = capabilities_for(name)
        assert not storyboard_native(caps, TEXT_TO_VIDEO, 3)
        assert not elements_native(caps, IMAGE_TO_VIDEO)
        assert not caps.voices


def test_fal_storyboards_both_modes_and_takes_elements_on_image_to_video() -> None:
    # fal.ai docs, model-api-reference/video-generation-api/kling-video-v3-pro: multi_prompt on
    # text-to-video; the image-to-video playground page: "Multi-prompt support", "elements".
    fal = capabilities_for("fal")
    assert storyboard_native(fal, TEXT_TO_VIDEO, 2) and storyboard_native(fal, IMAGE_TO_VIDEO, 6)
    assert not storyboard_native(fal, TEXT_TO_VIDEO, 1)
    assert not storyboard_native(fal, TEXT_TO_VIDEO, 7)
    assert elements_native(fal, IMAGE_TO_VIDEO) and not elements_native(fal, TEXT_TO_VIDEO)
    assert Tier.K4 not in fal.tiers


def test_kling_limits_shot_prompts_and_never_leaves_a_submit_unknown() -> None:
    # vercel/ai packages/klingai/src/klingai-video-model-options.ts: up to 6 shots, each prompt
    # max 512 chars; elementList ("I2V: up to 3 reference elements. Cannot coexist with voiceList")
    # takes ids of elements the adapter creates first; voiceList ids of voices it does not create.
    kling = capabilities_for("kling")
    assert kling.max_shots == 6 and kling.max_shot_prompt_chars == 512
    assert storyboard_native(kling, IMAGE_TO_VIDEO, 2) and storyboard_native(kling, TEXT_TO_VIDEO, 2)
    assert elements_native(kling, IMAGE_TO_VIDEO) and not elements_native(kling, TEXT_TO_VIDEO)
    assert not kling.voices and not kling.voices_with_elements
    assert kling.idempotent_submit
    assert not kling.prices_published and kling.notes


def test_an_unknown_provider_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="runcomfy, sandbox, fal, kling"):
        capabilities_for("replicate")
