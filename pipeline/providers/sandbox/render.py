"""Rendering a sandbox clip with ffmpeg: the command is built as data, run at the edge.

A clip is H.264 + AAC (audio only when asked), exactly the requested duration, at the tier's
resolution for the aspect ratio (× ``render_scale``). The picture says which request it is (a
fingerprint of its inputs, tier, aspect ratio, seed) and which shot is playing, over a moving
test pattern tinted by the seed. With a start image the first second shows that image; with an
end image the last second does. An image the sandbox could not fetch (a remote URL: it runs
offline) is shown as a labelled grey placeholder instead. Same inputs and seed → byte-identical file (bitexact flags,
fixed threads, no metadata).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.errors import MediaError
from pipeline.media.run import ffmpeg
from pipeline.pricing import Tier

FONT: Final = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#: Frame sizes for 1080p-class tiers; 4k doubles them (3840×2160 for 16:9).
FRAME_1080: Final[dict[str, tuple[int, int]]] = {
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "1:1": (1080, 1080),
    "4:3": (1440, 1080),
    "3:4": (1080, 1440),
    "21:9": (2520, 1080),
}
IMAGE_SECONDS: Final = 1.0
ENCODE_THREADS: Final = 2
SAMPLE_RATE: Final = 48000
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
#: "Shot 2: …", and the prompt compiler's "Shot 2 (4 s, wide, low angle): …" form.
_SHOT = re.compile(r"\bshot\s*(\d+)\s*(?:\(([^()]*)\)\s*)?[:.\-–]\s*", re.IGNORECASE)
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\b")


def frame_size(tier: Tier, aspect_ratio: str, render_scale: float = 1.0) -> tuple[int, int]:
    """Width and height of a clip (even numbers, as yuv420p needs)."""
    width, height = FRAME_1080[aspect_ratio]
    factor = (2 if tier is Tier.K4 else 1) * render_scale
    return max(2 * round(width * factor / 2), 16), max(2 * round(height * factor / 2), 16)


def split_shots(prompt: str, duration: float) -> tuple[tuple[float, float, str], ...]:
    """(start, end, label) per "Shot N:" section of ``prompt``, sharing the duration evenly."""
    marks = list(_SHOT.finditer(prompt))
    if not marks:
        texts = [prompt.strip()]
    else:
        texts = [
            prompt[m.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(prompt))].strip()
            for i, m in enumerate(marks)
        ]
    n = len(texts)
    # Shot lengths from "Shot N (4 s, …)" headers when every shot has one, else equal shares.
    stated = [_SECONDS.match(m.group(2) or "") for m in marks]
    weights = [float(x.group(1)) for x in stated if x] if marks and all(stated) else [1.0] * n
    total = sum(weights) or float(n)
    bounds = [0.0]
    for weight in weights:
        bounds.append(bounds[-1] + duration * weight / total)
    return tuple(
        (round(bounds[i], 3), round(bounds[i + 1], 3), f"Shot {i + 1}/{n}: {_clip_text(t, 70)}")
        for i, t in enumerate(texts)
    )


def _clip_text(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Placeholder:
    """An image the sandbox cannot show (e.g. a remote URL): drawn as a grey card with ``label``."""

    label: str


@dataclass(frozen=True)
class RenderJob:
    """Everything that decides a clip's bytes."""

    fingerprint: str
    tier: Tier
    aspect_ratio: str
    duration: int
    audio: bool
    seed: int
    prompt: str
    width: int
    height: int
    fps: int = 24
    start_image: Path | Placeholder | None = None
    end_image: Path | Placeholder | None = None

    @property
    def header(self) -> str:
        """The request line burnt into the picture."""
        sound = "audio" if self.audio else "silent"
        return (
            f"req {self.fingerprint} · {self.tier.value} {self.aspect_ratio} · "
            f"{self.duration} s · seed {self.seed} · {sound}"
        )


def _safe(path: Path) -> str:
    # Paths go inside a filtergraph, whose quoting rules nest two levels deep; we only ever
    # put paths we created there, and refuse anything that would need quoting.
    text = str(path)
    if not _SAFE_PATH.match(text):
        raise MediaError(f"unsafe path for an ffmpeg filtergraph: {text!r}")
    return text


