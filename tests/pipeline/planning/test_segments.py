"""The segment planner obeys the segmenting rules for any narrative (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.generation import MAX_DURATION, MAX_SHOTS, MIN_DURATION
from pipeline.planning.segments import Segment, plan_segments

shots = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=40)
lines = st.integers(min_value=0, max_value=4)


def flatten(segments: tuple[Segment, ...]) -> list[tuple[int, int]]:
    return [(p.shot, p.seconds) for s in segments for p in s.parts]


@settings(max_examples=400, deadline=None)
@given(shots)
def test_every_request_is_whole_seconds_between_3_and_15_with_at_most_6_shots(durations: list[int]) -> None:
    for seg in plan_segments(durations):
        assert isinstance(seg.duration, int)
        assert MIN_DURATION <= seg.duration <= MAX_DURATION
        assert 1 <= len(seg.parts) <= MAX_SHOTS
        assert all(p.seconds >= 1 for p in seg.parts)


@settings(max_examples=400, deadline=None)
@given(shots)
def test_order_is_kept_and_every_second_is_accounted_for(durations: list[int]) -> None:
    segments = plan_segments(durations)
    flat = flatten(segments)
    assert [shot for shot, _ in flat] == sorted(shot for shot, _ in flat)
    per_shot = [0] * len(durations)
    for shot, seconds in flat:
        per_shot[shot] += seconds
    assert per_shot == durations
    # Segments are numbered in order and their starts follow each other.
    assert [s.index for s in segments] == list(range(len(segments)))
    assert [s.start for s in segments] == [
        sum(x.content_seconds for x in segments[:i]) for i in range(len(segments))
    ]
    # Parts of one shot are numbered 0..n-1 in order.
    for shot in range(len(durations)):
        parts = [p for s in segments for p in s.parts if p.shot == shot]
        assert [p.part for p in parts] == list(range(len(parts)))
        assert all(p.parts == len(parts) for p in parts)


@settings(max_examples=400, deadline=None)
@given(shots)
def test_shots_are_cut_only_when_needed(durations: list[int]) -> None:
    segments = plan_segments(durations)
    for shot, duration in enumerate(durations):
        parts = [(s, p) for s in segments for p in s.parts if p.shot == shot]
        if duration > MAX_DURATION or len(parts) == 1:
            continue
        # A shot of at most 15 s was cut: some segment holding a piece of it would have had
        # under 3 s of content without that piece.
        assert len(parts) == 2
        assert any(s.content_seconds - p.seconds < MIN_DURATION for s, p in parts)


@settings(max_examples=400, deadline=None)
@given(shots)
def test_padding_only_when_the_whole_narrative_is_under_3_seconds(durations: list[int]) -> None:
    segments = plan_segments(durations)
    trimmed = sum(s.trimmed_seconds for s in segments)
    if sum(durations) >= MIN_DURATION:
        assert trimmed == 0
    else:
        assert len(segments) == 1 and trimmed == MIN_DURATION - sum(durations)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), lines), min_size=1, max_size=20))
def test_dialogue_lines_are_each_spoken_once_in_order(shots_and_lines: list[tuple[int, int]]) -> None:
    durations = [d for d, _ in shots_and_lines]
    counts = [n for _, n in shots_and_lines]
    segments = plan_segments(durations, counts)
    for shot, count in enumerate(counts):
        spoken = [line for s in segments for p in s.parts if p.shot == shot for line in p.lines]
        assert spoken == list(range(count))


@given(shots)
def test_the_plan_is_deterministic(durations: list[int]) -> None:
    assert plan_segments(durations) == plan_segments(list(durations))


def test_examples() -> None:
    assert [s.duration for s in plan_segments([4, 6, 3, 40])] == [13, 14, 13, 13]
    assert [s.duration for s in plan_segments([2])] == [3]  # padded: the narrative is only 2 s
    assert plan_segments([2])[0].trimmed_seconds == 1
    # [14, 2]: the 2 s tail would be a request under 3 s, so 1 s of the 14 s shot moves over.
    segs = plan_segments([14, 2])
    assert [[(p.shot, p.seconds) for p in s.parts] for s in segs] == [[(0, 13)], [(0, 1), (1, 2)]]
    # Whole shots move before any cut: [5, 5, 4, 2] → [5, 5] and [4, 2].
    segs = plan_segments([5, 5, 4, 2])
    assert [[p.seconds for p in s.parts] for s in segs] == [[5, 5], [4, 2]]
    # Seven 1 s shots: at most six per request, and no request under 3 s.
    assert [len(s.parts) for s in plan_segments([1] * 7)] == [4, 3]
    assert plan_segments([]) == ()
