"""Benchmark: clean open-loop rate with 1, 2 and 4 Ray shards as a ratio to one shard, and wrk, same target.

Starts nginx (bench_loadgen's config: a fixed 2-byte answer, one worker, pinned to core 0) and a local Ray
(``ray.init(num_cpus=4)``, so four one-CPU shards fit even on a 2-core machine: the ratios then say what
sharding costs or gains *on this machine*, not on a cluster). For each shard count the highest *clean* rate
(>= 99 % of the schedule sent, schedule-lag p99 <= 3 ms) is found by doubling from ``--start`` rps, then one
bisection step, with ``--trial-s`` runs (each run also pays the actors' start, not counted in the rate).
wrk -t1 -c32 runs before and after the shard runs on the same target (the reference for this machine's noise).

    .venv/bin/python bench/bench_shards.py                 # about 2-4 minutes on a quiet machine
    .venv/bin/python bench/bench_shards.py --quick --start 2000   # about a minute: a first look
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_loadgen import BODY, cores, free_port, run_wrk, start_nginx


def trial(url: str, rps: float, shards: int, trial_s: float, max_lag_s: float) -> tuple[bool, float, float]:
    from mlops_lb.load import constant, run_load

    r = run_load(url, constant(rps, trial_s), BODY, connections=32, progress=False, timeout_s=5,
                 cluster="ray", shards=shards, placement="pack", max_lag_p99_s=max_lag_s)  # fmt: skip
    s = r.summary()
    return r.valid, s["requests"] / max(s["scheduled"], 1), s["lag_p99_s"]


def search(
    url: str, shards: int, start: float, trial_s: float, budget_s: float, max_lag_s: float
) -> tuple[float, float]:
    best, best_lag, lo, hi, rps = 0.0, float("nan"), 0.0, None, start
    t_end = time.monotonic() + budget_s
    while time.monotonic() < t_end:
        ok, frac, lag = trial(url, rps, shards, trial_s, max_lag_s)
        print(f"  {shards} shard(s) {rps:>9,.0f} rps: {'clean' if ok else 'NOT clean'} (sent {frac:.1%}, "
              f"lag p99 {lag * 1e3:.2f} ms)", flush=True)  # fmt: skip
        if ok:
            best, best_lag, lo = rps, lag, rps
        else:
            hi = rps
        if hi is None:
            rps *= 2
        elif lo == 0:  # not clean even at the start (a busy machine): halve until it is
            if rps <= 250:
                break
            rps /= 2
        elif hi - lo <= max(0.25 * hi, 500):
            break
        else:
            rps = (lo + hi) / 2
    return best, best_lag


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=float, default=5000)
    ap.add_argument("--trial-s", type=float, default=2.0)
    ap.add_argument("--budget-s", type=float, default=60, help="search budget per shard count")
    ap.add_argument("--max-lag-ms", type=float, default=3.0, help="clean = lag p99 below this (default 3 ms)")
    ap.add_argument(
        "--quick", action="store_true", help="budget 12 s per shard count (a first look on a busy machine)"
    )
    a = ap.parse_args()
    budget = 12 if a.quick else a.budget_s
    import ray

    server_core, client_core = cores()
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as d:
        port = free_port()
        nginx = start_nginx(Path(d), port, server_core)
        url = f"http://127.0.0.1:{port}/"
        ray.init(num_cpus=4, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
        try:
            wrk1 = run_wrk(url, client_core)
            print(f"  wrk -t1 -c32 -d5s: {wrk1:,.0f} rps (load average {load0:.2f})", flush=True)
            rates = {n: search(url, n, a.start, a.trial_s, budget, a.max_lag_ms / 1e3) for n in (1, 2, 4)}
            wrk2 = run_wrk(url, client_core)
            print(f"  wrk -t1 -c32 -d5s again: {wrk2:,.0f} rps", flush=True)
        finally:
            ray.shutdown()
            os.killpg(nginx.pid, signal.SIGTERM)
            try:
                nginx.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(nginx.pid, signal.SIGKILL)
    load1 = os.getloadavg()[0]
    wrk = (wrk1 + wrk2) / 2
    one = rates[1][0] or float("nan")
    print("\n| shards (local Ray, 32 connections in all) | highest clean rps | lag p99 | / 1 shard | / wrk |")
    print("|---|---|---|---|---|")
    for n, (rps, lag) in rates.items():
        print(f"| {n} | {rps:,.0f} | {lag * 1e3:.2f} ms | {rps / one:.2f} | {rps / wrk:.2f} |")
    print(f"| wrk -t1 -c32 (mean of {wrk1:,.0f} and {wrk2:,.0f}) | {wrk:,.0f} | | | 1 |")
    print(f"clean = >= 99 % sent and lag p99 <= {a.max_lag_ms:g} ms")
    print(f"\nbench took {time.monotonic() - t0:.0f} s; load average {load0:.2f} at start, {load1:.2f} at end "
          f"on {os.cpu_count()} cores")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
