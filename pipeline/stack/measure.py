"""Measuring a pass on the stack: CPU, memory and load from /proc, and the lower bound that
provider limits put on it. Used by the benchmarks under ``scripts/``.

The bound (:func:`limit_bound`). N jobs, each with latency ℓᵢ at the provider (accepted →
done), under F requests in flight and a token bucket of burst B refilled at R submits/s:

- in flight: each job holds one of F slots for at least ℓᵢ, so the pass takes ≥ Σℓᵢ / F;
- submit rate: the last k + 1 submits come no earlier than (N − k − B) / R, and one of them takes
  at least the (k + 1)-th shortest latency L₍ₖ₊₁₎: ≥ max over k of [max(0, (N − k − B) / R) + L₍ₖ₊₁₎]
  (k = N − 1 gives the longest single latency).

It leaves out submit round trips, polling delay and downloads, so a real pass never reaches it.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def limit_bound(latencies: Sequence[float], in_flight: int, rate: float, burst: int) -> dict[str, float]:
    """The lower bound of the module docstring, its two terms, and the latencies' mean/min/max/sum."""
    ordered = sorted(latencies)
    n = len(ordered)
    by_in_flight = sum(ordered) / in_flight
    by_rate = max(max(0.0, (n - k - burst) / rate) + ordered[k] for k in range(n))
    return {
        "bound_s": max(by_in_flight, by_rate),
        "by_in_flight_s": by_in_flight,
        "by_rate_s": by_rate,
        "latency_mean_s": statistics.mean(ordered),
        "latency_min_s": ordered[0],
        "latency_max_s": ordered[-1],
        "latency_sum_s": sum(ordered),
    }


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most events of ``times`` in any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    return max((sum(1 for b in ordered[i:] if b - a < window) for i, a in enumerate(ordered)), default=0)


def peak_concurrency(spans: Sequence[tuple[float, float]]) -> int:
    """The most (start, end) spans open at once."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


# --- /proc ----------------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the command name), None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int) -> float:
    """user + sys CPU seconds of one live process (0 when it is gone)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0


