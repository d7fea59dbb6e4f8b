"""Measuring on the stack: the limits' lower bound, windows, and /proc readings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stack.measure import (
    CpuMeter,
    Sampler,
    limit_bound,
    load_average,
    max_in_window,
    peak_concurrency,
    postmaster_pid,
    process_cpu,
    rss_kb,
    submitted_by,
)


def test_the_in_flight_term_binds_when_latencies_are_long() -> None:
    # 4 jobs of 10 s, 2 in flight: at least 20 s; the rate term (burst 4) is only the longest, 10 s.
    bound = limit_bound([10.0, 10.0, 10.0, 10.0], in_flight=2, rate=1.0, burst=4)
    assert bound["by_in_flight_s"] == 20.0
    assert bound["by_rate_s"] == 10.0
    assert bound["bound_s"] == 20.0
    assert (bound["latency_min_s"], bound["latency_mean_s"], bound["latency_sum_s"]) == (10.0, 10.0, 40.0)


def test_the_rate_term_pairs_late_submits_with_short_latencies() -> None:
    # 6 jobs at 1/s after a burst of 2: the last submit comes at 4 s, and takes ≥ 1 s; the last
    # two at ≥ 3 s, one taking ≥ 2 s (the 2nd shortest): max over k = 5 s.
    bound = limit_bound([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], in_flight=100, rate=1.0, burst=2)
    assert bound["by_rate_s"] == pytest.approx(5.0)
    assert bound["bound_s"] == pytest.approx(5.0)


def test_windows_and_concurrency() -> None:
    assert max_in_window([0.0, 0.1, 0.95, 1.0, 1.5], 1.0) == 3
    assert max_in_window([], 1.0) == 0
    assert peak_concurrency([(0, 2), (1, 3), (2, 4), (5, 6)]) == 2  # ends before starts at one time


def test_proc_readings_of_this_and_a_gone_process() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert process_cpu(gone.pid) == 0.0
    assert rss_kb(gone.pid) == (0, 0)
    assert rss_kb(os.getpid())[1] > 0
    assert len(load_average()) == 3


SPIN = """
import sys, time
sys.stdin.readline()
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print("spun", flush=True)
sys.stdin.readline()
"""


def test_sampler_and_cpu_meter_count_a_childs_cpu() -> None:
    meter = CpuMeter()
    busy = subprocess.Popen(
        [sys.executable, "-c", SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert busy.stdin is not None and busy.stdout is not None
    sampler = Sampler({busy.pid: "busy"}, interval=0.05).start()
    busy.stdin.write("go\n")
    busy.stdin.flush()
    assert busy.stdout.readline() == "spun\n"
    during = meter.stop()
    usage = sampler.stop("the test")
    busy.communicate("\n")
    # CPU seconds, not wall time: the child spun 0.3 s of CPU after the first sample (ticks are 10 ms).
    assert usage["stack_cpu_s"]["busy"] >= 0.25
    assert "the test" in usage["stack_cpu_s"]
    assert set(usage) >= {"load1_max", "machine_busy_cores", "peak_rss_workers_trees_mb"}
    assert during["cpu_descendants_s"] >= 0.25  # the child is alive and ours


def test_submitted_by_drops_the_submissions_the_server_aborted(tmp_path: Path) -> None:
    a, b = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    log = (
        f"Worker 'w1' submitting flow run '{a}'\nWorker 'w1' submitting flow run '{b}'\n"
        f"Aborted submission of flow run '{b}'. Server sent an abort signal\n"
    )
    assert submitted_by(log) == {a}
    (tmp_path / "postmaster.pid").write_text("4242\n/var/lib/pg\n")
    assert postmaster_pid(tmp_path) == 4242
