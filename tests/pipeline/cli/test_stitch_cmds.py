"""``klingflow stitch`` (:mod:`pipeline.cli.stitch_cmds`): real ffmpeg on small clips, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_DATAERR, EXIT_FAILURE, EXIT_NOINPUT, EXIT_USAGE
from pipeline.media.loudness import measure_loudness
from pipeline.media.probe import probe
from pipeline.media.subtitles import Cue, to_srt
from tests.pipeline.media.conftest import Spec, make_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stitch-cli")
    return {
        "a": make_clip(folder / "a.mp4", Spec(seconds=2.0, freq=440)),
        "b": make_clip(folder / "b.mp4", Spec(seconds=3.0, freq=660)),
        "black": make_clip(folder / "black.mp4", Spec(seconds=3.0, black=(0.5, 2.5))),
    }


def test_clips_are_stitched_whole_levelled_and_checked(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edit" / "master.mp4"
    code = main(["stitch", str(clips["a"]), str(clips["b"]), "--out", str(out), "--loudness", "-20"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "video stream-copied" in printed
    assert "quality checks passed" in printed
    master = probe(out)
    assert master.video_duration == pytest.approx(5.0, abs=1 / 24 + 1e-3)
    measured = measure_loudness(out).integrated_lufs
    assert measured is not None and abs(measured + 20) <= 1.0


def test_crossfades_and_subtitles_are_applied(clips: dict[str, Path], tmp_path: Path) -> None:
    srt = tmp_path / "lines.srt"
    srt.write_text(to_srt([Cue(start_s=0.5, end_s=2.0, text="Cast off!")]), encoding="utf-8")
    out = tmp_path / "xfade.mp4"
    args = [str(clips["a"]), str(clips["b"]), "--out", str(out), "--transition", "crossfade"]
    assert main(["stitch", *args, "--crossfade-seconds", "0.5", "--subtitles", str(srt)]) == 0
    master = probe(out)
    assert master.video_duration == pytest.approx(4.5, abs=1 / 24 + 1e-3)
    assert master.subtitles
    assert out.with_suffix(".srt").read_text(encoding="utf-8") == srt.read_text(encoding="utf-8")


def test_a_master_failing_its_checks_exits_1_and_is_kept(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "black.mp4"
    assert main(["stitch", str(clips["a"]), str(clips["black"]), "--out", str(out)]) == EXIT_FAILURE
    captured = capsys.readouterr()
    assert "error: black" in captured.out
    assert "failed its quality checks" in captured.err
    assert out.is_file()
    # Without the checks the same master is simply written.
    assert main(["stitch", str(clips["a"]), str(clips["black"]), "--out", str(out), "--no-qc"]) == 0


def test_a_missing_clip_exits_66_naming_it(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.mp4"
    assert main(["stitch", str(clips["a"]), str(tmp_path / "gone.mp4"), "--out", str(out)]) == EXIT_NOINPUT
    assert "clip 2: " in capsys.readouterr().err
    assert not out.exists()


def test_a_clip_that_is_not_media_exits_65(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video", encoding="utf-8")
    assert main(["stitch", str(junk), str(clips["a"]), "--out", str(tmp_path / "m.mp4")]) == EXIT_DATAERR
    assert "clip 1: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "code", "said"),
    [
        (["--transition", "wipe"], EXIT_USAGE, "'wipe' is not one of"),
        (["--loudness", "3"], EXIT_USAGE, "--loudness"),
        (["--crossfade-seconds", "0"], EXIT_USAGE, "--crossfade-seconds"),
        (["--transition", "crossfade", "--crossfade-seconds", "1.5"], EXIT_DATAERR, "longer than half"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    clips: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    said: str,
) -> None:
    out = tmp_path / "m.mp4"
    assert main(["stitch", str(clips["a"]), str(clips["b"]), "--out", str(out), *extra]) == code
    assert said in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_bad_subtitles_and_an_output_over_a_clip_are_refused(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.srt"
    empty.write_text("no cues here\n", encoding="utf-8")
    out = str(tmp_path / "m.mp4")
    assert main(["stitch", str(clips["a"]), "--out", out, "--subtitles", str(empty)]) == EXIT_DATAERR
    assert "holds no SRT cue" in capsys.readouterr().err
    assert (
        main(["stitch", str(clips["a"]), "--out", out, "--subtitles", str(tmp_path / "x.srt")])
        == EXIT_NOINPUT
    )
    assert main(["stitch", str(clips["a"]), "--out", str(clips["a"])]) == EXIT_DATAERR
    assert "is one of the clips" in capsys.readouterr().err
