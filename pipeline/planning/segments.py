"""The segment planner: a narrative's shots cut into requests the provider accepts.

Pure and deterministic. The rules (``shared/docs/script-format.md``):

- every request lasts a whole number of seconds in [3, 15] and holds at most 6 shots;
- shots keep their order; a shot is cut into parts only when it is longer than 15 s, or when a
  request would otherwise fall under 3 s; the parts follow each other;
- the requests' content adds up to the narrative's length; only when the whole narrative is
  shorter than 3 s is a request longer than its shots (the extra is trimmed when stitching).

How (in this order):

1. shots over 15 s are cut into ``ceil(d / 15)`` near-equal parts, longest first;
2. the parts are packed greedily into requests (≤ 15 s, ≤ 6 parts);
3. a request left under 3 s first takes whole parts from the end of the previous request (or,
   for the first request, from the start of the next), then cuts the missing seconds off the
   neighbouring part; only a narrative under 3 s in all is padded up to 3 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from pipeline.generation import MAX_DURATION, MAX_SHOTS, MIN_DURATION


@dataclass(frozen=True)
class ShotPart:
    """A piece of one shot inside one request (the whole shot when ``parts == 1``)."""

    shot: int
    seconds: int
    part: int = 0
    parts: int = 1
    #: Indices of the shot's dialogue lines spoken in this part, in order.
    lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class Segment:
    """One request of a narrative: consecutive shot parts and the duration to ask for."""

    index: int
    parts: tuple[ShotPart, ...]
    duration: int
    #: Where this segment's content starts in the narrative's master, in seconds.
    start: int

    @property
    def content_seconds(self) -> int:
        """Seconds of scripted shots in this request."""
        return sum(p.seconds for p in self.parts)

    @property
    def trimmed_seconds(self) -> int:
        """Seconds generated beyond the shots (the 3 s minimum), trimmed when stitching."""
        return self.duration - self.content_seconds


def _split_long(duration: int) -> list[int]:
    """Near-equal parts of at most 15 s, longest first."""
    count = -(-duration // MAX_DURATION)
    base, extra = divmod(duration, count)
    return [base + 1] * extra + [base] * (count - extra)


def _fits(pieces: list[list[int]], more: int = 0, extra_parts: int = 0) -> bool:
    return sum(p[1] for p in pieces) + more <= MAX_DURATION and len(pieces) + extra_parts <= MAX_SHOTS


def _total(pieces: list[list[int]]) -> int:
    return sum(p[1] for p in pieces)


def _pack(durations: Sequence[int]) -> list[list[list[int]]]:
    """Steps 1 and 2: pieces ``[shot, seconds]`` packed greedily into requests."""
    requests: list[list[list[int]]] = [[]]
    for shot, duration in enumerate(durations):
        pieces = _split_long(duration) if duration > MAX_DURATION else [duration]
        for seconds in pieces:
            if requests[-1] and not _fits(requests[-1], seconds, 1):
                requests.append([])
            requests[-1].append([shot, seconds])
    return requests


def _fill_from_previous(prev: list[list[int]], short: list[list[int]]) -> None:
    # Whole pieces first: no new cut when the previous request can spare them.
    while _total(short) < MIN_DURATION and len(prev) > 1:
        last = prev[-1][1]
        if _total(prev) - last < MIN_DURATION or not _fits(short, last, 1):
            break
        short.insert(0, prev.pop())
    missing = MIN_DURATION - _total(short)
    if (
        missing > 0
        and prev[-1][1] > missing
        and _total(prev) - missing >= MIN_DURATION
        and _fits(short, missing, 1)
    ):
        shot = prev[-1][0]
        prev[-1][1] -= missing
        if short and short[0][0] == shot:  # the piece continues into this request: grow it
            short[0][1] += missing
        else:
            short.insert(0, [shot, missing])


def _fill_from_next(short: list[list[int]], nxt: list[list[int]]) -> None:
    while _total(short) < MIN_DURATION and len(nxt) > 1:
        first = nxt[0][1]
        if _total(nxt) - first < MIN_DURATION or not _fits(short, first, 1):
            break
        short.append(nxt.pop(0))
    missing = MIN_DURATION - _total(short)
    if (
        missing > 0
        and nxt[0][1] > missing
        and _total(nxt) - missing >= MIN_DURATION
        and _fits(short, missing, 1)
    ):
        shot = nxt[0][0]
        nxt[0][1] -= missing
        if short and short[-1][0] == shot:
            short[-1][1] += missing
        else:
            short.append([shot, missing])


def _uncut_twice(requests: list[list[list[int]]]) -> None:
    """Join a shot of at most 15 s that the fills cut into three parts back into two.

    Filling two short requests on either side of one shot can take a piece from each end of it
    (``[1, 15, 1]`` → 3 + 11 + 3); two requests around a single cut hold the same seconds
    (14 + 3) with one cut fewer.
    """
    i = 0
    while i + 2 < len(requests):
        before, middle, after = requests[i], requests[i + 1], requests[i + 2]
        shot = middle[0][0] if len(middle) == 1 else None
        if shot is None or not before or not after or before[-1][0] != shot or after[0][0] != shot:
            i += 1
            continue
        seconds = before[-1][1] + middle[0][1] + after[0][1]
        head, tail = before[:-1], after[1:]
        for first in range(seconds - 1, 0, -1):
            left, right = [*head, [shot, first]], [[shot, seconds - first], *tail]
            if all(MIN_DURATION <= _total(r) <= MAX_DURATION and len(r) <= MAX_SHOTS for r in (left, right)):
                requests[i : i + 3] = [left, right]
                break
        i += 1


def _assign_lines(parts: list[ShotPart], lines: int) -> list[tuple[int, ...]]:
    """Spread a cut shot's dialogue lines over its parts in proportion to their seconds."""
    if len(parts) == 1:
        return [tuple(range(lines))]
    total = sum(p.seconds for p in parts)
    ends = list(accumulate(p.seconds for p in parts))
    out: list[list[int]] = [[] for _ in parts]
    for line in range(lines):
        # A line is spoken in the part where its share of the shot's time starts.
        at = line * total / lines
        out[next(i for i, end in enumerate(ends) if at < end)].append(line)
    return [tuple(x) for x in out]


