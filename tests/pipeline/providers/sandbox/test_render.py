"""The sandbox picture's shot captions."""

from __future__ import annotations

from pipeline.providers.sandbox.render import split_shots


def test_compiled_prompt_headers_give_shot_numbers_and_lengths() -> None:
    # The prompt compiler's form (pipeline/planning/prompts.py): "Shot N (4 s, framing, …): …".
    prompt = (
        "Shot 1 (4 s, wide, low angle, slow push-in): mara (woman in her 30s) steers the boat. "
        "Shot 2 (6 s, close-up): she laughs. Shot 3 (5 s, continuing from the previous clip): calm sea."
    )
    shots = split_shots(prompt, 15)
    assert [(a, b) for a, b, _ in shots] == [(0.0, 4.0), (4.0, 10.0), (10.0, 15.0)]
    assert shots[0][2] == "Shot 1/3: mara (woman in her 30s) steers the boat."
    assert shots[2][2].startswith("Shot 3/3: calm sea")


def test_plain_numbering_shares_time_evenly() -> None:
    assert [(a, b) for a, b, _ in split_shots("Shot 1: a. Shot 2: b", 3)] == [(0.0, 1.5), (1.5, 3.0)]
    assert split_shots("a kite", 3) == ((0.0, 3.0, "Shot 1/1: a kite"),)
