"""Faults a user hits by accident (issue 19): two fleets on one port, a balancer that cannot come back, a killed
owner, calls on a closed fleet. Real HAProxy, real workers, real sockets; each test records what it measured."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest
from _reliability import events_of, fault_spec, wait_for

from mlops_lb.local import BalancerDown, LocalFleet, PortInUse

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = pytest.mark.fleet


def _port(fleet: LocalFleet) -> int:
    return int(fleet.url.rsplit(":", 1)[1])


def targets_hit(url: str, n: int) -> Counter[str]:
    """``n`` GET /health, each on a new connection (SO_REUSEPORT spreads connections, not requests)."""
    host, port = url.removeprefix("http://").split(":")
    seen: Counter[str] = Counter()
    for _ in range(n):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/health", headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            seen[resp.getheader("X-Target-Id") or f"status {resp.status}"] += 1
        except (OSError, http.client.HTTPException) as exc:
            seen[type(exc).__name__] += 1
        finally:
            conn.close()
    return seen


def test_second_fleet_on_a_taken_port_is_refused_naming_the_holder(
    fleet_factory: Callable[..., LocalFleet], record: Callable[..., None]
) -> None:
    """A fleet given another fleet's port fails to launch with PortInUse naming the port and the holder's PID;
    the first fleet keeps all of its traffic; two fleets never share a target id.

    Before the fix HAProxy bound with SO_REUSEPORT (its default), the second launch succeeded and the two split
    the traffic (issue 19: 121 vs 79 of 200), both naming their first target i-local0001."""
    first = fleet_factory(fault_spec("porta", desired=1))
    port = _port(first)
    second = LocalFleet(fault_spec("portb", desired=1), port=port)
    with pytest.raises(PortInUse) as exc:
        second.launch()
    holder_pid = first._haproxy.pid  # type: ignore[union-attr]
    assert exc.value.port == port and f"port {port}" in str(exc.value)
    assert f"pid {holder_pid}" in exc.value.holder
    hits = targets_hit(first.url, 200)
    first_ids = set(first.status()["target"])
    record(
        second_launch="PortInUse",
        holder=exc.value.holder[:60],
        first_fleet_share=sum(hits[t] for t in first_ids),
    )
    assert set(hits) == first_ids and sum(hits.values()) == 200, hits
    other = fleet_factory(fault_spec("portc", desired=1))
    assert first_ids.isdisjoint(set(other.status()["target"]))
    assert all(t.startswith("i-local-") for t in first_ids | set(other.status()["target"]))


def _grab_port_after_killing_haproxy(fleet: LocalFleet, attempts: int = 5) -> socket.socket:
    """SIGKILL the fleet's HAProxy and bind its port before the controller restarts it (retried if it wins)."""
    port = _port(fleet)
    for _ in range(attempts):
        restarts = len(events_of(fleet, "balancer_restart"))
        os.killpg(fleet._haproxy.pid, signal.SIGKILL)  # type: ignore[union-attr, arg-type]
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                return s
            except OSError:
                s.close()
            if len(events_of(fleet, "balancer_restart")) > restarts:
                break  # the fleet was faster: try again
            time.sleep(0.001)
    raise AssertionError(f"could not take port {port} from the restarting balancer in {attempts} attempts")


def test_balancer_that_cannot_restart_is_down_and_says_so(
    fleet_factory: Callable[..., LocalFleet],
    record: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HAProxy dies and its port is taken: a `balancer_down` event naming the holder, the state in repr and
    status(), one warning (no traceback per retry, backoff), scale()/launch() refused with BalancerDown; once the
    port is free again: `balancer_up` and traffic flows.

    Before the fix the fleet retried 5 times a second with a traceback each, repr said "running ... 1 healthy",
    and no event was recorded (issue 19)."""
    fleet = fleet_factory(fault_spec("bdown", desired=1))
    caplog.set_level(logging.INFO, logger="mlops_lb.local")
    holder = _grab_port_after_killing_haproxy(fleet)
    try:
        wait_for(lambda: len(events_of(fleet, "balancer_down")) > 0, 10, "a balancer_down event")
        time.sleep(3.0)  # let the retries run: they must back off, quietly
        down = events_of(fleet, "balancer_down")
        assert len(down) == 1 and str(os.getpid()) in down["detail"].iloc[0], down
        assert fleet.balancer == "down" and "BALANCER DOWN" in repr(fleet)
        assert str(_port(fleet)) in fleet.balancer_reason
        assert fleet.status().attrs["balancer"] == "down"
        with pytest.raises(BalancerDown, match=f"port {_port(fleet)}"):
            fleet.scale(desired=2)
        with pytest.raises(BalancerDown):
            fleet.launch()
        assert fleet.capacity[1] == 1
        records = [r for r in caplog.records if r.name.startswith("mlops_lb.local")]
        tracebacks = sum(1 for r in records if r.exc_info)
        warnings = sum(1 for r in records if r.levelno >= logging.WARNING)
        attempts = sum(1 for r in records if r.getMessage().startswith("starting haproxy"))
    finally:
        holder.close()
    back_s = wait_for(lambda: fleet.balancer == "up", 15, "the balancer back up")
    assert len(events_of(fleet, "balancer_up")) == 1
    hits = targets_hit(fleet.url, 10)
    record(
        restart_attempts_while_down=attempts,
        tracebacks=tracebacks,
        warnings=warnings,
        up_after_port_freed_s=round(back_s, 2),
    )
    assert tracebacks == 0 and warnings == 1
    assert 2 <= attempts <= 12  # backoff 0.2, 0.4, 0.8, 1.6, 3.2 s over the ~3.5 s down: not 5 a second
    assert set(hits) == set(fleet.status()["target"]) and sum(hits.values()) == 10
    fleet.scale(desired=1)  # accepted again
