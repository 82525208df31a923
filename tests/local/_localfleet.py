"""Helpers of the local-fleet tests: small fast specs, a bounded load loop, a polling wait.

A uniquely named module rather than ``from conftest import``: with several test directories on one command line,
``conftest`` names whichever conftest pytest imported last (tests/load's), and collection failed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlops_lb as ml

# A server the way a user writes one (standard library only, no mlops_lb): see its docstring.
USER_SERVER = Path(__file__).with_name("user_server.py")


def fast_spec(
    name: str = "t",
    *,
    period_s: float = 1.0,
    algorithm: str = "round_robin",
    min: int = 1,
    desired: int = 2,
    max: int = 3,
    target_rps: float = 50.0,
    slots: int = 4,
    min_service_ms: float = 5.0,
    scale_in: bool = True,
) -> ml.FleetSpec:
    """A spec on a fast clock: 1 s periods, health interval 10 s -> 0.17 s, warm-up 60 s -> 1 s."""
    return ml.FleetSpec(
        name=name,
        capacity=ml.CapacitySpec(min=min, desired=desired, max=max),
        health_check=ml.HealthCheckSpec(
            interval_s=10, timeout_s=5, healthy_threshold=2, unhealthy_threshold=2, grace_period_s=60
        ),
        target_group=ml.TargetGroupSpec(algorithm=algorithm, deregistration_delay_s=30),  # type: ignore[arg-type]
        scaling=ml.ScalingPolicySpec(
            target_rps_per_target=target_rps, warmup_s=60, scale_in_enabled=scale_in
        ),
        local=ml.LocalSpec(period_s=period_s, slots=slots, min_service_ms=min_service_ms),
    )


def payload() -> bytes:
    from mlops_lb.serving import demo_payloads

    body = demo_payloads(1)[0]
    return body if isinstance(body, bytes) else str(body).encode()


@dataclass
class LoadStats:
    statuses: Counter[int] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    errors: int = 0


def run_load(
    url: str, *, requests: int, concurrency: int = 1, rps: float | None = None, max_s: float = 30.0
) -> LoadStats:
    """POST /predict ``requests`` times from ``concurrency`` keep-alive threads, optionally paced; bounded by ``max_s``."""
    host, port = url.removeprefix("http://").split(":")
    body = payload()
    stats = LoadStats()
    lock = threading.Lock()
    deadline = time.monotonic() + max_s
    per_thread = [
        requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)
    ]
    interval = None if rps is None else concurrency / rps

    def worker(n: int) -> None:
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            if interval is not None:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=5)
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    stats.statuses[resp.status] += 1
                    stats.targets[resp.getheader("X-Target-Id") or ""] += 1
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    stats.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_s + 5)
    return stats


def wait_for(cond: Any, timeout_s: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
