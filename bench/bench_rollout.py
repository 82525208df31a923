"""The rollout and shadow numbers of issue 29, measured on the local fleet under steady open-loop load:

1. a canary of a good variant (same speed) that completes: its length, requests each variant served, client errors;
2. a canary of a slow variant (150 ms per request) rolled back by the guard: time from the start of the first
   breaching interval to 0 % on the new slot, requests each variant served, requests the slow variant got after
   its weight went to 0 and during the breach, client errors;
3. a shadow run: the same load copied to a second fleet running the slow variant, primary vs shadow side by side,
   and the primary's schedule lag with and without the shadow.

Run:  .venv/bin/python bench/bench_rollout.py [--rate 80]
"""

from __future__ import annotations

import argparse
import threading
import time

import pandas as pd

from mlops_lb.load import constant, run_load, start_load
from mlops_lb.local import LocalFleet
from mlops_lb.rollouts import Canary, ClientFeed, Guard
from mlops_lb.serving import demo_payloads
from mlops_lb.spec import CapacitySpec, FleetSpec, HealthCheckSpec, LocalSpec, ScalingPolicySpec


def spec(name: str, min_service_ms: float) -> FleetSpec:
    return FleetSpec(
        name=name,
        capacity=CapacitySpec(min=1, desired=1, max=1),
        health_check=HealthCheckSpec(interval_s=10, timeout_s=5, healthy_threshold=2, grace_period_s=60),
        scaling=ScalingPolicySpec(target_rps_per_target=1000, scale_in_enabled=False),
        local=LocalSpec(period_s=1, slots=4, min_service_ms=min_service_ms),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=80.0)
    args = ap.parse_args()
    body = demo_payloads(1)[0]
    guard = Guard(p99_s=0.12, min_requests=5, breach_intervals=2, interval_s=1.0)
    with LocalFleet(spec("bench-ro", 5)) as fleet:
        fleet.launch()
        feed, stop = ClientFeed(), threading.Event()
        run = start_load(fleet.url + "/predict", constant(args.rate, 600), payloads=[body], progress=False,
                         stop=stop, on_records=feed)  # fmt: skip
        time.sleep(2)
        t = time.monotonic()
        good = fleet.rollout({"local": {"min_service_ms": 4}}, strategy=Canary(percent=20, bake_s=5), guard=guard,
                             feed=feed)  # fmt: skip
        good_s = time.monotonic() - t
        t = time.monotonic()
        slow = fleet.rollout({"local": {"min_service_ms": 150}}, strategy=Canary(percent=20, bake_s=10),
                             guard=guard, feed=feed)  # fmt: skip
        slow_s = time.monotonic() - t
        time.sleep(2)
        stop.set()
        res = run.result()
        reqs = res.requests()
        print(
            f"load: {int(reqs['sent_at'].notna().sum())} requests sent at {args.rate:g} rps, valid={res.valid}"
        )
        for name, r, took in (("good canary", good, good_s), ("slow canary", slow, slow_s)):
            print(f"{name}: {r.state} in {took:.1f} s (slot boot included); served {r.served}; "
                  f"client errors {r.client_errors}; {r.reason}")  # fmt: skip
        print(
            f"slow: breach -> 0 %: {slow.breach_to_zero_s:.2f} s (guard interval 1 s, 2 breaching intervals)"
        )
        on_slow = reqs[reqs["target"].str.contains("-r2-")]
        start = pd.Timestamp(slow.zero_at) - pd.Timedelta(seconds=slow.breach_to_zero_s)
        print(f"slow variant: {len(on_slow)} requests in all, {int((on_slow['sent_at'] >= start).sum())} sent "
              f"after the breach began, {int((on_slow['sent_at'] > slow.zero_at).sum())} sent after 0 %")  # fmt: skip
        failed = reqs[~reqs["error"].isin(["", "cancelled"])]
        print(f"client errors over the whole run (both rollouts): {len(failed)}")
        print(slow.timeline_frame().to_string())
    with LocalFleet(spec("bench-a", 5)) as a, LocalFleet(spec("bench-b", 150)) as b:
        a.launch()
        b.launch()
        base = run_load(a.url + "/predict", constant(args.rate, 10), payloads=[body], progress=False)
        shadowed = run_load(a.url + "/predict", constant(args.rate, 10), payloads=[body], progress=False,
                            shadow=b.url + "/predict", shadow_connections=8)  # fmt: skip
        print("shadow run: primary vs shadow (b: 150 ms per request, 4 slots)")
        print(shadowed.shadow.compare(shadowed).to_string())
        lag = [r.requests()["lag_s"].quantile(0.99) * 1e3 for r in (base, shadowed)]
        print(f"primary lag p99 without shadow {lag[0]:.2f} ms, with shadow {lag[1]:.2f} ms; "
              f"valid {base.valid}/{shadowed.valid}")  # fmt: skip


if __name__ == "__main__":
    main()
