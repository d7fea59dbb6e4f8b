"""The prompt compiler writes Kling multi-shot prompts and refuses ones that are too long."""

from __future__ import annotations

import pytest

from pipeline.errors import PromptTooLong
from pipeline.planning.prompts import PromptContext, compile_prompt
from pipeline.planning.segments import plan_segments
from pipeline.script.model import DialogueLine, Shot

CTX = PromptContext(narrative_index=0, narrative_id="atlantic", variant_id="a")
ELEMENTS = {"mara": "woman in her 30s, short red hair", "leo": "old fisherman"}


def test_multi_shot_prompt_with_camera_elements_dialogue_text_sound_and_style() -> None:
    shots = [
        Shot(
            duration=4,
            framing="wide",
            angle="low",
            camera="slow push-in",
            action="@mara steers the boat through a storm",
            dialogue=[
                DialogueLine(speaker="mara", line="The next stop is the Atlantic Ocean!", tone="excited")
            ],
            text="ATLANTIC 2026",
            sound="howling wind",
        ),
        Shot(
            duration=3,
            framing="close-up",
            action="@leo and @mara laugh",
            dialogue=[
                DialogueLine(speaker="leo", line="¡Vamos!", language="es"),
                DialogueLine(speaker="The crowd", line="Yes!"),
            ],
        ),
    ]
    prompt = compile_prompt(shots, plan_segments([4, 3], [1, 2])[0], ELEMENTS, "cinematic", CTX)
    assert prompt == (
        "Shot 1 (4 s, wide, low angle, slow push-in): mara (woman in her 30s, short red hair) steers the boat "
        'through a storm. mara says, in English, excited: "The next stop is the Atlantic Ocean!" '
        'On-screen text: "ATLANTIC 2026". Sound: howling wind.\n'
        "Shot 2 (3 s, close-up): leo (old fisherman) and mara laugh. "
        'leo says, in Spanish: "¡Vamos!" The crowd says, in English: "Yes!"\n'
        "Style: cinematic."
    )


def test_a_shot_continued_from_the_previous_request_says_so() -> None:
    shots = [Shot(duration=20, action="the boat sails on")]
    second = plan_segments([20])[1]
    prompt = compile_prompt(shots, second, {}, None, CTX)
    assert prompt == "Shot 1 (10 s, continuing from the previous clip): the boat sails on."


def test_an_element_is_described_again_in_each_request() -> None:
    shots = [Shot(duration=15, action="@mara waves"), Shot(duration=15, action="@mara sits")]
    first, second = plan_segments([15, 15])
    assert "mara (woman" in compile_prompt(shots, first, ELEMENTS, None, CTX)
    assert "mara (woman" in compile_prompt(shots, second, ELEMENTS, None, CTX)


def test_too_long_prompt_is_refused_naming_the_heaviest_shot() -> None:
    shots = [Shot(duration=3, action="short"), Shot(duration=3, action="x" * 2600)]
    with pytest.raises(PromptTooLong) as info:
        compile_prompt(shots, plan_segments([3, 3])[0], {}, None, CTX)
    assert info.value.shot_index == 1
    message = str(info.value)
    assert "narrative 'atlantic', variant 'a', segment 0" in message
    assert "over the provider's limit of 2,500" in message
    assert "shorten shot 2" in message


def test_prompt_at_the_limit_is_accepted() -> None:
    head = "Shot 1 (3 s): "
    action = "y" * (2500 - len(head) - 1)  # the compiler adds a full stop
    prompt = compile_prompt([Shot(duration=3, action=action)], plan_segments([3])[0], {}, None, CTX)
    assert len(prompt) == 2500
