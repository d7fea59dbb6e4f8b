"""Before any money: stitch tiny synthetic clips with the script's exact master settings.

A run refuses to start (exit 65, naming the field) when its masters could not be made from the
clips it is about to buy. Every distinct master configuration — a narrative's segments, the
audio of its clips in that pass and its aspect ratio; the ``output`` section is the script's —
is checked once (variants that share a configuration share its rehearsal), in two steps:

1. **The exact plan**, without ffmpeg: the stitch plan of clips as the provider will deliver them
   (the requested lengths, 24 fps, audio or not), with the script's settings — the length rules
   (a crossfade longer than half a clip) and the piece arithmetic at the real scale, and the
   master's length against the one the plan promises.
2. **A render** through the same code as a real master
   (:func:`~pipeline.render.masters.build_master`: stitch, QC of its length, contact sheet,
   manifest) from synthetic clips: same segment count, shot parts and dialogue, audio presence
   per clip, crossfade seconds, frame rate and aspect ratio, pictures 64 pixels wide, and the
   segments shortened in proportion (never below what keeps each crossfade inside its clip), so
   a 100 s master rehearses as about 15 s of media.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from pipeline.errors import DiskFull, InputError, KlingflowError, Problem, ScriptError
from pipeline.media.probe import FormatInfo, Probe, Stream
from pipeline.media.run import ffmpeg
from pipeline.media.stitch_plan import ClipInput, plan_stitch
from pipeline.planning.plan import (
    NarrativePlan,
    Pass,
    PlannedRequest,
    RenderPlan,
    RequestBuilder,
    master_seconds,
)
from pipeline.planning.segments import Segment
from pipeline.pricing import Tier
from pipeline.render.masters import Clip, build_master, master_options
from pipeline.script.model import Narrative, Script
from pipeline.script.yaml_source import YamlDocument

#: Width of the synthetic pictures (height follows the aspect ratio, even).
WIDTH = 64
#: The provider's (and the sandbox's) frame rate: the piece boundaries fall on the same frames.
FRAME_RATE = 24
#: Seconds of shots a rehearsed master is shortened towards (segments keep a floor, see shortened).
TARGET_SECONDS = 12
#: Masters rehearsed at once (ffmpeg at this size is one process's worth of work each).
WORKERS = 2
#: Temporary folders of rehearsals: ``klingflow-rehearsal-<pid>-…`` in the system's temp dir.
TEMP_PREFIX = "klingflow-rehearsal-"
_PID_IN_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


@dataclass(frozen=True)
class MasterConfig:
    """One distinct way a master is made: what the rehearsal stitches once."""

    narrative: int
    pass_: Pass
    variant: str
    aspect_ratio: str
    audio: bool

    def describe(self, script: Script) -> str:
        """The settings in words, for a refusal message."""
        out = script.output
        settings = [f"output.transition: {out.transition}"]
        if out.transition == "crossfade":
            settings.append(f"output.crossfade_seconds: {out.crossfade_seconds:g}")
        loudness = "null" if out.loudness_lufs is None else f"{out.loudness_lufs:g}"
        settings += [
            f"output.loudness_lufs: {loudness}",
            f"subtitles: {'yes' if script.subtitles else 'no'}",
            f"aspect_ratio: {self.aspect_ratio}",
            f"audio: {'yes' if self.audio else 'no'}",
        ]
        narrative = script.narratives[self.narrative].id
        return f"the {self.pass_} master of narrative {narrative!r} (variant {self.variant}; {', '.join(settings)})"


@dataclass(frozen=True)
class Rehearsal:
    """One rehearsed configuration and the length of the master it made."""

    config: MasterConfig
    master_seconds: float


def _passes(script: Script, plan: RenderPlan) -> list[tuple[Pass, Tier, list[int]]]:
    """The passes the run may make, with their tier and the variants that may reach them."""
    passes: list[tuple[Pass, Tier, list[int]]] = []
    everyone = list(range(len(script.variants)))
    if script.budget.draft is not None and plan.requests_for("draft"):
        passes.append(("draft", script.budget.draft, everyone))
    final_tier = plan.budget.final_tier
    if final_tier is not None and plan.budget.final_variants:
        # With select auto/manual any variant may be chosen at run time.
        chosen = list(plan.budget.final_variants) if plan.select == "all" else everyone
        passes.append(("final", final_tier, chosen))
    return passes


def master_configs(script: Script, plan: RenderPlan) -> dict[MasterConfig, list[PlannedRequest]]:
    """Each distinct master configuration of ``plan`` with the requests of its first variant."""
    builder = RequestBuilder(script, plan.narratives, plan.provider)
    configs: dict[MasterConfig, list[PlannedRequest]] = {}
    seen: set[tuple[int, Pass, str, bool]] = set()
    for pass_, tier, variants in _passes(script, plan):
        for v in variants:
            requests = builder.requests(v, pass_, tier)
            for n in plan.narratives:
                own = [r for r in requests if r.narrative == n.id]
                key = (n.index, pass_, own[0].aspect_ratio, own[0].audio)
                if key in seen:
                    continue
                seen.add(key)
                config = MasterConfig(n.index, pass_, own[0].variant, own[0].aspect_ratio, own[0].audio)
                configs[config] = own
    return configs


def shortened(plan: NarrativePlan, script: Script) -> NarrativePlan:
    """``plan`` with its segments shortened towards ``TARGET_SECONDS`` of shots in all.

    Each segment keeps its parts (each ≥ 1 s, lines unchanged) and its trimmed seconds; it never
    gets longer, and a segment longer than twice the crossfade stays longer than it (so a
    crossfade that fits the real clips fits the rehearsal's, and one that does not, does not).
    """
    out = script.output
    fade = out.crossfade_seconds if out.transition == "crossfade" else 0.0
    floor = math.floor(2 * fade) + 1
    total = sum(seg.content_seconds for seg in plan.segments)
    factor = min(1.0, TARGET_SECONDS / total) if total else 1.0
    segments: list[Segment] = []
    start = 0
    for seg in plan.segments:
        content = seg.content_seconds
        target = min(content, max(floor, len(seg.parts), round(content * factor)))
        seconds = _apportion([p.seconds for p in seg.parts], target)
        parts = tuple(replace(p, seconds=n) for p, n in zip(seg.parts, seconds, strict=True))
        segments.append(replace(seg, parts=parts, duration=target + seg.trimmed_seconds, start=start))
        start += target
    short = tuple(segments)
    return replace(
        plan,
        seconds=start,
        segments=short,
        master_seconds=master_seconds(short, out.transition, out.crossfade_seconds),
    )


def _apportion(weights: list[int], total: int) -> list[int]:
    """``total`` split in proportion to ``weights``, every share ≥ 1 (largest remainder)."""
    extra = total - len(weights)
    whole = sum(weights)
    raw = [extra * w / whole for w in weights]
    shares = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: shares[i] - raw[i])
    for i in order[: extra - sum(shares)]:
        shares[i] += 1
    return [1 + s for s in shares]


def _planned_probe(path: str, seconds: float, aspect_ratio: str, audio: bool) -> Probe:
    """What ffprobe would say of a provider clip: ``seconds`` long, 24 fps, audio or not."""
    w, h = _size(aspect_ratio, 1280)
    streams = [
        Stream(
            index=0,
            codec_type="video",
            codec_name="h264",
            profile="High",
            width=w,
            height=h,
            pix_fmt="yuv420p",
            sample_aspect_ratio="1:1",
            r_frame_rate=f"{FRAME_RATE}/1",
            avg_frame_rate=f"{FRAME_RATE}/1",
            time_base=f"1/{FRAME_RATE * 512}",
            duration=seconds,
            extradata_hash="planned",
        )
    ]
    if audio:
        streams.append(
            Stream(
                index=1,
                codec_type="audio",
                codec_name="aac",
                sample_rate=48_000,
                channels=2,
                duration=seconds,
            )
        )
    return Probe(
        path=path, format=FormatInfo(format_name="mov,mp4", duration=seconds), streams=tuple(streams)
    )


def check_exact_plan(script: Script, n_plan: NarrativePlan, requests: list[PlannedRequest]) -> float:
    """Plan the stitch of the real clips (no ffmpeg): InputError when it cannot be made or would not
    last what the plan says; returns its length."""
    clips = [
        ClipInput(path=f"segment-{seg.index}.mp4", scripted_s=seg.content_seconds) for seg in n_plan.segments
    ]
    probes = [
        _planned_probe(c.path, r.duration, r.aspect_ratio, r.audio)
        for c, r in zip(clips, requests, strict=True)
    ]
    stitch = plan_stitch(clips, probes, master_options(script))
    if abs(stitch.expected_duration_s - n_plan.master_seconds) > stitch.tolerance_s:
        raise InputError(
            f"the master would last {stitch.expected_duration_s:.3f} s where the plan says {n_plan.master_seconds:g} s"
        )
    return stitch.expected_duration_s


def _size(aspect_ratio: str, width: int = 0) -> tuple[int, int]:
    w, h = (int(x) for x in aspect_ratio.split(":"))
    width = width or WIDTH
    height = round(Fraction(width * h, w))
    return width, max(2, height - height % 2)


def _synthetic_clip(path: Path, seconds: int, aspect_ratio: str, audio: bool) -> None:
    """A moving test picture (and pink noise when ``audio``), as small as ffmpeg makes it."""
    w, h = _size(aspect_ratio)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FRAME_RATE}:duration={seconds}"]
    if audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:amplitude=0.2:sample_rate=48000:duration={seconds}",
        ]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(2 * FRAME_RATE)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]
    ffmpeg(["-y", *args, "-movflags", "+faststart", str(path)], what=f"synthetic clip {path.name}")


def _clips(requests: list[PlannedRequest], plan: NarrativePlan, work: Path, name: str) -> list[Clip]:
    """One synthetic clip per request (as long as ``plan``'s segment), each under its own name:
    links to the clips :func:`_make_synthetic` made, one per kind."""
    clips: list[Clip] = []
    for r, seg in zip(requests, plan.segments, strict=True):
        path = work / f"{name}-{r.segment:03d}.mp4"
        os.link(work / _synthetic_name(seg.duration, r.aspect_ratio, r.audio), path)
        clips.append(
            Clip(request=r, path=path, sha256=f"{r.segment:064x}", request_id="rehearsal", cost=Decimal(0))
        )
    return clips


def _synthetic_name(seconds: int, aspect_ratio: str, audio: bool) -> str:
    return f"synthetic-{seconds}s-{aspect_ratio.replace(':', 'x')}-{'audio' if audio else 'silent'}.mp4"


def _field(script: Script, error: KlingflowError) -> tuple[str, ...]:
    """The field most likely to blame for a master that cannot be made."""
    if script.output.transition == "crossfade" and "crossfade" in str(error):
        return ("output", "crossfade_seconds")
    return ("output", "transition")


def _rehearse(
    script: Script, narrative: Narrative, job: _Job, work: Path, name: str, with_contact_sheet: bool
) -> float:
    """Make one master from synthetic clips; InputError when QC finds it of the wrong length."""
    clips = _clips(job.requests, job.short, work, name)
    directory = work / name
    try:
        outcome = build_master(
            script=script,
            script_sha256="0" * 64,
            run_id="rehearsal",
            narrative=narrative,
            plan=job.short,
            clips=clips,
            directory=directory,
            plan_summary={},
            started_at=datetime.now(UTC),
            with_contact_sheet=with_contact_sheet,
        )
    finally:
        # Keep the folder small: a rehearsed master is not needed once it is judged.
        shutil.rmtree(directory, ignore_errors=True)
        for clip in clips:
            clip.path.unlink(missing_ok=True)
    # QC of synthetic pictures says nothing of a real one, except how long the master is.
    findings = outcome.qc.findings if outcome.qc else ()
    wrong = [f.detail for f in findings if f.kind in ("duration", "av_length")]
    if wrong:
        raise InputError("; ".join(wrong))
    return outcome.duration_s


@dataclass(frozen=True)
class _Job:
    config: MasterConfig
    requests: list[PlannedRequest]
    short: NarrativePlan


def remove_stale_rehearsals(temp_dir: str | Path | None = None) -> None:
    """Remove the rehearsal folders of processes that no longer exist (killed mid-rehearsal)."""
    root = Path(temp_dir or tempfile.gettempdir())
    for path in root.glob(TEMP_PREFIX + "*"):
        match = _PID_IN_NAME.match(path.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue  # alive, under another user


def rehearsal_key(script: Script, jobs: list[_Job]) -> str:
    """What a rehearsal's verdict depends on: the master configurations with their shortened
    plans, the script's ``output`` (but its archive) and subtitles, klingflow's and ffmpeg's
    versions."""
    from pipeline.media.run import ffmpeg_version

    parts = [
        _klingflow_version(),
        ffmpeg_version(),
        # Where masters are archived changes nothing in how they are made.
        script.output.model_dump_json(exclude={"archive"}),
        str(script.subtitles),
        *sorted(repr((job.config, job.short)) for job in jobs),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _klingflow_version() -> str:
    try:
        return importlib.metadata.version("klingflow")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree only
        return "0"


def rehearse_masters(
    script: Script,
    plan: RenderPlan,
    *,
    document: YamlDocument | None = None,
    cache_dir: Path | None = None,
) -> list[Rehearsal]:
    """Raise ScriptError (65) when a master of ``plan`` cannot be stitched with ``script``'s settings.

    Every distinct master configuration is checked (see the module docstring) from synthetic
    clips in a temporary folder, removed afterwards; each failure is one problem naming the field
    (``output.transition``, ``output.crossfade_seconds``), the settings and the reason (ffmpeg's
    own words when it failed). ``document`` locates the field's line in the script file. Returns
    what was rehearsed.

    With ``cache_dir``, a configuration set that passed once (same settings, same klingflow and
    ffmpeg) is not stitched again: a resumed or rerun run starts without the rehearsal's cost.
    """
    remove_stale_rehearsals()
    by_id = {n.id: n for n in script.narratives}
    problems: list[Problem] = []

    def refuse(config: MasterConfig, exc: KlingflowError) -> None:
        field = _field(script, exc)
        message = f"{config.describe(script)} cannot be made: {exc}"
        if document is not None:
            problems.append(document.problem(field, message))
        else:
            problems.append(Problem("script", 0, ".".join(field), message))

    jobs: list[_Job] = []
    for config, requests in master_configs(script, plan).items():
        n_plan = plan.narratives[config.narrative]
        try:
            check_exact_plan(script, n_plan, requests)
        except KlingflowError as exc:
            refuse(config, exc)
            continue
        jobs.append(_Job(config, requests, shortened(n_plan, script)))
    passed = cache_dir / rehearsal_key(script, jobs) if cache_dir is not None and not problems else None
    if passed is not None and passed.is_file():
        return []
    done: list[Rehearsal] = []
    with (
        tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp,
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="rehearsal") as pool,
    ):
        work = Path(tmp)
        kinds = {
            (seg.duration, r.aspect_ratio, r.audio)
            for job in jobs
            for r, seg in zip(job.requests, job.short.segments, strict=True)
        }
        list(pool.map(lambda k: _synthetic_clip(work / _synthetic_name(*k), *k), sorted(kinds)))
        # One contact sheet per narrative and shape: its rows and cells do not depend on audio.
        sheets: set[tuple[int, str]] = set()
        futures = []
        for i, job in enumerate(jobs):
            shape = (job.config.narrative, job.config.aspect_ratio)
            narrative = by_id[job.short.id]
            futures.append(
                pool.submit(_rehearse, script, narrative, job, work, f"master-{i}", shape not in sheets)
            )
            sheets.add(shape)
        for job, future in zip(jobs, futures, strict=True):
            try:
                done.append(Rehearsal(job.config, future.result()))
            except DiskFull:
                raise  # not the script's fault: exit 73
            except KlingflowError as exc:
                refuse(job.config, exc)
    if problems:
        raise ScriptError(problems)
    if passed is not None:
        passed.parent.mkdir(parents=True, exist_ok=True)
        passed.write_text(datetime.now(UTC).isoformat() + "\n")
    return done
