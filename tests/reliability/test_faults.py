"""Faults under steady open-loop load on the local fleet: each fault shows exactly the errors an ALB would show.

Every test launches its own two-target fleet (``fault_spec``: the fastest health checks the emulator allows, ALB
idle timeout 2 s), sends a constant 80 rps through HAProxy with the open-loop engine, injects one fault and checks
three things: which requests failed and how (kind, status, when), how many (bounded by what was routed to the
faulty target before the balancer noticed), and how the fleet recovered (events, replacement, time).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from _reliability import LOAD, events_of, fault_spec, wait_for

from mlops_lb.load import LoadRun, constant, start_load
from mlops_lb.local import LocalFleet

RATE = 80.0  # rps: both targets busy, far below their capacity (8 slots x 5 ms each)

# serial: drain, replacement and 504-then-recovery within health-check timeouts (scripts/test.sh runs serial tests one at a time)
pytestmark = [pytest.mark.timeout(120), pytest.mark.serial]


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc))


def _load(fleet: LocalFleet, seconds: float) -> LoadRun:
    """Start the steady load and return once its first interval came back (traffic flows through both targets)."""
    run = start_load(fleet.url + "/predict", constant(RATE, seconds), **LOAD)
    wait_for(lambda: len(run.latest_intervals()) >= 2, 15, "the load to flow")
    return run


def _detection_s(fleet: LocalFleet) -> float:
    """How long HAProxy may take to mark a dead target down: ``fall x inter + timeout`` (local clock)."""
    asg = fleet._asg
    assert asg is not None
    return (fleet.spec.health_check.unhealthy_threshold * asg.inter_ms + asg.timeout_ms) / 1000


def _error_bound(fleet: LocalFleet) -> float:
    """Requests that can reach one of two round-robin targets before it is marked down, plus those in flight."""
    return RATE / 2 * (_detection_s(fleet) + 0.5) + fleet.spec.local.slots


def test_sigkill_target_errors_confined_to_its_requests(fleet_factory, record) -> None:
    """SIGKILL one target: only requests routed to it before it is marked down fail, as 502 or reset (never
    hidden by a retry), at most its share of the detection window plus in-flight; a replacement turns healthy."""
    fleet = fleet_factory(fault_spec("kill"))
    run = _load(fleet, 6)
    victim = fleet.status().iloc[0]
    killed_at = _now()
    os.killpg(int(victim["pid"]), signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: len(events_of(fleet, "unhealthy", victim["target"])), 10, "the victim marked unhealthy")
    down_at = events_of(fleet, "unhealthy", victim["target"])["timestamp"].iloc[0]

    def replaced() -> bool:
        st = fleet.status()
        return victim["target"] not in set(st["target"]) and (st["health"] == "healthy").sum() == 2

    wait_for(replaced, 30, "a healthy replacement")
    recovery_s = time.monotonic() - t0
    r = run.result(timeout=60)
    df = r.requests()
    errs = df[df["error"] != ""]
    record(
        errors=len(errs),
        by_kind=errs["error"].value_counts().to_dict(),
        statuses=errs["status"].value_counts().to_dict(),
        bound=_error_bound(fleet),
        marked_down_s=(down_at - killed_at).total_seconds(),
        replacement_healthy_s=recovery_s,
        requests=len(df),
    )
    assert len(errs) > 0, (
        "the ALB shows requests lost with a dead target; a retry or redispatch would hide them"
    )
    assert set(errs["error"]) <= {"reset", "http_5xx"}, errs["error"].value_counts()
    assert set(errs.loc[errs["error"] == "http_5xx", "status"]) <= {502}  # the ALB's "target refused/reset"
    assert len(errs) <= _error_bound(fleet)
    # Confined in time: sent after the kill (minus one service time) and before the balancer noticed.
    assert errs["sent_at"].min() >= killed_at - timedelta(seconds=0.2)
    assert errs["sent_at"].max() <= down_at + timedelta(seconds=0.3)
    assert (df.loc[df["error"] == "", "status"] == 200).all()
    ev = fleet.events()
    assert ((ev["kind"] == "terminate") & (ev["target"] == victim["target"])).any()
    assert (ev["kind"] == "launch").sum() == 3


def test_sigstop_target_gives_504s_and_recovers_after_sigcont(fleet_factory, record) -> None:
    """SIGSTOP one target past the health-check timeout: it is marked unhealthy, requests routed to it fail as
    504 after the ALB idle timeout (HAProxy's server timeout mirrors it), and after SIGCONT the same process is
    healthy again (the 30 s grace period keeps the ASG from replacing it)."""
    fleet = fleet_factory(fault_spec("stop", grace_period_s=1800))
    idle = fleet.spec.network.idle_timeout_s
    run = _load(fleet, 8)
    victim = fleet.status().iloc[0]
    pid = int(victim["pid"])
    stopped_at = _now()
    os.killpg(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: len(events_of(fleet, "unhealthy", victim["target"])), 10, "the victim marked unhealthy"
        )
        down_at = events_of(fleet, "unhealthy", victim["target"])["timestamp"].iloc[0]
        time.sleep(idle + 0.5)  # let every request stuck on it reach the idle timeout
    finally:
        os.killpg(pid, signal.SIGCONT)
    t0 = time.monotonic()
    wait_for(lambda: len(events_of(fleet, "healthy", victim["target"])) >= 2, 10, "the victim healthy again")
    recovery_s = time.monotonic() - t0
    r = run.result(timeout=60)
    df = r.requests()
    errs = df[df["error"] != ""]
    record(
        errors=len(errs),
        statuses=errs["status"].value_counts().to_dict(),
        bound=_error_bound(fleet),
        marked_down_s=(down_at - stopped_at).total_seconds(),
        healthy_after_sigcont_s=recovery_s,
        error_service_s_median=float(errs["service_s"].median()) if len(errs) else None,
    )
    assert len(errs) > 0
    assert set(errs["status"]) == {504}, errs["status"].value_counts()
    assert len(errs) <= _error_bound(fleet)
    # Each 504 came after the idle timeout (the ALB's wait for a response), not after the client's 10 s.
    assert errs["service_s"].between(idle - 0.1, idle + 1.5).all(), errs["service_s"].describe()
    assert errs["sent_at"].min() >= stopped_at - timedelta(seconds=0.2)
    assert errs["sent_at"].max() <= down_at + timedelta(seconds=0.3)
    st = fleet.status().set_index("target")
    assert st.loc[victim["target"], "pid"] == pid and st.loc[victim["target"], "health"] == "healthy"
    assert not len(events_of(fleet, "terminate"))


def test_haproxy_killed_is_restarted_and_the_gap_is_connect_errors(fleet_factory, record) -> None:
    """SIGKILL HAProxy mid-load: the fleet restarts it on the same port and re-registers both targets; the load
    test runs to its end and records the gap as connect errors (plus resets in flight and at most a few 503s
    while targets are re-registered), all inside the gap."""
    fleet = fleet_factory(fault_spec("lb"))
    run = _load(fleet, 5)
    hp = fleet._haproxy  # the fleet's own HaproxyProcess: a child this test started
    assert hp is not None and hp.pid is not None
    old_pid = hp.pid
    killed_at = _now()
    os.kill(old_pid, signal.SIGKILL)
    restart_s = wait_for(lambda: len(events_of(fleet, "balancer_restart")), 10, "a balancer_restart event")
    restarted = events_of(fleet, "balancer_restart").iloc[0]
    r = run.result(timeout=60)
    df = r.requests()
    errs = df[df["error"] != ""]
    kinds = errs["error"].value_counts().to_dict()
    record(
        errors=len(errs),
        by_kind=kinds,
        statuses=errs["status"].value_counts().to_dict(),
        restart_event_s=restart_s,
        gap_s=(errs["sent_at"].max() - errs["sent_at"].min()).total_seconds() if len(errs) else 0.0,
    )
    assert not r.stopped and r.summary()["requests"] == r.scheduled  # the load test went on to its end
    assert kinds.get("connect", 0) >= 1
    assert set(kinds) <= {"connect", "reset", "http_5xx"}, kinds
    assert set(errs.loc[errs["error"] == "http_5xx", "status"]) <= {503}
    assert kinds.get("http_5xx", 0) <= 3 and kinds.get("reset", 0) <= LOAD["connections"]
    assert errs["sent_at"].min() >= killed_at - timedelta(seconds=0.2)
    assert errs["sent_at"].max() <= restarted["timestamp"] + timedelta(seconds=0.3)
    assert hp.pid != old_pid and "re-registered 2 target(s)" in restarted["detail"]
    after = df[df["sent_at"] > restarted["timestamp"] + timedelta(seconds=0.3)]
    assert len(after) > 0 and (after["status"] == 200).all() and after["target"].nunique() == 2


def test_failing_health_check_target_is_drained_and_replaced(fleet_factory, record) -> None:
    """A target whose /health fails while /predict works (SIGUSR1) gets no new requests once unhealthy, is
    deregistered and replaced after the grace period, and no request fails at any point."""
    fleet = fleet_factory(fault_spec("hc"))
    asg = fleet._asg
    assert asg is not None
    # Long enough to cover the rest of the grace period (8 s floor from launch) and the replacement's start.
    run = _load(fleet, asg.grace_s + 12)
    victim = fleet.status().iloc[0]
    toggled_at = _now()
    os.kill(int(victim["pid"]), signal.SIGUSR1)
    wait_for(lambda: len(events_of(fleet, "unhealthy", victim["target"])), 10, "the victim marked unhealthy")
    down_at = events_of(fleet, "unhealthy", victim["target"])["timestamp"].iloc[0]
    wait_for(lambda: len(events_of(fleet, "terminate", victim["target"])), 30, "the victim terminated")

    def replaced() -> bool:
        st = fleet.status()
        return victim["target"] not in set(st["target"]) and (st["health"] == "healthy").sum() == 2

    wait_for(replaced, 30, "a healthy replacement")
    replaced_at = _now()
    run.stop()
    r = run.result(timeout=60)
    df = r.requests()
    sent = df[df["sent_at"].notna()]
    on_victim_late = sent[
        (sent["target"] == victim["target"]) & (sent["sent_at"] > down_at + timedelta(seconds=0.3))
    ]
    record(
        errors=int((sent["error"] != "").sum()),
        requests=len(sent),
        marked_down_s=(down_at - toggled_at).total_seconds(),
        replaced_s=(replaced_at - toggled_at).total_seconds(),
        victim_requests_after_down=len(on_victim_late),
    )
    assert (sent["error"] == "").all(), sent["error"].value_counts()
    assert len(on_victim_late) == 0
    ev = fleet.events().query("target == @victim['target']")
    order = [k for k in ev["kind"] if k in ("unhealthy", "deregistered", "terminate")]
    assert order == ["unhealthy", "deregistered", "terminate"], order
    assert (fleet.events()["kind"] == "launch").sum() == 3


def test_every_target_unhealthy_fails_open(fleet_factory, record) -> None:
    """Every target's health check failing (SIGUSR1 to all) under load: HAProxy routes to all of them (the ALB's
    fail open) and every request is still answered 200 by both targets, before, during and after the switch."""
    fleet = fleet_factory(fault_spec("open", grace_period_s=1800))
    run = _load(fleet, 5)
    st = fleet.status()
    for pid in st["pid"]:
        os.kill(int(pid), signal.SIGUSR1)
    all_down_s = wait_for(
        lambda: (fleet.status()["health"] == "unhealthy").all(), 10, "every target marked unhealthy"
    )
    all_down_at = _now()
    r = run.result(timeout=60)
    df = r.requests()
    after = df[df["sent_at"] > all_down_at]
    record(
        errors=int((df["error"] != "").sum()),
        requests=len(df),
        all_down_s=all_down_s,
        served_after=len(after),
    )
    # What a failed request was, and when against the switch: it failed once in about ten serial runs (3 of 400
    # without a status), cause not yet found (docs/testing.md).
    failed = df[df["status"] != 200][["intended_at", "sent_at", "status", "error", "target", "latency_s"]]
    assert failed.empty, (
        f"all targets unhealthy at {all_down_at}:\n{failed.to_string()}\n{fleet.events().tail(12)}"
    )
    assert len(after) >= RATE and after["target"].nunique() == 2
    assert set(fleet.status()["haproxy_status"]) == {"DOWN"}
