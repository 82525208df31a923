"""Shadow traffic (``run_load(..., shadow=url)``): every request copied to a second target on its own
connections; the copies never delay a primary send, never enter the primary's records or verdict, and a copy with
no free shadow connection is dropped and counted."""

from __future__ import annotations

import pytest

from mlops_lb.errors import LoadTestError, SpecError
from mlops_lb.load import constant, run_load

pytestmark = pytest.mark.fleet


def test_copies_reach_the_shadow_and_stay_out_of_the_primary(target_factory):
    """A 40 ms shadow behind a 2 ms primary: each side sees its own latency; the primary's records and the
    primary target's request count hold no copy; the comparison names both."""
    primary, shadow = target_factory(delay_s=0.002), target_factory(delay_s=0.04)
    r = run_load(
        primary.base + "/ok",
        constant(100, 3),
        payloads=[b"x"],
        progress=False,
        shadow=shadow.base + "/ok",
        shadow_connections=16,
    )
    s = r.shadow.summary()
    n = len(r.requests())
    assert primary.count() == n == 300
    assert shadow.count() == s["sent"] == s["scheduled"] - s["dropped"]
    assert s["sent"] >= 0.95 * 300, s  # 16 connections carry 100 rps x 40 ms = 4 in flight
    assert s["p50_s"] >= 0.04 and s["errors"] == 0
    assert r.valid and r.summary()["p50_s"] < 0.04
    cmp = r.shadow.compare(r)
    assert cmp.loc["requests", "primary"] == 300 and cmp.loc["p50_s", "shadow"] >= 0.04


def test_a_hung_shadow_drops_copies_and_never_holds_the_primary_back(target_factory):
    """A shadow that never answers: its two connections fill at once, every later copy is dropped and counted,
    and the primary run is valid with its sends on time."""
    primary, shadow = target_factory(delay_s=0.002), target_factory()
    r = run_load(
        primary.base + "/ok",
        constant(100, 2),
        payloads=[b"x"],
        progress=False,
        timeout_s=1.0,
        shadow=shadow.base + "/hang",
        shadow_connections=2,
    )
    s = r.shadow.summary()
    assert s["dropped"] >= 150 and s["dropped"] + s["sent"] == s["scheduled"] == 200, s
    assert s["errors"] == s["sent"]  # each copy sent timed out
    assert r.valid, r.invalid_reasons
    assert r.requests()["lag_s"].quantile(0.99) < 0.05
    assert len(r.requests()) == primary.count() == 200


def test_bad_shadow_connections_fail_before_sending(target):
    """A shadow pool size out of range names the field; nothing is sent."""
    with pytest.raises(SpecError, match="shadow_connections"):
        run_load(
            target.base + "/ok",
            constant(10, 1),
            progress=False,
            shadow=target.base + "/ok",
            shadow_connections=0,
        )
    with pytest.raises(LoadTestError, match="url must be"):
        run_load(target.base + "/ok", constant(10, 1), progress=False, shadow="https://example.org/x")
    assert target.count() == 0