def build_filtergraph(job: RenderJob, text_dir: Path) -> tuple[str, dict[str, str]]:
    """The filtergraph (``-filter_complex_script`` text) and the text files it reads.

    Texts go through ``textfile=`` so that prompts never need filtergraph escaping.
    """
    w, h, d, fps = job.width, job.height, job.duration, job.fps
    font = _safe(Path(FONT))
    size_big = max(h // 22, 8)
    size_small = max(h // 30, 6)
    files: dict[str, str] = {"header.txt": job.header, "clock.txt": "t %{pts:hms}  frame %{n}"}
    hue = job.seed % 360
    chains = [
        f"testsrc2=size={w}x{h}:rate={fps}:duration={d},hue=h={hue},format=yuv420p,"
        f"drawbox=x=0:y=ih*0.68:w=iw:h=ih*0.32:color=black@0.6:t=fill,"
        f"drawtext=fontfile={font}:textfile={_safe(text_dir / 'header.txt')}:expansion=none:"
        f"fontsize={size_big}:fontcolor=white:x=w*0.03:y=h*0.71"
    ]
    for i, (start, end, label) in enumerate(split_shots(job.prompt, d)):
        name = f"shot{i + 1}.txt"
        files[name] = label
        chains.append(
            f"drawtext=fontfile={font}:textfile={_safe(text_dir / name)}:expansion=none:"
            f"fontsize={size_small}:fontcolor=yellow:x=w*0.03:y=h*0.80:"
            f"enable='between(t,{start},{end})'"
        )
    chains.append(
        f"drawtext=fontfile={font}:textfile={_safe(text_dir / 'clock.txt')}:"
        f"fontsize={size_small}:fontcolor=white:x=w*0.03:y=h*0.89"
    )
    graph = ",".join(chains) + "[base]"
    last = "base"
    index = -1  # image inputs are the only -i inputs: 0, then 1
    fit = (
        f"scale={w}:{h}:force_original_aspect_ratio=decrease,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={fps},format=yuva420p"
    )
    if isinstance(job.start_image, Placeholder):
        files["start.txt"] = job.start_image.label
        graph += f";[{last}]{_card(job, text_dir / 'start.txt', 0.0)}[withstart]"
        last = "withstart"
    elif job.start_image is not None:
        index += 1
        fade_at = IMAGE_SECONDS * 0.8
        graph += (
            f";[{index}:v]{fit},fade=t=out:st={fade_at}:d={IMAGE_SECONDS - fade_at:.2f}:alpha=1[start];"
            f"[{last}][start]overlay=eof_action=pass:format=auto[withstart]"
        )
        last = "withstart"
    if isinstance(job.end_image, Placeholder):
        files["end.txt"] = job.end_image.label
        graph += f";[{last}]{_card(job, text_dir / 'end.txt', d - IMAGE_SECONDS)}[withend]"
        last = "withend"
    elif job.end_image is not None:
        index += 1
        graph += (
            f";[{index}:v]{fit},fade=t=in:st=0:d=0.2:alpha=1,setpts=PTS+{d - IMAGE_SECONDS}/TB[end];"
            f"[{last}][end]overlay=eof_action=pass:format=auto[withend]"
        )
        last = "withend"
    graph += f";[{last}]format=yuv420p[v]"
    if job.audio:
        tone = 220 + (job.seed % 8) * 55
        graph += (
            f";sine=frequency={tone}:beep_factor=4:sample_rate={SAMPLE_RATE}:duration={d},"
            f"aformat=sample_fmts=fltp:channel_layouts=stereo[a]"
        )
    return graph, files


def _card(job: RenderJob, label_file: Path, start: float) -> str:
    """Filters drawing a grey card with a label for one second from ``start``."""
    font = _safe(Path(FONT))
    when = f"enable='between(t,{start},{start + IMAGE_SECONDS})'"
    return (
        f"drawbox=x=0:y=0:w=iw:h=ih:color=gray:t=fill:{when},"
        f"drawtext=fontfile={font}:textfile={_safe(label_file)}:expansion=none:"
        f"fontsize={max(job.height // 18, 8)}:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2:{when}"
    )


def build_args(job: RenderJob, out: Path, graph_file: Path) -> list[str]:
    """ffmpeg arguments (without the binary) that render ``job`` into ``out``."""
    args: list[str] = []
    for image in (job.start_image, job.end_image):
        if isinstance(image, Path):
            args += ["-loop", "1", "-framerate", str(job.fps), "-t", str(IMAGE_SECONDS), "-i", str(image)]
    args += ["-filter_threads", "1", "-filter_complex_script", str(graph_file), "-map", "[v]"]
    if job.audio:
        args += ["-map", "[a]"]
    args += [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(job.fps),
        "-threads",
        str(ENCODE_THREADS),
    ]
    if job.audio:
        args += ["-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
    args += [
        "-t",
        str(job.duration),
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-movflags",
        "+faststart",
        "-y",
        str(out),
    ]
    return args


def render(job: RenderJob, out: Path, *, timeout: float = 600.0) -> Path:
    """Render ``job`` to ``out`` (written through a temporary file, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kf_render_") as tmp:
        work = Path(tmp)
        graph, files = build_filtergraph(job, work)
        for name, text in files.items():
            (work / name).write_text(text, encoding="utf-8")
        graph_file = work / "graph.txt"
        graph_file.write_text(graph, encoding="utf-8")
        partial = work / "clip.mp4"
        ffmpeg(
            build_args(job, partial, graph_file), timeout=timeout, what=f"sandbox render {job.fingerprint}"
        )
        if partial.stat().st_dev == out.parent.stat().st_dev:
            partial.replace(out)
        else:
            _copy(partial, out)
    return out


def _copy(src: Path, dest: Path) -> None:
    # /tmp and the data directory may be different file systems: copy beside, then rename.
    staging = dest.with_name(f".{dest.name}.part")
    staging.write_bytes(src.read_bytes())
    staging.replace(dest)
