"""Benchmark stitching against the best plain-ffmpeg pipeline, side by side, in CPU seconds.

Usage::

    .venv/bin/python scripts/bench_stitch.py                 # copy path, 10 clips, + re-encode, 3 clips
    .venv/bin/python scripts/bench_stitch.py --clips 40      # a longer copy-path master
    .venv/bin/python scripts/bench_stitch.py --before        # also today's code (git HEAD) on the same clips
    .venv/bin/python scripts/bench_stitch.py --no-reencode   # the copy path only (seconds, not minutes)

Clips: 15 s of 1920×1080 at 24 fps (testsrc2, libx264 ultrafast) with realistic sound — pink noise
and a tone under a 4 Hz tremolo (speech-like syllables), 48 kHz AAC — made once into
``$TMPDIR/klingflow-bench-stitch-v2/``. A pure sine, as the first version of this benchmark used,
made AAC up to four times dearer than real sound. Each position of the master is a hard link of
its own name, so every clip is a distinct input, as in a run.

Cases, each in a fresh child process so that ``RUSAGE_CHILDREN`` (CPU seconds of every ffmpeg and
ffprobe it ran, and the peak RSS of the largest) belongs to that case alone:

* ``baseline``: the best honest plain-ffmpeg pipeline — ebur128 over the clips' audio (concat
  demuxer), then one command: video stream-copied through the concat demuxer, one ``volume`` gain,
  AAC, faststart. No probe, no check, no exact lengths.
* ``klingflow``: :func:`pipeline.media.stitch.stitch` with the clips' probes passed in, as a run
  passes those its downloads took; the probes' own CPU is the ``+ probes`` row (``klingflow
  stitch`` on the command line pays it).
* ``before`` (``--before``): the same call on the code of git ``--ref`` (default ``HEAD``), extracted with ``git
  archive`` (today's two-pass loudnorm).
* re-encode: ``klingflow`` with ``force_reencode`` vs ``bare libx264``, one ffmpeg command
  encoding the concatenated clips at the same preset and CRF.

The ratio column divides by the baseline of the same mode. The load average is printed with the
table: the machine is shared, and CPU seconds inflate a little under contention.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "klingflow-bench-stitch-v2"
DISTINCT = 8
SECONDS = 15
SIZE = "1920x1080"
FPS = 24
TARGET_LUFS = -16.0
PRESET, CRF = "veryfast", 18  # StitchOptions' defaults: the bare encode uses the same


def _ffmpeg(args: list[str], what: str) -> str:
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-2000:]}")
    return proc.stderr


def ensure_clips(count: int) -> list[Path]:
    """The distinct clips (made once), hard-linked under one name per position of the master."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for i in range(DISTINCT):
        out = CACHE / f"clip{i:02d}.mp4"
        if out.exists():
            continue
        sound = (
            f"anoisesrc=c=pink:r=48000:a=0.25:d={SECONDS}:seed={i + 1}[n];"
            f"sine=f={180 + 40 * i}:r=48000:d={SECONDS},volume=0.4[t];"
            "[n][t]amix=inputs=2:normalize=0,tremolo=f=4:d=0.8,aformat=channel_layouts=stereo[a]"
        )
        tmp = out.with_suffix(".tmp.mp4")
        _ffmpeg(
            [
                "-y",
                *("-f", "lavfi", "-i", f"testsrc2=s={SIZE}:r={FPS}:d={SECONDS}"),
                *("-filter_complex", sound, "-map", "0:v", "-map", "[a]"),
                *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "48"),
                *("-c:a", "aac", "-b:a", "128k", str(tmp)),
            ],
            f"bench clip {i}",
        )
        tmp.rename(out)
    links = []
    for k in range(count):
        link = CACHE / f"at{k:03d}.mp4"
        if not link.exists():
            os.link(CACHE / f"clip{k % DISTINCT:02d}.mp4", link)
        links.append(link)
    return links


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _concat_list(clips: list[Path]) -> Path:
    listing = CACHE / f"list-{len(clips)}.ffconcat"
    lines = ["ffconcat version 1.0"] + [f"file '{c}'\nduration {SECONDS}.000000" for c in clips]
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _bare(clips: list[Path], out: Path, reencode: bool) -> dict[str, Any]:
    """The plain-ffmpeg pipeline: measure, then one command with a linear gain."""
    sys.path.insert(0, str(ROOT))
    from pipeline.media.loudness import parse_ebur128_summary

    listing = _concat_list(clips)
    concat = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    measured = parse_ebur128_summary(
        _ffmpeg([*concat, "-map", "0:a", "-af", "ebur128=peak=true", "-f", "null", "-"], "baseline ebur128")
    )
    gain = TARGET_LUFS - (measured.integrated_lufs or TARGET_LUFS)
    video = (
        ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-g", "48"] if reencode else ["-c:v", "copy"]
    )
    _ffmpeg(
        [
            "-y",
            *concat,
            *("-map", "0:v", "-map", "0:a", *video, "-af", f"volume={gain:.2f}dB"),
            *("-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", str(out)),
        ],
        "baseline master",
    )
    return {"lufs": round(measured.integrated_lufs + gain, 1) if measured.integrated_lufs else None}


