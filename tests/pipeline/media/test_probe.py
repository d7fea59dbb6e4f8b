"""The typed probe and the MP4 box reader."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from pipeline.errors import MediaError
from pipeline.media.probe import is_faststart, probe, top_level_boxes
from pipeline.media.run import ffmpeg


def test_probe_reads_streams_and_lengths(mixed_clips: list[tuple[Path, float]]) -> None:
    anamorphic = probe(mixed_clips[2][0])
    assert anamorphic.video is not None
    assert anamorphic.video.sar == Fraction(4, 3)
    assert anamorphic.video.display_size == (320, 180)
    assert anamorphic.video.frame_rate == 25
    assert anamorphic.video.extradata_hash
    assert anamorphic.video_duration == pytest.approx(3.0)
    silent = probe(mixed_clips[1][0])
    assert silent.audio is None
    assert silent.audio_duration is None


def test_missing_and_unreadable_files_are_media_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such media file"):
        probe(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("hello")
    with pytest.raises(MediaError, match="ffprobe"):
        probe(junk)


def test_box_order_tells_faststart_apart(compatible_clips: list[tuple[Path, float]], tmp_path: Path) -> None:
    clip = compatible_clips[0][0]
    plain = tmp_path / "plain.mp4"
    fast = tmp_path / "fast.mp4"
    ffmpeg(["-y", "-i", str(clip), "-c", "copy", str(plain)])
    ffmpeg(["-y", "-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(fast)])
    assert top_level_boxes(plain).index("mdat") < top_level_boxes(plain).index("moov")
    assert not is_faststart(plain)
    assert is_faststart(fast)