def plan_segments(
    durations: Sequence[int], dialogue_lines: Sequence[int] | None = None
) -> tuple[Segment, ...]:
    """Cut shots of ``durations`` seconds into requests; ``dialogue_lines[i]`` counts shot i's lines.

    >>> [s.duration for s in plan_segments([4, 6, 3, 40])]
    [13, 14, 13, 13]
    """
    if not durations:
        return ()
    if any(d < 1 for d in durations):
        raise ValueError("shot durations must be at least 1 second")
    requests = _pack(durations)
    for i in range(len(requests)):
        if _total(requests[i]) >= MIN_DURATION:
            continue
        if i > 0:
            _fill_from_previous(requests[i - 1], requests[i])
        if _total(requests[i]) < MIN_DURATION and i + 1 < len(requests):
            _fill_from_next(requests[i], requests[i + 1])
    _uncut_twice(requests)
    # Number the parts of each shot, then hand out its dialogue lines.
    flat = [(r, shot, seconds) for r, pieces in enumerate(requests) for shot, seconds in pieces]
    counts: dict[int, int] = {}
    for _, shot, _ in flat:
        counts[shot] = counts.get(shot, 0) + 1
    seen: dict[int, int] = {}
    by_request: list[list[ShotPart]] = [[] for _ in requests]
    shot_parts: dict[int, list[ShotPart]] = {}
    for r, shot, seconds in flat:
        part = ShotPart(shot=shot, seconds=seconds, part=seen.get(shot, 0), parts=counts[shot])
        seen[shot] = part.part + 1
        by_request[r].append(part)
        shot_parts.setdefault(shot, []).append(part)
    line_counts = dialogue_lines or [0] * len(durations)
    with_lines: dict[tuple[int, int], tuple[int, ...]] = {}
    for shot, parts in shot_parts.items():
        for part, lines in zip(parts, _assign_lines(parts, line_counts[shot]), strict=True):
            with_lines[(shot, part.part)] = lines
    segments = []
    start = 0
    for index, parts in enumerate(by_request):
        final = tuple(
            ShotPart(p.shot, p.seconds, p.part, p.parts, with_lines[(p.shot, p.part)]) for p in parts
        )
        content = sum(p.seconds for p in final)
        segments.append(Segment(index=index, parts=final, duration=max(content, MIN_DURATION), start=start))
        start += content
    return tuple(segments)