def all_processes() -> dict[int, tuple[int, float]]:
    """Every live process: pid → (parent pid, user + sys CPU seconds)."""
    found: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            found[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def descendants_cpu(root: int | None = None) -> float:
    """CPU seconds of the live descendants of ``root`` (default: this process)."""
    procs = all_processes()
    mine, frontier = set[int](), {os.getpid() if root is None else root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in procs.items() if ppid in frontier} - mine
        mine |= frontier
    return sum(procs[pid][1] for pid in mine)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def load_average() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    return Path("/proc/loadavg").read_text().split()[:3]


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in KiB; (0, 0) when gone."""
    rss = hwm = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def command_name(pid: int) -> str:
    """``/proc/PID/comm`` ("" when gone)."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CpuMeter:
    """CPU of this process, of its finished children (ffprobe) and of its live descendants."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, descendants_cpu()

    def stop(self) -> dict[str, float]:
        """CPU seconds since construction: own, finished children, live descendants."""
        own, children, live = (e - s for e, s in zip(self._read(), self.start, strict=True))
        return {"cpu_self_s": own, "cpu_children_s": children, "cpu_descendants_s": live}


@dataclass
class Sampler:
    """Samples the machine and the stack's process trees every ``interval`` seconds.

    CPU of a process is the last value seen minus the first (0 for one born during the sampling),
    so processes shorter than an interval (ffprobe) are partly missed: the stack's CPU is a lower
    bound. Memory is the kernel's peak (VmHWM) per process, plus the largest sum of the workers'
    trees' VmRSS at one sample. A root named ``workers`` has its descendants split into
    ``flow runs`` and ``ffmpeg/ffprobe``.
    """

    roots: dict[int, str]  # root pid -> component (its whole tree counts as that component)
    interval: float = 0.5
    loads: list[float] = field(default_factory=list)
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    component: dict[int, str] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    peak_tree_rss_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Take the first sample and keep sampling in a background thread."""
        self.machine0 = machine_jiffies()
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.monotonic()
        self.sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="stack-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self, first: bool = False) -> None:
        """One look at the machine's load and every process of the roots' trees."""
        self.loads.append(float(load_average()[0]))
        procs = all_processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        tree_rss = 0
        for root, name in self.roots.items():
            todo = [root] if root in procs else []
            while todo:
                pid = todo.pop()
                todo += children.get(pid, [])
                kind = name
                if name == "workers" and pid != root:  # a worker's flow runs and their ffmpeg
                    kind = "ffmpeg/ffprobe" if command_name(pid) in {"ffmpeg", "ffprobe"} else "flow runs"
                self.component.setdefault(pid, kind)
                self.cpu_first.setdefault(pid, procs[pid][1] if first else 0.0)
                self.cpu_last[pid] = procs[pid][1]
                rss, hwm = rss_kb(pid)
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
                if name == "workers":
                    tree_rss += rss
        self.peak_tree_rss_kb = max(self.peak_tree_rss_kb, tree_rss)

    def stop(self, own_label: str = "this process") -> dict[str, Any]:
        """Stop sampling; load, busy cores, CPU seconds by component and peak memory."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        busy1, total1 = machine_jiffies()
        busy0, total0 = self.machine0
        me = resource.getrusage(resource.RUSAGE_SELF)
        cpu_by: dict[str, float] = {}
        for pid, kind in self.component.items():
            cpu_by[kind] = cpu_by.get(kind, 0.0) + self.cpu_last[pid] - self.cpu_first[pid]
        cpu_by[own_label] = (me.ru_utime + me.ru_stime) - (self.self0.ru_utime + self.self0.ru_stime)
        wall = time.monotonic() - self.t0

        def peak(kind: str) -> float:
            return max((h for p, h in self.hwm.items() if self.component[p] == kind), default=0) / 1024

        return {
            "sampled_s": wall,
            "load1_max": max(self.loads),
            "load1_mean": statistics.mean(self.loads),
            "machine_busy_cores": (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1),
            "stack_cpu_s": cpu_by,
            "stack_busy_cores": sum(cpu_by.values()) / wall,
            "peak_rss_worker_mb": peak("workers"),
            "peak_rss_flow_run_mb": peak("flow runs"),
            "peak_rss_workers_trees_mb": self.peak_tree_rss_kb / 1024,
        }


# --- flow runs on a Prefect server (scripts/bench_scale.py) ------------------------------------


def postmaster_pid(data_dir: Path) -> int:
    """The PostgreSQL server's pid (the root of its process tree)."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def submitted_by(log: str) -> set[str]:
    """Flow run ids a worker submitted, minus those whose submission the server aborted."""
    tried = set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", log))
    return tried - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]{36})'", log))


def start_latencies(final: dict[Any, Any], states: list[list[Any]]) -> dict[str, float]:
    """Flow run created → Pending (a worker took it) → Running (its process started the flow)."""
    pending, running = [], []
    for fr, history in zip(final.values(), _ordered(final, states), strict=True):
        at = {s.type.value: s.timestamp.timestamp() for s in reversed(history)}  # first of each type
        created = fr.created.timestamp()
        pending.append(at["PENDING"] - created)
        running.append(at["RUNNING"] - created)
    return {
        "to_pending_mean_s": statistics.mean(pending),
        "to_pending_max_s": max(pending),
        "to_running_mean_s": statistics.mean(running),
        "to_running_max_s": max(running),
    }


def _ordered(final: dict[Any, Any], states: list[list[Any]]) -> list[list[Any]]:
    by_run = {hist[0].state_details.flow_run_id: hist for hist in states if hist}
    return [sorted(by_run[i], key=lambda s: s.timestamp) for i in final]
