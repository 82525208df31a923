"""What writing the run's facts once saves a report render: the window read from run.json, derived once, or (as
before run.json) derived from every request on each of the four reads one render made.

Run: ``python bench/bench_run_facts.py [--requests 500000]``; prints seconds and ratios (measured, not asserted).
Measured 2026-12-06 on the shared 2-core machine (load ~10), 500,000 requests: four derivations 0.114 s, derived
once 0.019 s (6.1x), read from run.json 0.00003 s; the old code's own four window reads took 0.265 s against
0.047 s here (same machine, one run each).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mlops_lb.bundle import LoadedBundle
from mlops_lb.run_facts import RunFacts, derive_facts


def _bundle(n: int, facts: RunFacts | None) -> LoadedBundle:
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    off = pd.to_timedelta(np.sort(np.random.default_rng(0).uniform(0, 600, n)), unit="s")
    req = pd.DataFrame(
        {"intended_at": t0 + off, "done_at": t0 + off + pd.Timedelta(seconds=0.02), "latency_s": 0.02}
    )
    e = pd.DataFrame()
    return LoadedBundle(path=None, spec=None, requests=req, intervals=e, metrics=e, events=e, run_facts=facts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500_000)
    n = ap.parse_args().requests
    b = _bundle(n, None)
    t = time.perf_counter()
    for _ in range(4):  # what one render asked before: window in the page, the plots and twice in in_window()
        derive_facts(b.requests, b.intervals, b.metrics)
    every = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(4):
        b.window  # noqa: B018 - derived on the first read, cached after
    once = time.perf_counter() - t
    recorded = _bundle(n, RunFacts(start=pd.Timestamp("2026-01-01T00:00:00Z"), end=pd.Timestamp("2026-01-01T00:10:00Z"),
                                   metric_period_s=2.0, backend="local"))  # fmt: skip
    t = time.perf_counter()
    for _ in range(4):
        recorded.window  # noqa: B018
    written = time.perf_counter() - t
    print(f"{n:,} requests, 4 window reads per render")
    print(f"  derived on every read (before run.json): {every:.3f} s")
    print(f"  derived once (an old bundle):            {once:.3f} s  ratio {every / once:.1f}x")
    print(
        f"  read from run.json:                      {written:.6f} s  ratio {every / max(written, 1e-9):.0f}x"
    )


if __name__ == "__main__":
    main()
