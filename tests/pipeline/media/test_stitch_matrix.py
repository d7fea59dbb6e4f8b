"""Every combination of master settings renders, covered pairwise with tiny synthetic clips.

Each setting below is one dimension; the rows are chosen so that every pair of values of any two
dimensions appears in at least one render (a greedy all-pairs cover, deterministic). Continuity
(chained or independent) does not reach the stitcher — it changes which clips are bought, not how
they are joined — so it is exercised by ``tests/test_configs_render.py`` instead.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest

from pipeline.media.probe import probe
from pipeline.media.qc import check
from pipeline.media.run import ffmpeg
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions
from pipeline.media.subtitles import Cue, parse_srt

DIMENSIONS: dict[str, tuple[object, ...]] = {
    "aspect": ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9"),
    "audio": ("silent", "audible", "mixed"),
    "segments": (1, 2, 3),
    "transition": ("cut", "crossfade"),
    "subtitles": (False, True),
    "loudness": (None, -16.0),
    "trim": (False, True),  # clips longer than scripted (the provider's 3 s minimum)
}
FPS = 12
WIDTH = 64
SCRIPTED = (2, 3, 2)
CROSSFADE = 0.5


Pair = tuple[tuple[str, object], tuple[str, object]]


def _gain(uncovered: set[Pair], row: dict[str, object], name: str, value: object) -> int:
    """How many uncovered pairs choosing ``value`` for ``name`` would cover in ``row``."""
    return sum(
        1
        for other, chosen in row.items()
        if ((other, chosen), (name, value)) in uncovered or ((name, value), (other, chosen)) in uncovered
    )


def all_pairs(dimensions: dict[str, tuple[object, ...]]) -> list[dict[str, object]]:
    """Rows covering every pair of values of every two dimensions (greedy, deterministic)."""
    names = list(dimensions)
    uncovered: set[Pair] = {
        ((a, va), (b, vb))
        for a, b in itertools.combinations(names, 2)
        for va in dimensions[a]
        for vb in dimensions[b]
    }
    rows: list[dict[str, object]] = []
    while uncovered:
        # Seed the row with an uncovered pair, then fill every other dimension greedily.
        (a, va), (b, vb) = min(uncovered, key=repr)
        row: dict[str, object] = {a: va, b: vb}
        for name in names:
            if name not in row:
                row[name] = max(dimensions[name], key=functools.partial(_gain, uncovered, row, name))
        rows.append(row)
        uncovered -= {((x, row[x]), (y, row[y])) for x, y in itertools.combinations(names, 2)}
    return rows


ROWS = all_pairs(DIMENSIONS)


def test_the_rows_cover_every_pair_in_few_renders() -> None:
    names = list(DIMENSIONS)
    for a, b in itertools.combinations(names, 2):
        seen = {(row[a], row[b]) for row in ROWS}
        assert seen == set(itertools.product(DIMENSIONS[a], DIMENSIONS[b])), (a, b)
    assert len(ROWS) <= 40


def _size(aspect: str) -> str:
    w, h = (int(x) for x in aspect.split(":"))
    height = round(WIDTH * h / w)
    return f"{WIDTH}x{height - height % 2}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool, int], Path]:
    """One tiny clip per aspect ratio, audio or none, and length; made lazily, kept per module."""
    folder = tmp_path_factory.mktemp("matrix")
    made: dict[tuple[str, bool, int], Path] = {}

    class Lazy(dict[tuple[str, bool, int], Path]):
        def __missing__(self, key: tuple[str, bool, int]) -> Path:
            aspect, audio, seconds = key
            path = folder / f"{aspect.replace(':', 'x')}-{'a' if audio else 's'}-{seconds}.mp4"
            args = ["-y", "-f", "lavfi", "-i", f"testsrc2=s={_size(aspect)}:r={FPS}:d={seconds}"]
            if audio:
                args += ["-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.2:r=48000:d={seconds}"]
                args += ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]
            args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
            ffmpeg(args, timeout=60, what=f"matrix clip {path.name}")
            self[key] = path
            return path

    return Lazy(made)


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=lambda r: "-".join(f"{v}" for v in r.values()))
def test_every_combination_renders_at_its_scripted_length(
    row: dict[str, object], clips: dict[tuple[str, bool, int], Path], tmp_path: Path
) -> None:
    n = int(str(row["segments"]))
    scripted = SCRIPTED[:n]
    audio = {"silent": [False] * n, "audible": [True] * n, "mixed": [i % 2 == 1 for i in range(n)]}[
        str(row["audio"])
    ]
    if row["audio"] == "mixed" and n == 1:
        audio = [False]
    extra = 1 if row["trim"] else 0
    inputs = [
        ClipInput(path=str(clips[(str(row["aspect"]), a, s + extra)]), scripted_s=s)
        for s, a in zip(scripted, audio, strict=True)
    ]
    # Dialogue with markup in it: it must survive as written (issue 12, item 10).
    cues = [Cue(start_s=0.2, end_s=1.5, text="Mara: <b>go</b> --> {\\an8}now")] if row["subtitles"] else None
    options = StitchOptions(
        transition=row["transition"],
        crossfade_s=CROSSFADE,
        loudness_lufs=row["loudness"],
    )
    result = stitch(inputs, tmp_path / "master.mp4", options, subtitles=cues)

    # script-format.md: Σ shots − (segments − 1) × crossfade_seconds, within one frame per join.
    joins = n - 1
    expected = sum(scripted) - (joins * CROSSFADE if row["transition"] == "crossfade" else 0.0)
    tolerance = max(1, joins) / FPS + 1e-3
    assert abs(result.video_s - expected) <= tolerance, (result.video_s, expected)
    assert abs(result.audio_s - result.video_s) <= 1 / FPS + 1e-3
    info = probe(result.path)
    assert info.audio is not None
    assert bool(info.subtitles) == bool(cues)
    report = check(result.path, expect_duration=expected, duration_tolerance_s=tolerance)
    assert not report.of_kind("duration") and not report.of_kind("decode_error"), report.findings
    if cues:
        assert result.srt_path is not None
        assert parse_srt(Path(result.srt_path).read_text(encoding="utf-8"))[0].text == cues[0].text
