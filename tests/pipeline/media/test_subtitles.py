"""Cues from dialogue and the SRT format."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.media.run import ffmpeg
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions
from pipeline.media.subtitles import (
    MAX_CUE_CHARS,
    MAX_CUE_S,
    MIN_CUE_S,
    READING_CPS,
    Cue,
    DialogueLine,
    ShotTiming,
    cue_text,
    cues_for_shots,
    parse_srt,
    reading_seconds,
    split_text,
    to_srt,
    track_language,
)


def test_lines_share_their_shot_in_order_by_length() -> None:
    shot = ShotTiming(
        start_s=10,
        duration_s=12,
        lines=(DialogueLine(speaker="mara", line="a" * 40), DialogueLine(speaker="", line="b" * 20)),
    )
    cues = cues_for_shots([shot])
    assert [c.text for c in cues] == ["Mara: " + "a" * 40, "b" * 20]
    # Shares 8 s and 4 s; each cue shown for its reading time at 17 characters a second.
    assert cues[0].start_s == 10 and cues[0].end_s == pytest.approx(10 + 46 / 17)
    assert cues[1].start_s == 18 and cues[1].end_s == pytest.approx(18 + 20 / 17)


def test_a_six_word_line_no_longer_stays_eight_seconds() -> None:
    """The issue's case: a short line alone in an 8 s shot is shown for its reading time."""
    (cue,) = cues_for_shots(
        [
            ShotTiming(
                start_s=0,
                duration_s=8,
                lines=(DialogueLine(speaker="mara", line="Hold the light steady, Tomas."),),
            )
        ]
    )
    assert cue.end_s - cue.start_s == pytest.approx(len("Mara: Hold the light steady, Tomas.") / READING_CPS)


def test_a_short_line_gets_at_least_a_second_and_a_long_one_is_split() -> None:
    (short,) = cues_for_shots([ShotTiming(start_s=0, duration_s=5, lines=(DialogueLine(line="No."),))])
    assert short.end_s - short.start_s == MIN_CUE_S
    words = " ".join(f"word{i:02d}" for i in range(40))  # 279 characters: over 16 s of reading
    cues = cues_for_shots([ShotTiming(start_s=0, duration_s=20, lines=(DialogueLine(line=words),))])
    assert len(cues) == 3
    assert " ".join(c.text for c in cues) == words
    assert all(len(c.text) <= MAX_CUE_CHARS and c.end_s - c.start_s <= MAX_CUE_S for c in cues)


def test_split_text_balances_chunks_between_words() -> None:
    assert split_text("aaa bbb ccc ddd", max_chars=8) == ["aaa bbb", "ccc ddd"]
    assert split_text("x" * 30, max_chars=8) == ["x" * 30]  # one word stays whole


def test_track_language_is_the_dialogues_most_common_in_iso_639_2t() -> None:
    assert track_language(["en", "en", "es"]) == "eng"
    assert track_language(["zh"]) == "zho"  # terminology code, as MP4 wants, not "chi"
    assert track_language([]) == "und"


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=15),
            st.lists(st.text(alphabet="abc xyz!", min_size=1, max_size=200).filter(str.strip), max_size=4),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_cues_stay_in_their_shot_in_order_and_readable(shots: list[tuple[int, list[str]]]) -> None:
    timings, start = [], 0.0
    for seconds, lines in shots:
        timings.append(
            ShotTiming(start_s=start, duration_s=seconds, lines=tuple(DialogueLine(line=t) for t in lines))
        )
        start += seconds
    cues = cues_for_shots(timings)
    assert len(cues) >= sum(len(lines) for _, lines in shots)
    for a, b in itertools.pairwise(cues):
        assert a.end_s <= b.start_s + 1e-9
    for cue in cues:
        assert cue.end_s - cue.start_s <= max(MIN_CUE_S, reading_seconds(cue.text)) + 1e-9
        assert cue.end_s - cue.start_s <= MAX_CUE_S
        shot = next(t for t in timings if t.start_s <= cue.start_s < t.start_s + t.duration_s)
        assert cue.end_s <= shot.start_s + shot.duration_s + 1e-9
    for timing in timings:
        if timing.lines:
            assert any(c.start_s == timing.start_s for c in cues)


