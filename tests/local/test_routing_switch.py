"""Routing policies on a real HAProxy in front of real LLM emulators, switched at run time through the map.

What is HAProxy's documented behaviour here (HAProxy 2.6 Configuration Manual, section 4.2,
https://docs.haproxy.org/2.6/configuration.html#4.2-balance): ``balance hdr(<name>)`` sends equal header values
to the same server ("If the header is absent ... the roundrobin algorithm is applied instead"); ``stick on`` keeps
a key on the server it was first sent to; ``set map`` changes a map entry at run time (Management Guide 9.3).
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter, defaultdict
from urllib.parse import urlsplit

import pytest

import mlops_lb as ml
from mlops_lb.errors import ProvisionError, SpecError
from mlops_lb.local import LocalFleet
from mlops_lb.local.routing import policy_backends

pytestmark = pytest.mark.fleet

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 2})


def _spec(**routing: object) -> ml.FleetSpec:
    return ml.FleetSpec.from_dict(
        {
            "name": "rt",
            "capacity": {"min": 3, "desired": 3, "max": 3},
            "health_check": {
                "interval_s": 10, "timeout_s": 5, "healthy_threshold": 2, "unhealthy_threshold": 2,
                "grace_period_s": 60,
            },
            "target_group": {"deregistration_delay_s": 30},
            "server": {"kind": "llm-emulator", "llm": {"decode_ms_per_token": 1, "seed": 1}},
            "local": {"period_s": 1.0},
            "routing": routing,
        }
    )  # fmt: skip


def _send(url: str, headers: dict[str, str]) -> str:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        return str(resp.getheader("X-Target-Id"))
    finally:
        conn.close()


def _targets_per_key(url: str, header: str, fmt: str, keys: int = 8, each: int = 3) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for _ in range(each):
        for k in range(keys):
            seen[f"k{k}"].add(_send(url, {header: fmt.format(k=f"k{k}")}))
    return seen


@pytest.mark.timeout(120)
def test_policies_switch_at_run_time_and_follow_the_group() -> None:
    # hash_balance_factor 0: pure consistent hashing. With the default bound (125 %) a key may spill to another target
    # whenever its own holds more than 1.25x the average in flight, which a busy machine's slow closes can cause.
    with LocalFleet(_spec(policy="consistent_hash", hash_balance_factor=0)) as fleet:
        fleet.launch()
        # The spec's policy is in force from the start (the map file is written before HAProxy starts).
        assert fleet.routing == "consistent_hash"
        by_key = _targets_per_key(fleet.url, "X-Prefix-Key", "{k}")
        assert all(len(t) == 1 for t in by_key.values()), by_key  # one key, one target
        assert len(set().union(*by_key.values())) >= 2, by_key  # keys spread over targets

        took = fleet.set_routing("round_robin")
        assert fleet.routing == "round_robin" and took < 5.0
        rr = Counter(_send(fleet.url, {"X-Prefix-Key": "same"}) for _ in range(9))
        assert sorted(rr.values()) == [3, 3, 3], rr  # the key no longer matters

        fleet.set_routing("sticky_cookie")
        by_cookie = _targets_per_key(fleet.url, "Cookie", "mlops-session={k}")
        assert all(len(t) == 1 for t in by_cookie.values()), by_cookie
        assert len(set().union(*by_cookie.values())) == 3, by_cookie  # first placement round robin

        # A restarted HAProxy starts from the map file (as this fleet did: consistent_hash from the start, above),
        # and set_routing rewrote it, so a restart keeps the policy. (Killing HAProxy here would prove the same at
        # ~4.5 s of restart backoff.)
        assert (fleet.work_dir / "routing.map").read_text() == "policy tg_sticky\n"
        ev = fleet.events()
        assert (ev["kind"] == "routing").sum() == 2

        # Scale-in: the drained target leaves every policy backend (one fleet for both checks: a launch is ~5 s).
        assert fleet._api is not None
        rows = fleet._api.show_stat()
        for be in policy_backends():
            assert sum(1 for r in rows if r.proxy == be and r.is_server) == 3, be
        fleet.set_routing("least_outstanding_requests")
        fleet.scale(min=2, desired=2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = fleet._api.show_stat()
            if all(sum(1 for r in rows if r.proxy == be and r.is_server) == 2 for be in policy_backends()):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"policy backends still hold 3 servers: {[(r.proxy, r.server) for r in rows]}")
        live = set(fleet.status().query("state == 'in_service'")["target"])
        assert {_send(fleet.url, {}) for _ in range(6)} <= live


def test_bad_switches_are_refused_before_touching_haproxy() -> None:
    fleet = LocalFleet(ml.FleetSpec(name="m"))  # kind model; nothing started yet
    try:
        with pytest.raises(SpecError, match="did you mean 'consistent_hash'") as err:
            fleet.set_routing("consistent-hash")
        assert err.value.field == "policy"
        with pytest.raises(SpecError, match=r"server\.kind model"):
            fleet.set_routing("consistent_hash")
        with pytest.raises(ProvisionError, match="launch"):
            fleet.set_routing("round_robin")
    finally:
        fleet.close()
