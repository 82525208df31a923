"""Benchmark of the local fleet's balancer, in one run:

1. the balancer hop: p50/p99 of sequential and parallel POST /predict straight to a worker vs through HAProxy;
2. the time from a load step to the new target's first served request (demo spec: scale-out, launch, first
   passing check, first request), on the compressed clock and in AWS-equivalent seconds.

Run:  .venv/bin/python bench/bench_balancer.py [--requests 2000] [--threads 8]
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import mlops_lb as ml
from mlops_lb.local import LocalFleet
from mlops_lb.serving import demo_payloads


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def hammer(port: int, n: int, threads: int, body: bytes) -> list[float]:
    """``n`` requests from ``threads`` keep-alive clients; returns per-request latencies (s)."""
    lat: list[float] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        for _ in range(k):
            t0 = time.perf_counter()
            c.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            mine.append(time.perf_counter() - t0)
            assert r.status == 200, r.status
        c.close()
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


def bench_hop(n: int, threads: int) -> list[tuple[str, float, float]]:
    spec = ml.FleetSpec(
        name="bench-hop",
        capacity=ml.CapacitySpec(min=1, desired=1, max=1),
        local=ml.LocalSpec(period_s=2, slots=64, min_service_ms=0),
    )
    body = demo_payloads(1)[0]
    out = []
    with LocalFleet(spec) as fleet:
        fleet.launch()
        worker_port = int(fleet.status()["address"].iloc[0].split(":")[1])
        lb_port = int(fleet.url.rsplit(":", 1)[1])
        hammer(worker_port, 200, 1, body)  # warm both paths
        hammer(lb_port, 200, 1, body)
        for label, port in (("direct", worker_port), ("haproxy", lb_port)):
            for mode, k in (("sequential", 1), (f"parallel x{threads}", threads)):
                lat = hammer(port, n, k, body)
                out.append((f"{label:8s} {mode}", _pct(lat, 0.5) * 1000, _pct(lat, 0.99) * 1000))
    return out


def paced_load(
    port: int,
    rps: float,
    duration_s: float,
    body: bytes,
    on_response: Callable[[str], None],
    threads: int = 8,
) -> None:
    stop_at = time.monotonic() + duration_s

    def run() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        nxt = time.monotonic()
        while time.monotonic() < stop_at:
            nxt += threads / rps
            time.sleep(max(0.0, nxt - time.monotonic()))
            try:
                c.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                on_response(r.getheader("X-Target-Id") or "")
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def bench_step(rps: float, duration_s: float) -> dict[str, float]:
    spec = ml.FleetSpec.example()
    body = demo_payloads(1)[0]
    first_seen: dict[str, float] = {}
    with LocalFleet(spec) as fleet:
        fleet.launch()
        port = int(fleet.url.rsplit(":", 1)[1])
        initial = set(fleet.status()["target"])
        t0 = time.monotonic()
        wall0 = datetime.now(timezone.utc)

        def seen(tid: str) -> None:
            first_seen.setdefault(tid, time.monotonic() - t0)

        paced_load(port, rps, duration_s, body, seen)
        ev = fleet.events()
        ev = ev[ev["timestamp"] >= wall0]

        def first(kind: str) -> float:
            rows = ev[ev["kind"] == kind]
            if kind != "scale_out":
                rows = rows[~rows["target"].isin(initial)]
            return (rows["timestamp"].iloc[0] - wall0).total_seconds() if len(rows) else float("nan")

        new = [t for t in first_seen if t not in initial]
        return {
            "scale_out decision": first("scale_out"),
            "new instance launched": first("launch"),
            "new target healthy": first("healthy"),
            "new target's first served request": min((first_seen[t] for t in new), default=float("nan")),
            "period_s": spec.local.period_s,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument(
        "--step-rps", type=float, default=90.0, help="load after the step (demo target: 40 rps/target)"
    )
    p.add_argument("--step-s", type=float, default=20.0)
    a = p.parse_args()
    print(f"balancer hop: {a.requests} POST /predict per row (min_service_ms=0, slots=64)")
    print(f"{'path':24s} {'p50 ms':>8s} {'p99 ms':>8s}")
    rows = bench_hop(a.requests, a.threads)
    for name, p50, p99 in rows:
        print(f"{name:24s} {p50:8.2f} {p99:8.2f}")
    print(f"\nload step 0 -> {a.step_rps:g} rps on the demo spec (1 target, target 40 rps/target)")
    res = bench_step(a.step_rps, a.step_s)
    scale = 60.0 / res.pop("period_s")
    print(f"{'milestone after the step':36s} {'local s':>8s} {'AWS-equiv s':>12s}")
    for k, v in res.items():
        print(f"{k:36s} {v:8.2f} {v * scale:12.0f}")


if __name__ == "__main__":
    main()