def test_cue_text_collapses_whitespace() -> None:
    assert cue_text(DialogueLine(speaker="the old man", line=" Aye,\n  lad. ")) == "The old man: Aye, lad."


def test_srt_layout() -> None:
    text = to_srt([Cue(start_s=0, end_s=1.5, text="Hi"), Cue(start_s=3661.007, end_s=3662, text="Bye")])
    assert text == "1\n00:00:00,000 --> 00:00:01,500\nHi\n\n2\n01:01:01,007 --> 01:01:02,000\nBye\n"


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000_000),
            st.integers(min_value=1, max_value=100_000),
            st.text(alphabet="abc XYZ,.'", min_size=1, max_size=40).filter(str.strip),
        ),
        max_size=10,
    )
)
def test_srt_round_trips(raw: list[tuple[int, int, str]]) -> None:
    cues = [Cue(start_s=s / 1000, end_s=(s + d) / 1000, text=t.strip()) for s, d, t in raw]
    assert parse_srt(to_srt(cues)) == cues


def test_a_cue_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        Cue(start_s=2, end_s=1, text="x")


HOSTILE = "Mara: <b>bold</b> --> {\\an8}top {Y:i} C:\\new 00:00:01,000 --> 00:00:02,000 a<3 {x}"


def test_markup_is_neutralised_in_the_srt_and_reads_back_as_written() -> None:
    cues = [Cue(start_s=0, end_s=1, text=HOSTILE), Cue(start_s=1, end_s=2, text="next")]
    text = to_srt(cues)
    # No tag, override block, escape or timing arrow survives for a reader to interpret...
    body = text.split("\n")[2]
    for token in ("<b>", "</b>", "-->", "{\\an8}", "{Y:", "\\n"):
        assert token not in body, token
    # ...nothing visible changed, and both cues still parse, each with its own text.
    assert body.replace("\u200b", "") == HOSTILE
    assert parse_srt(text) == cues


@given(st.text(alphabet="ab<>/{}\\-:nNhY 0123456789,", min_size=1, max_size=30).filter(str.strip))
def test_any_markup_round_trips(line: str) -> None:
    cues = [Cue(start_s=0, end_s=1, text=line.strip()), Cue(start_s=2, end_s=3, text="x")]
    assert parse_srt(to_srt(cues)) == cues


@pytest.mark.slow
def test_the_embedded_track_shows_the_line_as_written(tmp_path: Path) -> None:
    """Through ffmpeg's SRT reader and mov_text writer and back (libavcodec/htmlsubtitles.c drops
    ``<b>``-style tags and ``{\\...}`` blocks it recognises): the text arrives as written."""
    clip = tmp_path / "clip.mp4"
    ffmpeg(
        [
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x36:r=12:d=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(clip),
        ],
        what="test clip",
    )
    options = StitchOptions(loudness_lufs=None, subtitle_language="spa")
    result = stitch([ClipInput(path=str(clip), scripted_s=2)], tmp_path / "m.mp4", options,
                    subtitles=[Cue(start_s=0, end_s=1.5, text=HOSTILE)])  # fmt: skip
    # The track carries the dialogue's language (the issue saw "und" for English lines).
    language = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "s:0", "-show_entries", "stream_tags=language",
         "-of", "csv=p=0", result.path],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert language == "spa"
    out = tmp_path / "track.srt"
    ffmpeg(["-y", "-i", result.path, "-map", "0:s:0", "-c:s", "srt", str(out)], what="extract subtitles")
    (cue,) = parse_srt(out.read_text(encoding="utf-8"))
    assert cue.text.replace("\u200b", "") == HOSTILE
