"""pipeline.media.qc_master: a master's QC from its clips' detections, its joins and its audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.media.probe import probe
from pipeline.media.qc import QCThresholds, check, detect
from pipeline.media.qc_master import PlacedClip, check_master, merge_intervals
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions

from .conftest import Spec, make_clip


def test_overlapping_and_touching_intervals_merge() -> None:
    spans = [(5.0, 6.0), (0.0, 1.0), (0.9, 2.0), (2.05, 3.0), (4.0, 4.5)]
    assert merge_intervals(spans, 0.1) == ((0.0, 3.0), (4.0, 4.5), (5.0, 6.0))
    assert merge_intervals([], 0.1) == ()


def _master_report(clips: list[Path], seconds: list[float], out: Path) -> tuple[object, object]:
    limits = QCThresholds()
    inputs = [ClipInput(path=str(c), scripted_s=s) for c, s in zip(clips, seconds, strict=True)]
    probes = [probe(c) for c in clips]
    result = stitch(inputs, out, StitchOptions(loudness_lufs=None), probes=probes)
    placed = [
        PlacedClip(start_s=c.start_s, take_s=c.take_s, detections=detect(p, limits))
        for c, p in zip(result.plan.clips, probes, strict=True)
    ]
    fast = check_master(
        result.probe,
        placed,
        result.loudness,
        expect_duration=result.expected_duration_s,
        expect_audio=True,
        duration_tolerance_s=result.plan.tolerance_s,
    )
    full = check(
        out,
        expect_duration=result.expected_duration_s,
        expect_audio=True,
        duration_tolerance_s=result.plan.tolerance_s,
    )
    return fast, full


def test_black_split_across_a_join_is_found_though_neither_clip_shows_it(
    clip_dir: Path, tmp_path: Path
) -> None:
    # 0.3 s of black each side of the cut: under the 0.5 s threshold in each clip, 0.6 s in the master.
    tail = make_clip(clip_dir / "black_tail.mp4", Spec(seconds=3.0, black=(2.7, 3.0)))
    head = make_clip(clip_dir / "black_head.mp4", Spec(seconds=3.0, black=(0.0, 0.3)))
    assert not detect(probe(tail), QCThresholds()).black
    fast, full = _master_report([tail, head], [3.0, 3.0], tmp_path / "m.mp4")
    (black,) = fast.of_kind("black")  # type: ignore[attr-defined]
    assert black.start_s == pytest.approx(2.7, abs=0.1)
    assert black.end_s == pytest.approx(3.3, abs=0.1)
    # The same verdict as a full decode of the master.
    assert [f.kind for f in fast.findings] == [f.kind for f in full.findings]  # type: ignore[attr-defined]


def test_a_clips_own_freeze_lands_where_the_clip_sits(qc_clips: dict[str, Path], tmp_path: Path) -> None:
    fast, full = _master_report([qc_clips["clean"], qc_clips["frozen"]], [4.0, 4.0], tmp_path / "f.mp4")
    (frozen,) = fast.of_kind("frozen")  # type: ignore[attr-defined]
    assert frozen.start_s == pytest.approx(5.0, abs=0.3)
    assert frozen.end_s == pytest.approx(7.0, abs=0.2)
    (seen,) = full.of_kind("frozen")  # type: ignore[attr-defined]
    assert seen.start_s == pytest.approx(frozen.start_s, abs=0.2)
    assert fast.passed is full.passed is False  # type: ignore[attr-defined]


def test_silence_in_the_master_is_heard_from_its_audio(qc_clips: dict[str, Path], tmp_path: Path) -> None:
    fast, _ = _master_report([qc_clips["clean"], qc_clips["silent"]], [4.0, 4.0], tmp_path / "s.mp4")
    (silence,) = fast.of_kind("silence")  # type: ignore[attr-defined]
    assert silence.start_s == pytest.approx(4.0, abs=0.1)
