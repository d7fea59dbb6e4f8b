"""Benchmark: plan a script with 10,000 variants of a 60 s narrative.

Measures, each in a fresh process so peak memory is the plan's own:

- ``load``: read, parse and fully check the YAML script;
- ``plan``: segments, prompts, budget and every request;
- ``json``: the ``klingflow plan --json`` document, serialised;
- the whole ``klingflow plan --json`` command, end to end.

Usage: ``.venv/bin/python scripts/bench_plan.py [--variants 10000] [--out /tmp/bench-plan]``
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

STYLES = [
    "cinematic, natural light",
    "noir, high contrast",
    "pastel palette, soft focus",
    "documentary handheld",
    "neon night city, rain",
    "warm golden hour, lens flare",
    "minimal white seamless",
    "bold colour blocking",
    "vintage 16mm film",
    "clean studio product shot",
]
SHOTS = [5, 8, 12, 20, 4, 6, 5]  # 60 s, one shot over 15 s


def write_script(path: Path, variants: int) -> None:
    """A valid script: one 60 s narrative, ``variants`` variants (10 styles, distinct seeds)."""
    lines = [
        "version: 1",
        "name: bench-plan",
        "defaults: {audio: true, style: 'cinematic'}",
        "elements:",
        "  mara: {description: 'woman in her 30s, short red hair, yellow raincoat'}",
        "narratives:",
        "  - id: spot",
        "    continuity: independent",
        "    shots:",
    ]
    for i, d in enumerate(SHOTS):
        lines.append(f"      - {{duration: {d}, framing: wide, action: '@mara does step {i} of the story'}}")
    lines.append("variants:")
    for v in range(variants):
        lines.append(f"  - {{id: v{v:05d}, overrides: {{seed: {v}, style: '{STYLES[v % len(STYLES)]}'}}}}")
    lines += [
        "budget: {limit_usd: 1000000, draft_tier: standard, final_tier: pro, finals: 100, select: auto}",
        "",
    ]
    path.write_text("\n".join(lines))


def measure_in_process(script: Path) -> dict[str, float]:
    """Time each step in this process; report peak RSS."""
    from pipeline.planning.plan import build_plan, plan_to_dict
    from pipeline.script.loader import load_script

    t0 = time.perf_counter()
    loaded = load_script(script)
    t1 = time.perf_counter()
    plan = build_plan(loaded.script)
    t2 = time.perf_counter()
    text = json.dumps(plan_to_dict(plan))
    t3 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "plan_s": t2 - t1,
        "json_s": t3 - t2,
        "requests": len(plan.requests),
        "distinct_prompts": len({id(r.prompt) for r in plan.requests}),
        "json_mb": len(text) / 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-plan")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    script = args.out / f"bench-{args.variants}.yaml"
    if args.child:
        print(json.dumps(measure_in_process(script)))
        return
    write_script(script, args.variants)
    size_mb = script.stat().st_size / 1e6

    child = subprocess.run(
        [sys.executable, __file__, "--variants", str(args.variants), "--out", str(args.out), "--child"],
        capture_output=True,
        text=True,
        check=True,
    )
    steps = json.loads(child.stdout)

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(args.out / "plan.json", "w") as sink:
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "plan", str(script), "--json"], stdout=sink, check=True
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    print(f"script: {args.variants} variants x 60 s narrative ({size_mb:.1f} MB of YAML)")
    print(
        f"requests planned:       {steps['requests']:,} ({steps['distinct_prompts']} distinct prompt strings)"
    )
    print(f"load + check:           {steps['load_s']:.2f} s")
    print(f"plan:                   {steps['plan_s']:.2f} s")
    print(f"plan -> JSON:           {steps['json_s']:.2f} s ({steps['json_mb']:.0f} MB)")
    print(f"peak RSS (steps above): {steps['peak_rss_mb']:.0f} MB")
    print(
        f"`klingflow plan --json` end to end: {wall:.2f} s wall, {cli_cpu:.2f} s CPU, "
        f"peak RSS {after.ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