def _klingflow(clips: list[Path], out: Path, reencode: bool, code: Path) -> dict[str, Any]:
    sys.path.insert(0, str(code))
    from pipeline.media.probe import probe
    from pipeline.media.stitch import stitch
    from pipeline.media.stitch_plan import ClipInput, StitchOptions

    inputs = [ClipInput(path=str(c), scripted_s=SECONDS) for c in clips]
    options = StitchOptions(loudness_lufs=TARGET_LUFS, force_reencode=reencode)
    before = _cpu()
    probes = [probe(c) for c in clips]
    probe_cpu = _cpu() - before
    if code == ROOT:
        result = stitch(inputs, out, options, probes=probes)
    else:  # today's code probes for itself: count its probes in its stitch, as it runs them
        result = stitch(inputs, out, options)
        probe_cpu = 0.0
    return {
        "lufs": result.loudness.integrated_lufs,
        "probe_cpu_s": round(probe_cpu, 2),
        "mode": result.plan.mode,
    }


def run_case(case: str, count: int, code: Path) -> dict[str, Any]:
    """One case in this process: CPU seconds of its children, wall time, peak RSS."""
    clips = ensure_clips(count)
    out = CACHE / f"master-{case}-{count}.mp4"
    reencode = case in {"klingflow-reencode", "bare-libx264"}
    cpu0, started = _cpu(), time.perf_counter()
    if case in {"baseline", "bare-libx264"}:
        row = _bare(clips, out, reencode)
    else:
        row = _klingflow(clips, out, reencode, code)
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu0 - row.get("probe_cpu_s", 0.0)
    out.unlink()
    return {
        "case": case,
        "clips": count,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "ffmpeg_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        **row,
    }


def _child(case: str, count: int, code: Path) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--case", case, "--clips", str(count), "--code", str(code)]
    proc = subprocess.run(argv, check=True, capture_output=True, text=True)
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr)
    return row


def _head_code(ref: str) -> Path:
    """Today's code (``pipeline/`` at git ``ref``), extracted beside the clips."""
    target = CACHE / "head"
    subprocess.run(["rm", "-rf", str(target)], check=True)
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "pipeline"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="clips in the copy-path master (default 10)")
    parser.add_argument(
        "--reencode-clips", type=int, default=3, help="clips in the re-encoded master (default 3)"
    )
    parser.add_argument("--no-reencode", action="store_true", help="skip the re-encode pair")
    parser.add_argument("--before", action="store_true", help="also run git --ref's code on the same clips")
    parser.add_argument("--ref", default="HEAD", help="the commit --before measures (default HEAD)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.clips, args.code)))
        return
    ensure_clips(max(args.clips, args.reencode_clips))
    load = os.getloadavg()
    rows = [_child("baseline", args.clips, ROOT), _child("klingflow", args.clips, ROOT)]
    if args.before:
        rows.append(_child("klingflow", args.clips, _head_code(args.ref)) | {"case": f"before ({args.ref})"})
    if not args.no_reencode:
        rows += [
            _child("bare-libx264", args.reencode_clips, ROOT),
            _child("klingflow-reencode", args.reencode_clips, ROOT),
        ]
    base = {"copy": rows[0]["cpu_s"], "reencode": rows[-2]["cpu_s"] if not args.no_reencode else None}
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print()
    print("| case | clips | ffmpeg CPU | ratio | wall | ffmpeg peak RSS | LUFS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        kind = "reencode" if r["case"] in {"bare-libx264", "klingflow-reencode"} else "copy"
        ratio = f"{r['cpu_s'] / base[kind]:.2f}" if base[kind] else "–"
        print(
            f"| {r['case']} | {r['clips']} | {r['cpu_s']} s | {ratio} | {r['wall_s']} s "
            f"| {r['ffmpeg_peak_rss_mib']} MiB | {r['lufs']} |"
        )
        if r.get("probe_cpu_s"):
            total = r["cpu_s"] + r["probe_cpu_s"]
            ratio = f"{total / base[kind]:.2f}" if base[kind] else "–"
            print(f"| {r['case']} + probes | {r['clips']} | {total:.2f} s | {ratio} | | | |")


if __name__ == "__main__":
    main()
