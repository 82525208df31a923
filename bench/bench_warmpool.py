"""Benchmark of the local warm pool, in one run: scale-out decision -> first request served by the new target,
with a prepared (stopped) warm-pool worker vs a cold launch, as a ratio.

Each case opens a fleet at desired 1 (max 2), waits until it is idle (and, with the pool, until the pool worker is
prepared and stopped), then calls ``scale(desired=2)`` -- the decision -- and sends GET /health through the
balancer every 10 ms until one is answered by the new target (``X-Target-Id``). The events of both fleets carry
the stages (scale_out -> launch -> registered -> healthy) for the scale-out waterfall.

Run:  .venv/bin/python bench/bench_warmpool.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time

from mlops_lb import CapacitySpec, FleetSpec, HealthCheckSpec, LocalSpec, ScalingPolicySpec
from mlops_lb.local import LocalFleet
from mlops_lb.spec import WarmPoolSpec


def spec(warm: bool) -> FleetSpec:
    pool = WarmPoolSpec(min_size=1, state="stopped") if warm else None
    return FleetSpec(
        name="bench-warm" if warm else "bench-cold",
        capacity=CapacitySpec(min=1, desired=1, max=2, warm_pool=pool),
        health_check=HealthCheckSpec(interval_s=10, timeout_s=5, healthy_threshold=2, unhealthy_threshold=2),
        # A target far above the probe's rate: only the manual scale-out moves capacity.
        scaling=ScalingPolicySpec(target_rps_per_target=10_000, warmup_s=60, scale_in_enabled=False),
        local=LocalSpec(period_s=1.0),
    )


def served_by(port: int) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/health", headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.getheader("X-Target-Id") or ""
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        c.close()


def one(warm: bool, timeout_s: float = 120.0) -> float:
    """Seconds from scale(desired=2) to the first request the new target serves."""
    with LocalFleet(spec(warm)) as fleet:
        fleet.launch()
        deadline = time.monotonic() + timeout_s
        while warm and "ready" not in fleet.status().attrs["warm_pool"].values():
            assert time.monotonic() < deadline, "the warm pool never got a prepared worker"
            time.sleep(0.05)
        time.sleep(1.0)  # let the boot's CPU settle, for both cases alike
        port = int(fleet.url.rsplit(":", 1)[1])
        before = set(fleet.status()["target"])
        t0 = time.monotonic()
        fleet.scale(desired=2)
        while True:
            target = served_by(port)
            if target and target not in before:
                took = time.monotonic() - t0
                break
            assert time.monotonic() - t0 < timeout_s, "the new target never served"
            time.sleep(0.01)
        ev = fleet.events()
        stages = ev[ev["target"] == target][["kind", "detail"]].values.tolist()
        print(f"  {'warm' if warm else 'cold'}: {took:.2f} s; {target}: " + " -> ".join(k for k, _ in stages))
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    cold, warm = [], []
    for _ in range(args.rounds):  # interleaved, so a busy spell on the machine hits both alike
        cold.append(one(False))
        warm.append(one(True))
    c, w = statistics.median(cold), statistics.median(warm)
    print(
        f"decision -> first request served by the new target, median of {args.rounds}: "
        f"cold launch {c:.2f} s, warm pool {w:.2f} s; ratio cold/warm = {c / w:.1f}x"
    )


if __name__ == "__main__":
    main()
