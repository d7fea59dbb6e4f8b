"""Small test clips made once per session with real ffmpeg (320x180-class, a few seconds each)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.media.run import ffmpeg


@dataclass(frozen=True)
class Spec:
    """How to make one test clip."""

    size: str = "320x180"
    fps: int = 24
    seconds: float = 3.0
    audio: str | None = "tone"  # tone | peaky | silent | None
    freq: int = 440
    sample_rate: int = 44100
    sar: str = "1"  # setsar syntax: "1", "4/3"
    black: tuple[float, float] | None = None  # black frames from .. to
    freeze: tuple[float, float] | None = None  # frozen picture from .. to


def make_clip(path: Path, spec: Spec) -> Path:
    """Encode a test clip (libx264 yuv420p, AAC) following ``spec``; returns ``path``."""
    args = ["-y", "-f", "lavfi", "-i", f"testsrc2=s={spec.size}:r={spec.fps}:d={spec.seconds}"]
    if spec.audio == "tone":
        args += ["-f", "lavfi", "-i", f"sine=f={spec.freq}:r={spec.sample_rate}:d={spec.seconds}"]
    elif spec.audio == "peaky":
        # A quiet hum with loud 2 ms clicks twice a second: a gain to -16 LUFS needs a limiter.
        expr = f"0.05*sin(2*PI*{spec.freq}*t)+0.9*sin(2*PI*1000*t)*lt(mod(t\\,0.5)\\,0.002)"
        args += ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={spec.sample_rate}:d={spec.seconds}"]
    elif spec.audio == "silent":
        args += ["-f", "lavfi", "-i", f"anullsrc=r={spec.sample_rate}:cl=stereo:d={spec.seconds}"]
    if spec.freeze:
        # Moving up to a, the frame at a held until b, moving again from b.
        a, b = spec.freeze
        graph = (
            f"[0:v]split[x][y];[x]trim=0:{a},setpts=PTS-STARTPTS,"
            f"tpad=stop_mode=clone:stop_duration={b - a}[p];"
            f"[y]trim={b}:{spec.seconds},setpts=PTS-STARTPTS[q];[p][q]concat=n=2:v=1[c]"
        )
    else:
        graph = "[0:v]null[c]"
    graph += f";[c]setsar={spec.sar}"
    if spec.black:
        a, b = spec.black
        graph += f",drawbox=c=black:t=fill:enable='between(t,{a},{b})'"
    args += ["-filter_complex", graph + "[v]", "-map", "[v]"]
    if spec.audio:
        args += ["-map", "1:a", "-c:a", "aac", "-b:a", "96k"]
    args += ["-t", str(spec.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    ffmpeg([*args, str(path)], timeout=120, what=f"make test clip {path.name}")
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def compatible_clips(clip_dir: Path) -> list[tuple[Path, float]]:
    """Three clips with identical video parameters and audio: (path, scripted seconds)."""
    out = []
    for i, (seconds, freq) in enumerate([(3.0, 440), (4.0, 550), (3.0, 660)]):
        out.append((make_clip(clip_dir / f"compat{i}.mp4", Spec(seconds=seconds, freq=freq)), seconds))
    return out


@pytest.fixture(scope="session")
def mixed_clips(clip_dir: Path) -> list[tuple[Path, float]]:
    """Mixed sizes, aspect ratios, rates, an anamorphic clip, one without audio, one too long."""
    specs = [
        ("wide", Spec(size="320x180", fps=24, seconds=4.0, freq=440, sample_rate=48000), 4.0),
        ("tall_silent", Spec(size="180x320", fps=30, seconds=3.0, audio=None), 3.0),
        ("anamorphic", Spec(size="240x180", fps=25, seconds=3.0, sar="4/3", freq=330), 3.0),
        ("too_long", Spec(size="256x144", fps=24, seconds=5.0, freq=880), 3.0),
    ]
    return [(make_clip(clip_dir / f"mixed_{name}.mp4", spec), scripted) for name, spec, scripted in specs]


@pytest.fixture(scope="session")
def qc_clips(clip_dir: Path) -> dict[str, Path]:
    """Clips with planted defects, and a clean one."""
    specs = {
        "clean": Spec(seconds=4.0),
        "black": Spec(seconds=4.0, black=(1.0, 2.5)),
        "frozen": Spec(seconds=4.0, freeze=(1.0, 3.0)),
        "no_audio": Spec(seconds=4.0, audio=None),
        "silent": Spec(seconds=4.0, audio="silent"),
    }
    return {name: make_clip(clip_dir / f"qc_{name}.mp4", spec) for name, spec in specs.items()}
