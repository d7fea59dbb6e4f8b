"""Each request compiled for its provider: native storyboard, elements, voice, and what is dropped."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.capabilities import CAPABILITIES
from pipeline.errors import PromptTooLong
from pipeline.planning.plan import PlannedRequest, build_plan
from pipeline.script.loader import parse_script
from pipeline.script.model import Script

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

SCRIPT = """
version: 1
name: natives
defaults: {audio: true, style: "noir"}
elements:
  mara:
    description: "woman, red hair"
    images: [assets/mara_front.jpg]
    voice: https://example.com/mara.wav
  leo:
    description: "old fisherman"
    images: [assets/leo_front.jpg]
narratives:
  - id: n
    continuity: chain
    shots:
      - {duration: 4, framing: wide, action: "@leo waits on the pier"}
      - duration: 5
        action: "@mara arrives"
        dialogue: [{speaker: mara, line: "Ready?"}]
      - {duration: 6, action: "they sail"}
      - {duration: 5, action: "@mara laughs at @leo"}
budget: {limit_usd: 100, draft_tier: none, final_tier: pro}
"""


def script(text: str = SCRIPT) -> Script:
    return parse_script(text.encode(), file="s.yaml", base_dir=CONFIGS).script


def requests(provider: str, text: str = SCRIPT) -> list[PlannedRequest]:
    return list(build_plan(script(text), provider=provider).requests)


def test_fal_gets_a_storyboard_per_request_with_the_scripted_durations() -> None:
    first, second = requests("fal")
    # The first request starts from no image: text-to-video, so element images stay home.
    assert first.mode == "text-to-video" and all(e.images == () for e in first.elements)
    assert [s.duration for s in first.shot_prompts] == [4, 5, 6]
    assert sum(s.duration for s in first.shot_prompts) == first.duration
    assert first.shot_prompts[0].prompt == "Wide: leo (old fisherman) waits on the pier. Style: noir."
    assert "elements: description only (text-to-video)" in first.drops
    # The chained one is image-to-video: elements go with their images, mentions stay @name.
    assert second.mode == "image-to-video" and second.shot_prompts == ()  # one shot: prose
    assert [(e.name, e.images) for e in second.elements] == [
        ("mara", ("assets/mara_front.jpg",)),
        ("leo", ("assets/leo_front.jpg",)),
    ]


def test_fal_sends_the_voice_of_an_element_that_speaks_and_prices_it() -> None:
    first, _ = requests("fal")
    assert [(e.name, e.voice) for e in first.elements] == [("mara", "https://example.com/mara.wav")]
    assert first.voice
    assert first.cost == 15 * Decimal("0.196")  # fal's pro voice-control rate
    assert "@mara arrives" in first.shot_prompts[1].prompt


def test_a_provider_that_takes_no_voice_next_to_element_images_drops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(CAPABILITIES, "fal", replace(CAPABILITIES["fal"], voices_with_elements=False))
    script_text = SCRIPT.replace(
        '{duration: 5, action: "@mara laughs at @leo"}',
        '{duration: 5, action: "@mara laughs", dialogue: [{speaker: mara, line: "Go!"}]}',
    )
    _, second = requests("fal", script_text)
    assert second.mode == "image-to-video"
    assert [(e.name, e.voice) for e in second.elements] == [("mara", None)]
    assert "voice: dropped (not with element images)" in second.drops
    assert not second.voice


def test_kling_gets_a_storyboard_elements_on_image_to_video_and_no_voice() -> None:
    # Kling's element_list goes on image2video only (pipeline.capabilities, kling entry).
    first, second = requests("kling")
    assert [s.duration for s in first.shot_prompts] == [4, 5, 6]
    assert "mara (woman, red hair) arrives" in first.shot_prompts[1].prompt
    assert first.elements == ()
    assert [(e.name, e.images, e.voice) for e in second.elements] == [
        ("mara", ("assets/mara_front.jpg",), None),
        ("leo", ("assets/leo_front.jpg",), None),
    ]
    assert set(first.drops) == {"elements: description only (text-to-video)", "voice: dropped"}


def test_the_prose_prompt_marks_elements_sent_with_images() -> None:
    _, second = requests("fal")
    assert second.prompt.count("@mara (woman, red hair)") == 1
    assert "@leo (old fisherman)" in second.prompt
    _, prose = requests("runcomfy")
    assert "@" not in prose.prompt


def test_runcomfy_gets_prose_and_says_what_it_drops() -> None:
    plan = build_plan(script(), provider="runcomfy")
    assert all(r.shot_prompts == () and r.elements == () for r in plan.requests)
    assert plan.drops == ("elements: description only", "voice: dropped", "storyboard: prose")
    assert "leo (old fisherman)" in plan.requests[0].prompt


def test_a_storyboard_shot_over_klings_limit_names_the_shot() -> None:
    long_text = SCRIPT.replace('"they sail"', '"' + "they sail on " * 50 + '"')
    with pytest.raises(PromptTooLong, match=r"shot 3's prompt would be .* over kling's limit of 512"):
        requests("kling", long_text)
    assert requests("fal", long_text)  # fal states no per-shot limit


def test_the_spec_carries_the_storyboard_and_the_element_urls() -> None:
    first, second = requests("fal")
    spec = first.spec()
    assert spec.shots == first.shot_prompts and spec.prompt == first.prompt
    spec = second.spec("https://x/start.png", element_image_urls={"mara": ["https://x/m.png"]})
    assert [(e.name, e.image_urls) for e in spec.elements] == [("mara", ("https://x/m.png",)), ("leo", ())]


def test_a_tier_the_provider_does_not_sell_is_replaced_and_said() -> None:
    plan = build_plan(script(SCRIPT.replace("final_tier: pro", "final_tier: 4k")), provider="fal")
    assert plan.budget.final_tier is not None and plan.budget.final_tier.value == "pro"
    assert "final tier 4k is not sold by this provider: pro" in plan.budget.degraded
