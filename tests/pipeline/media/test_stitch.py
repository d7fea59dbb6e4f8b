"""Stitching with real ffmpeg on generated clips: length, sync, loudness, faststart, subtitles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import MediaError
from pipeline.media import stitch as stitch_module
from pipeline.media import stitch_commands
from pipeline.media.loudness import measure_loudness
from pipeline.media.probe import is_faststart, probe
from pipeline.media.qc import check
from pipeline.media.run import run_media_command
from pipeline.media.stitch import StitchResult, execute_stitch, join_pcm, stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions, plan_stitch
from pipeline.media.subtitles import Cue, DialogueLine, ShotTiming, cues_for_shots, parse_srt, to_srt

from .conftest import Spec, make_clip

TARGET_LUFS = -16.0


def _inputs(clips: list[tuple[Path, float]]) -> list[ClipInput]:
    return [ClipInput(path=str(p), scripted_s=s, label=p.stem) for p, s in clips]


def _dialogue_cues(clips: list[ClipInput], starts: list[float]) -> list[Cue]:
    shots = [
        ShotTiming(
            start_s=start,
            duration_s=clip.scripted_s,
            lines=(DialogueLine(speaker="mara", line=f"Line for {clip.label}."),)
            + ((DialogueLine(speaker="the old man", line="Aye."),) if i % 2 else ()),
        )
        for i, (clip, start) in enumerate(zip(clips, starts, strict=True))
    ]
    return cues_for_shots(shots)


def _embedded_cues(master: Path) -> list[Cue]:
    proc = run_media_command(["ffmpeg", "-v", "error", "-i", str(master), "-map", "0:s:0", "-f", "srt", "-"])
    return parse_srt(proc.stdout)


def assert_master(result: StitchResult, cues: list[Cue] | None, loudness: float | None) -> None:
    """Everything the issue asks of a delivered master."""
    master = Path(result.path)
    plan = result.plan
    p = probe(master)
    assert p.video is not None
    assert p.audio is not None
    joins = max(1, len(plan.clips) - 1)
    frame = plan.frame_s
    scripted = sum(c.scripted_s for c in plan.clips) - (len(plan.clips) - 1) * plan.crossfade_s
    assert abs(p.video_duration - scripted) <= joins * frame + 1e-3
    assert abs((p.audio_duration or 0) - p.video_duration) <= frame + 1e-3
    assert is_faststart(master)
    report = check(master, expect_duration=scripted, duration_tolerance_s=joins * frame)
    assert not report.of_kind("decode_error")
    assert not report.of_kind("duration")
    assert not report.of_kind("av_length")
    if loudness is not None:
        measured = measure_loudness(master).integrated_lufs
        assert measured is not None
        assert abs(measured - loudness) <= 1.0
    if cues:
        assert result.srt_path is not None
        assert Path(result.srt_path).read_text(encoding="utf-8") == to_srt(cues)
        embedded = _embedded_cues(master)
        assert [c.text for c in embedded] == [c.text for c in cues]
        for got, want in zip(embedded, cues, strict=True):
            assert got.start_s == pytest.approx(want.start_s, abs=0.002)
            assert got.end_s == pytest.approx(want.end_s, abs=0.002)
    else:
        assert result.srt_path is None
        assert not p.subtitles


def test_compatible_clips_are_stream_copied_with_rebuilt_audio(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    clips = _inputs(compatible_clips)
    plan = plan_stitch(clips, [probe(c.path) for c in clips], StitchOptions(loudness_lufs=TARGET_LUFS))
    cues = _dialogue_cues(clips, [c.start_s for c in plan.clips])
    result = execute_stitch(plan, tmp_path / "compat.mp4", subtitles=cues)
    assert result.plan.mode == "copy"
    assert_master(result, cues, TARGET_LUFS)
    # Copied, not re-encoded: the master's video carries the clips' own parameters.
    master_video = probe(result.path).video
    first_video = probe(clips[0].path).video
    assert master_video is not None
    assert first_video is not None
    assert master_video.extradata_hash == first_video.extradata_hash
    # One linear gain from the clips' own measurement; the master's level follows from it.
    assert result.source_loudness is not None
    assert result.level is not None and not result.level.limit
    measured = measure_loudness(result.path)
    assert result.loudness.integrated_lufs == pytest.approx(measured.integrated_lufs, abs=0.3)
    assert result.loudness.true_peak_dbtp == pytest.approx(measured.true_peak_dbtp, abs=0.5)
    assert result.probe.path == result.path
    assert result.size_bytes == Path(result.path).stat().st_size
    # Nothing but the master and its sidecar is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compat.mp4", "compat.srt"]


def test_mixed_clips_are_normalised_to_one_canvas(
    mixed_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    clips = _inputs(mixed_clips)
    plan = plan_stitch(clips, [probe(c.path) for c in clips], StitchOptions(loudness_lufs=TARGET_LUFS))
    cues = _dialogue_cues(clips, [c.start_s for c in plan.clips])
    result = execute_stitch(plan, tmp_path / "mixed.mp4", subtitles=cues)
    assert result.plan.mode == "reencode"
    assert_master(result, cues, TARGET_LUFS)
    video = probe(result.path).video
    assert video is not None
    assert (video.width, video.height) == plan.canvas
    assert video.sar == 1
    assert video.pix_fmt == "yuv420p"
    audio = probe(result.path).audio
    assert audio is not None
    assert (audio.sample_rate, audio.channels) == (48000, 2)
    # The clip without audio became silence exactly where it sits in the master.
    silent = plan.clips[1]
    report = check(result.path, expect_audio=True, duration_tolerance_s=len(clips) * plan.frame_s)
    spans = [(f.start_s, f.end_s) for f in report.of_kind("silence")]
    assert len(spans) == 1
    start, end = spans[0]
    assert start == pytest.approx(silent.start_s, abs=0.1)
    assert end == pytest.approx(silent.start_s + silent.take_s, abs=0.1)


def test_crossfades_shorten_the_master_by_the_overlaps(
    mixed_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    clips = _inputs(mixed_clips)
    options = StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=None)
    result = stitch(clips, tmp_path / "xfade.mp4", options)
    assert result.plan.xfade_offsets == pytest.approx([3.5, 6.0, 8.5])
    assert result.expected_duration_s == pytest.approx(13 - 3 * 0.5)
    assert result.level is None  # no target: the sound is encoded as it is
    assert result.source_loudness is not None
    assert_master(result, None, None)


def test_a_short_clip_holds_its_last_frame_into_a_crossfade(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    # 3 s of video scripted as 4.5 s: the crossfade's tail lies wholly in the held last frame.
    (first, _), (second, seconds) = compatible_clips[:2]
    clips = [ClipInput(path=str(first), scripted_s=4.5), ClipInput(path=str(second), scripted_s=seconds)]
    options = StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=None)
    result = stitch(clips, tmp_path / "held.mp4", options)
    assert result.plan.mode == "reencode"
    assert [p.kind for p in result.plan.pieces] == ["clip", "crossfade", "clip"]
    assert result.plan.pieces[1].spans[0].seek_s == pytest.approx(2.0)
    assert_master(result, None, None)


def test_a_master_that_does_not_verify_is_not_delivered(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    clips = _inputs(compatible_clips)
    plan = plan_stitch(clips, [probe(c.path) for c in clips], StitchOptions(loudness_lufs=None))
    wrong = plan.model_copy(update={"expected_duration_s": plan.expected_duration_s + 2})
    with pytest.raises(MediaError, match="failed verification"):
        execute_stitch(wrong, tmp_path / "m.mp4")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_piece_leaves_no_pieces_behind(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    clips = _inputs(compatible_clips)
    plan = plan_stitch(clips, [probe(c.path) for c in clips], StitchOptions(loudness_lufs=None))
    junk = tmp_path / "gone.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    broken = plan.clips[1].model_copy(update={"path": str(junk)})
    wrong = plan.model_copy(update={"clips": (plan.clips[0], broken, plan.clips[2])})
    with pytest.raises(MediaError, match=r"audio of clips 1-3 of 3 \(compat0.mp4, gone.mp4, compat2.mp4\)"):
        execute_stitch(wrong, tmp_path / "out" / "m.mp4")
    assert list((tmp_path / "out").iterdir()) == []


def test_peaks_the_gain_would_clip_are_limited_under_the_ceiling(clip_dir: Path, tmp_path: Path) -> None:
    clips = [
        ClipInput(path=str(make_clip(clip_dir / f"peaky{i}.mp4", Spec(audio="peaky", freq=f))), scripted_s=3)
        for i, f in enumerate((220, 330))
    ]
    result = stitch(clips, tmp_path / "peaky.mp4", StitchOptions(loudness_lufs=TARGET_LUFS))
    assert result.plan.mode == "copy"
    assert result.level is not None and result.level.limit
    assert_master(result, None, TARGET_LUFS)
    measured = measure_loudness(result.path)
    assert measured.true_peak_dbtp is not None
    # The ceiling (-1.5 dBTP), with the few tenths AAC may overshoot: QC's own allowance (-1.0).
    assert measured.true_peak_dbtp <= -1.0
    # Limited: measured in the stitch command itself, not predicted.
    assert result.loudness.integrated_lufs == pytest.approx(measured.integrated_lufs, abs=0.3)


def test_silent_clips_make_a_silent_master_without_any_loudness_work(
    qc_clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = stitch_module.ffmpeg  # type: ignore[attr-defined]

    def spy(args: list[str], **kwargs: object) -> str:
        calls.append(" ".join(args))
        return real(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stitch_module, "ffmpeg", spy)
    clips = [ClipInput(path=str(qc_clips["no_audio"]), scripted_s=4) for _ in range(2)]
    result = stitch(clips, tmp_path / "silent.mp4", StitchOptions(loudness_lufs=TARGET_LUFS))
    assert result.plan.mode == "copy"
    assert (result.source_loudness, result.level) == (None, None)
    assert len(calls) == 1  # the master alone: no audio decode, no measurement
    assert "ebur128" not in calls[0] and "volume" not in calls[0]
    assert_master(result, None, None)


def test_a_long_copy_master_decodes_its_audio_in_batches_and_measures_the_join(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stitch_commands, "MAX_CLIPS_PER_COMMAND", 2)
    clips = _inputs(compatible_clips)
    result = stitch(clips, tmp_path / "batched.mp4", StitchOptions(loudness_lufs=TARGET_LUFS))
    assert result.plan.mode == "copy"
    assert result.source_loudness is not None
    assert_master(result, None, TARGET_LUFS)


def test_a_missing_clip_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such media file"):
        stitch([ClipInput(path=str(tmp_path / "nope.mp4"), scripted_s=3)], tmp_path / "m.mp4")


def test_an_unreadable_clip_is_a_media_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="ffprobe"):
        stitch([ClipInput(path=str(junk), scripted_s=3)], tmp_path / "m.mp4")


def test_pcm_pieces_are_joined_byte_for_byte(tmp_path: Path) -> None:
    parts = [tmp_path / f"p{i}.pcm" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_bytes(bytes([i]) * (1000 + i))
    written = join_pcm(parts, tmp_path / "all.pcm", remove=True)
    assert written == 3003
    assert (tmp_path / "all.pcm").read_bytes() == b"\x00" * 1000 + b"\x01" * 1001 + b"\x02" * 1002
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.pcm"]
