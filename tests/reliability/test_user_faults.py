"""Faults a user hits by accident (issue 19): two fleets on one port, a balancer that cannot come back, a killed
owner, calls on a closed fleet. Real HAProxy, real workers, real sockets; each test records what it measured."""

from __future__ import annotations

import http.client
from collections import Counter
from collections.abc import Callable

import pytest
from _reliability import fault_spec

from mlops_lb.errors import PortInUse
from mlops_lb.local import LocalFleet


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
