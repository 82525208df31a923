"""Helpers of the reliability suite (tests/ is not a package: imported as ``from _reliability import ...``).

* ``fault_spec(name, **changes)``: a two-target spec on a 1 s clock whose health checks run as fast as the
  emulator's floors allow (interval 18 s and timeout 10 s scaled by 1/60, then raised to its minimum timeout),
  so faults are detected within about a second or two.
* ``served_ok(fleet)``: ``mlops_requests_total{path="/predict",status="200"}`` summed over the live targets.
* ``wait_for(cond, timeout_s, what)``: poll, or fail naming what never happened.

Example::

    def test_x(fleet_factory):
        fleet = fleet_factory(fault_spec("x"))
        run = start_load(fleet.url + "/predict", constant(60, 5), **LOAD)
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from typing import Any

import mlops_lb as ml
from mlops_lb.local import LocalFleet

# The machine is shared with other work: these tests pin behaviour, not the generator's timing precision.
LOAD: dict[str, Any] = {"progress": False, "max_lag_p99_s": 10.0, "connections": 8, "interval_s": 0.5}

_OK_RE = re.compile(
    r'^mlops_requests_total\{(?=[^}]*path="/predict")(?=[^}]*status="200")[^}]*\}\s+(\S+)', re.M
)


def fault_spec(
    name: str = "rel", *, desired: int = 2, grace_period_s: int = 60, **local: Any
) -> ml.FleetSpec:
    """Two targets, a 1 s period, health interval 18 s and timeout 10 s (scaled by 1/60, floors applied), ALB idle
    timeout 2 s.

    ``grace_period_s`` is AWS seconds (scaled by 1/60, never below the emulator's 8 s floor); ``local`` overrides
    LocalSpec fields (slots, min_service_ms).
    """
    return ml.FleetSpec(
        name=name,
        capacity=ml.CapacitySpec(min=1, desired=desired, max=desired + 1),
        health_check=ml.HealthCheckSpec(
            interval_s=18,
            timeout_s=10,
            healthy_threshold=2,
            unhealthy_threshold=2,
            grace_period_s=grace_period_s,
        ),
        # No scale-in and a target far above the test's rate: the autoscaler must not move capacity mid-fault.
        scaling=ml.ScalingPolicySpec(target_rps_per_target=10_000, warmup_s=60, scale_in_enabled=False),
        target_group=ml.TargetGroupSpec(deregistration_delay_s=30),
        # The ALB's idle timeout is also its wait for a response: a stalled target gives a 504 after it.
        network=ml.NetworkSpec(idle_timeout_s=2),
        local=ml.LocalSpec(period_s=1.0, **{"slots": 8, "min_service_ms": 5.0, **local}),
    )


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, step: float = 0.05) -> float:
    """Poll ``cond`` until truthy; return the seconds it took, or fail naming ``what``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def scrape(address: str, timeout_s: float = 5.0) -> str:
    """GET /metrics of one worker (``127.0.0.1:port``) straight, not through the balancer."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, resp.status
        return body
    finally:
        conn.close()


def ok_count(metrics_text: str) -> int:
    """``mlops_requests_total{path="/predict",status="200"}`` from one Prometheus scrape (0 when absent)."""
    return sum(int(float(v)) for v in _OK_RE.findall(metrics_text))


def served_ok(fleet: LocalFleet) -> int:
    """Successful /predict responses counted by the servers themselves, summed over live targets."""
    return sum(ok_count(scrape(a)) for a in fleet.status()["address"])


def events_of(fleet: LocalFleet, kind: str, target: str | None = None) -> Any:
    ev = fleet.events()
    sel = ev["kind"] == kind
    if target is not None:
        sel &= ev["target"] == target
    return ev[sel]
