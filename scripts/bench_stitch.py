"""Benchmark stitching: stream-copy path vs full re-encode, 10 and 40 clips of 15 s 1080p.

Usage::

    .venv/bin/python scripts/bench_stitch.py            # all four cases, Markdown table on stdout
    .venv/bin/python scripts/bench_stitch.py --clips 10 --mode copy   # one case
    .venv/bin/python scripts/bench_stitch.py --crossfade  # also 10 and 40 clips with 0.5 s crossfades

Clips are generated once into ``/tmp/klingflow-bench-stitch/`` (8 distinct 15 s 1080p24 clips
with a tone, reused round-robin: identical encoder settings, so the copy path applies). Each case
runs in a fresh child process so that ``RUSAGE_CHILDREN.ru_maxrss`` — the peak RSS of the largest
ffmpeg/ffprobe it ran — belongs to that case alone; Python's own peak RSS is reported beside it.
Both must stay flat from 10 to 40 clips: every piece is its own ffmpeg command opening at most two
clips, and Python only copies PCM in 1 MiB chunks. Wall time covers the whole ``stitch()`` call:
probes, rendering the pieces, joining them, loudness pass 1, the master, verification and the final
loudness measurement. The machine is shared: compare ``ffmpeg CPU`` too when the wall times look off.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A fixed name under the system temp folder, so generated clips survive between runs.
CACHE = Path(tempfile.gettempdir()) / "klingflow-bench-stitch"
DISTINCT = 8
SECONDS = 15
SIZE = "1920x1080"
FPS = 24


def ensure_clips() -> list[Path]:
    """Generate the distinct clips once (kept across runs in CACHE)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.media.run import ffmpeg

    CACHE.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(DISTINCT):
        out = CACHE / f"clip{i:02d}.mp4"
        if not out.exists():
            tmp = out.with_suffix(".tmp.mp4")
            ffmpeg(
                [
                    "-y",
                    *("-f", "lavfi", "-i", f"testsrc2=s={SIZE}:r={FPS}:d={SECONDS}"),
                    *("-f", "lavfi", "-i", f"sine=f={220 + 55 * i}:r=48000:d={SECONDS}"),
                    *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "48"),
                    *("-c:a", "aac", "-b:a", "128k", str(tmp)),
                ],
                timeout=900,
                what=f"bench clip {i}",
            )
            tmp.rename(out)
        clips.append(out)
    return clips


def run_case(mode: str, count: int, transition: str = "cut") -> dict[str, object]:
    """Stitch ``count`` clips in this process; measure wall time and peak memory."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.media.stitch import stitch
    from pipeline.media.stitch_plan import ClipInput, StitchOptions

    sources = ensure_clips()
    clips = [ClipInput(path=str(sources[i % DISTINCT]), scripted_s=SECONDS) for i in range(count)]
    options = StitchOptions(
        loudness_lufs=-16.0,
        force_reencode=mode == "reencode",
        transition="crossfade" if transition == "crossfade" else "cut",
        crossfade_s=0.5,
    )
    out = CACHE / f"master-{mode}-{transition}-{count}.mp4"
    started = time.perf_counter()
    result = stitch(clips, out, options)
    wall = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    out.unlink()
    return {
        "mode": result.plan.mode + (" + crossfade" if result.plan.transition == "crossfade" else ""),
        "clips": count,
        "master_s": round(result.duration_s, 3),
        "wall_s": round(wall, 2),
        "realtime_x": round(result.video_s / wall, 1),
        "ffmpeg_peak_rss_mib": round(children.ru_maxrss / 1024, 1),
        "python_peak_rss_mib": round(own.ru_maxrss / 1024, 1),
        "ffmpeg_cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "lufs": result.loudness.integrated_lufs,
        "size_mib": round(result.size_bytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["copy", "reencode"])
    parser.add_argument("--clips", type=int)
    parser.add_argument("--transition", choices=["cut", "crossfade"], default="cut")
    parser.add_argument("--crossfade", action="store_true", help="add the crossfade cases to the table")
    parser.add_argument("--json", action="store_true", help="print one JSON result (used for child runs)")
    args = parser.parse_args()
    if args.mode and args.clips:
        result = run_case(args.mode, args.clips, args.transition)
        print(json.dumps(result) if args.json else result)
        return
    ensure_clips()
    rows = []
    cases = [(mode, "cut") for mode in ("copy", "reencode")]
    if args.crossfade:
        cases.append(("reencode", "crossfade"))
    for mode, transition in cases:
        for count in (10, 40):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--clips",
                    str(count),
                    "--transition",
                    transition,
                    "--json",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    print(
        "| path | clips | master | wall | realtime | ffmpeg peak RSS | Python peak RSS | ffmpeg CPU | LUFS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['clips']} | {r['master_s']} s | {r['wall_s']} s | {r['realtime_x']}× "
            f"| {r['ffmpeg_peak_rss_mib']} MiB | {r['python_peak_rss_mib']} MiB | {r['ffmpeg_cpu_s']} s "
            f"| {r['lufs']} |"
        )


if __name__ == "__main__":
    main()
