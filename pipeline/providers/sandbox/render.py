"""Rendering a sandbox clip with ffmpeg: the command is built as data, run at the edge.

A clip is H.264 + AAC (audio only when asked), exactly the requested duration, at the tier's
resolution for the aspect ratio (× ``render_scale``). The picture says which request it is (a
fingerprint of its inputs, tier, aspect ratio, seed) and which shot is playing ("Shot k/n"),
over a moving test pattern tinted by the seed. A native storyboard (``RenderJob.shots``) plays
each shot for exactly its own seconds; a prose prompt is split at its "Shot N" headers. Element
images appear in a corner during the shots whose prompt mentions the element. With a start image
the first second shows that image; with an end image the last second does. An image the sandbox
could not fetch (a remote URL: it runs offline) is shown as a labelled grey placeholder instead.
Same inputs and seed → byte-identical file (bitexact flags, fixed threads, no metadata).
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
#: "Shot 2: …", and the prompt compiler's "Shot 2 (4 s, wide, low angle): …" form; the header
#: may hold one level of parentheses (a camera move such as "dolly in (slow)").
_SHOT = re.compile(r"\bshot\s*(\d+)\s*(?:\(((?:[^()]|\([^()]*\))*)\)\s*)?[:.\-–]\s*", re.IGNORECASE)
#: Element thumbnails: width as a share of the frame's, and at most this many at once.
ELEMENT_WIDTH: Final = 0.2
MAX_ELEMENTS_SHOWN: Final = 3
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\b")


def frame_size(tier: Tier, aspect_ratio: str, render_scale: float = 1.0) -> tuple[int, int]:
    """Width and height of a clip (even numbers, as yuv420p needs)."""
    width, height = FRAME_1080[aspect_ratio]
    factor = (2 if tier is Tier.K4 else 1) * render_scale
    return max(2 * round(width * factor / 2), 16), max(2 * round(height * factor / 2), 16)


def split_shots(prompt: str, duration: float) -> tuple[tuple[float, float, str], ...]:
    """(start, end, label) per "Shot N:" section of ``prompt``, sharing the duration evenly.

    Only headers numbered 1, 2, 3, … in order count, and when the prompt has the compiler's
    headers with seconds ("Shot 2 (4 s, …):") only those: so "shot 2:" inside a line of
    dialogue does not split a shot.
    """
    found = list(_SHOT.finditer(prompt))
    timed = [m for m in found if _SECONDS.match(m.group(2) or "")]
    marks: list[re.Match[str]] = []
    for m in timed if timed and int(timed[0].group(1)) == 1 else found:
        if int(m.group(1)) == len(marks) + 1:
            marks.append(m)
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
    return _segments(texts, weights, duration)


def storyboard_shots(shots: tuple[tuple[str, int], ...]) -> tuple[tuple[float, float, str], ...]:
    """(start, end, label) per shot of a native storyboard: each lasts exactly its seconds."""
    return _segments(
        [text for text, _ in shots], [float(s) for _, s in shots], float(sum(s for _, s in shots))
    )


def _segments(
    texts: list[str], weights: list[float], duration: float
) -> tuple[tuple[float, float, str], ...]:
    n = len(texts)
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
    #: A native storyboard: (prompt, seconds) per shot; empty: the prose ``prompt``'s shots.
    shots: tuple[tuple[str, int], ...] = ()
    #: Elements: (name as the prompts mention it, its images); shown in the shots naming it.
    elements: tuple[tuple[str, tuple[Path | Placeholder, ...]], ...] = ()

    def timeline(self) -> tuple[tuple[float, float, str], ...]:
        """(start, end, label) of each shot the picture labels."""
        return storyboard_shots(self.shots) if self.shots else split_shots(self.prompt, self.duration)

    def element_spans(self) -> list[tuple[str, Path | Placeholder, list[tuple[float, float]]]]:
        """Each element's first image and the spans of the shots whose text names the element."""
        texts = [text for text, _ in self.shots] if self.shots else None
        spans = []
        for name, images in self.elements:
            if not images:
                continue
            if texts is None:
                times = [(0.0, float(self.duration))] if name in self.prompt else []
            else:
                times = [
                    (a, b) for (a, b, _), text in zip(self.timeline(), texts, strict=True) if name in text
                ]
            if times:
                spans.append((name, images[0], times))
        return spans[:MAX_ELEMENTS_SHOWN]

    def inputs(self) -> list[Path]:
        """The image files ffmpeg reads, in input order: start, end, then element images."""
        found = [image for image in (self.start_image, self.end_image) if isinstance(image, Path)]
        found += [image for _, image, _ in self.element_spans() if isinstance(image, Path)]
        return found

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
    for i, (start, end, label) in enumerate(job.timeline()):
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
    index = -1  # image inputs are the only -i inputs, in RenderJob.inputs() order
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
    graph, last = _element_overlays(job, text_dir, files, graph, last, index)
    graph += f";[{last}]format=yuv420p[v]"
    if job.audio:
        tone = 220 + (job.seed % 8) * 55
        graph += (
            f";sine=frequency={tone}:beep_factor=4:sample_rate={SAMPLE_RATE}:duration={d},"
            f"aformat=sample_fmts=fltp:channel_layouts=stereo[a]"
        )
    return graph, files


def _element_overlays(
    job: RenderJob, text_dir: Path, files: dict[str, str], graph: str, last: str, index: int
) -> tuple[str, str]:
    """Each element's image (or a labelled card) in the top-right corner during its shots."""
    font = _safe(Path(FONT))
    thumb_w = max(2 * round(job.width * ELEMENT_WIDTH / 2), 8)
    thumb_h = max(2 * round(job.height * ELEMENT_WIDTH / 2), 8)
    for k, (name, image, spans) in enumerate(job.element_spans()):
        when = "enable='" + "+".join(f"between(t,{a},{b})" for a, b in spans) + "'"
        x = f"W-{(k + 1) * (thumb_w + 8)}"
        files[f"element{k}.txt"] = f"@{name.lstrip('@')}"
        label = (
            f"drawtext=fontfile={font}:textfile={_safe(text_dir / f'element{k}.txt')}:expansion=none:"
            f"fontsize={max(job.height // 40, 6)}:fontcolor=white:box=1:boxcolor=black@0.6:"
            f"x={x.replace('W', 'w')}:y={thumb_h + 12}:{when}"
        )
        if isinstance(image, Path):
            index += 1
            graph += (
                f";[{index}:v]scale={thumb_w}:{thumb_h}:force_original_aspect_ratio=decrease,"
                f"pad={thumb_w}:{thumb_h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuva420p[el{k}];"
                f"[{last}][el{k}]overlay=x={x}:y=8:{when}:format=auto,{label}[withel{k}]"
            )
        else:
            graph += (
                f";[{last}]drawbox=x={x.replace('W', 'iw')}:y=8:w={thumb_w}:h={thumb_h}:color=gray:t=fill:"
                f"{when},{label}[withel{k}]"
            )
        last = f"withel{k}"
    return graph, last


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
    images = job.inputs()
    elements = sum(1 for _, image, _ in job.element_spans() if isinstance(image, Path))
    for i, image in enumerate(images):
        # Start and end images are shown for one second; element images for the whole clip.
        seconds = IMAGE_SECONDS if i < len(images) - elements else job.duration
        args += ["-loop", "1", "-framerate", str(job.fps), "-t", str(seconds), "-i", str(image)]
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
