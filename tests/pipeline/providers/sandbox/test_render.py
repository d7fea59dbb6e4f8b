"""The sandbox picture's shot captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.pricing import Tier
from pipeline.providers.sandbox.render import (
    Placeholder,
    RenderJob,
    build_args,
    build_filtergraph,
    split_shots,
    storyboard_shots,
)


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


def test_a_camera_move_in_parentheses_keeps_every_shot() -> None:
    # "Shot 1/1" on a multi-shot prose prompt: a header like "(3 s, dolly in (slow))" broke the
    # match, and a "shot 2" inside dialogue split a shot that was not there.
    prompt = (
        'Shot 1 (3 s, wide, dolly in (slow)): she says "take shot 2: now". '
        "Shot 2 (2 s, close-up, pan (left)): he nods."
    )
    shots = split_shots(prompt, 5)
    assert [(a, b) for a, b, _ in shots] == [(0.0, 3.0), (3.0, 5.0)]
    assert shots[1][2] == "Shot 2/2: he nods."


def job(**kw: Any) -> RenderJob:
    values: dict[str, Any] = {
        "fingerprint": "f00d",
        "tier": Tier.STANDARD,
        "aspect_ratio": "16:9",
        "duration": 6,
        "audio": False,
        "seed": 1,
        "prompt": "Shot 1: a. Shot 2: b",
        "width": 64,
        "height": 36,
    }
    values.update(kw)
    return RenderJob(**values)


def test_a_native_storyboard_plays_each_shot_for_its_own_seconds() -> None:
    board = job(shots=(("@Element1 runs", 1), ("sea", 2), ("@Element1 and @Element2", 3)))
    assert [(a, b) for a, b, _ in board.timeline()] == [(0.0, 1.0), (1.0, 3.0), (3.0, 6.0)]
    assert board.timeline()[2][2] == "Shot 3/3: @Element1 and @Element2"
    assert storyboard_shots((("a", 4),)) == ((0.0, 4.0, "Shot 1/1: a"),)


def test_element_images_show_in_the_shots_that_name_them(tmp_path: Path) -> None:
    front, back = tmp_path / "front.png", tmp_path / "back.png"
    board = job(
        start_image=back,
        shots=(("@Element1 runs", 1), ("sea", 2), ("@Element1 and @Element2", 3)),
        elements=(("Element1", (front,)), ("Element2", (Placeholder("remote image x"),)), ("Element3", ())),
    )
    spans = board.element_spans()
    assert [(name, times) for name, _, times in spans] == [
        ("Element1", [(0.0, 1.0), (3.0, 6.0)]),
        ("Element2", [(3.0, 6.0)]),
    ]
    assert board.inputs() == [back, front]  # start image first, then element images
    graph, files = build_filtergraph(board, tmp_path)
    assert "[1:v]scale=" in graph and "between(t,0.0,1.0)+between(t,3.0,6.0)" in graph
    assert files["element0.txt"] == "@Element1" and "drawbox" in graph
    args = build_args(board, tmp_path / "out.mp4", tmp_path / "graph.txt")
    # The start image lasts one second; an element's image the whole clip.
    assert args[:8] == ["-loop", "1", "-framerate", "24", "-t", "1.0", "-i", str(back)]
    assert args[8:16] == ["-loop", "1", "-framerate", "24", "-t", "6", "-i", str(front)]


def test_a_prose_prompt_shows_an_element_it_mentions_throughout(tmp_path: Path) -> None:
    prose = job(
        prompt="@mara waves", elements=(("mara", (tmp_path / "m.png",)), ("leo", (tmp_path / "l.png",)))
    )
    assert [(n, t) for n, _, t in prose.element_spans()] == [("mara", [(0.0, 6.0)])]
