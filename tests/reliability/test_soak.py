"""Soak (``pytest -m slow``, not in default CI): five minutes of steady load, memory stays flat.

``MLOPS_LB_SOAK_S`` shortens or lengthens the run (default 300 s); the warm-up is a fifth of it, at most 60 s.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest
from _reliability import LOAD, fault_spec, wait_for

from mlops_lb.load import constant, start_load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RATE = 100.0


def _rss(pids: list[int]) -> dict[int, int]:
    return {pid: psutil.Process(pid).memory_info().rss for pid in pids}


def test_five_minutes_of_steady_load_keep_memory_flat(fleet_factory, record) -> None:
    """100 rps for five minutes through HAProxy: after a warm-up minute, the generator's RSS (this process) and
    every worker's RSS grow by less than 10 %, and no request fails."""
    duration = float(os.environ.get("MLOPS_LB_SOAK_S", "300"))
    warmup = min(60.0, duration / 5)
    fleet = fleet_factory(fault_spec("soak", grace_period_s=1800))
    workers = [int(p) for p in fleet.status()["pid"]]
    run = start_load(fleet.url + "/predict", constant(RATE, duration), **LOAD)
    t0 = time.monotonic()
    time.sleep(warmup)
    base = _rss([os.getpid(), *workers])
    # Sample to the end: the largest RSS seen counts, not a lucky last sample after a collection.
    peak = dict(base)
    while time.monotonic() - t0 < duration - 2 and not run.done:
        for pid, rss in _rss(list(base)).items():
            peak[pid] = max(peak[pid], rss)
        time.sleep(5)
    r = run.result(timeout=120)
    growth = {pid: peak[pid] / base[pid] - 1 for pid in base}
    record(
        duration_s=duration,
        warmup_s=warmup,
        requests=r.summary()["requests"],
        errors=r.summary()["errors"],
        generator_rss_mb=(base[os.getpid()] / 2**20, peak[os.getpid()] / 2**20),
        generator_growth=growth[os.getpid()],
        worker_growth=[growth[p] for p in workers],
    )
    assert r.summary()["errors"] == 0 and r.summary()["requests"] == r.scheduled
    assert max(growth.values()) < 0.10, growth
    wait_for(lambda: (fleet.status()["health"] == "healthy").all(), 5, "targets still healthy")
