"""Spot interruptions on the local fleet (mlops_lb/local/spot.py): the same agent an EC2 instance runs polls an
IMDS emulator, deregisters its target on the two-minute notice (compressed clock), and EC2's reclaim is a SIGKILL.

Rules (mlops_lb/_aws_rules.py): spot-notice (two minutes, poll every 5 s,
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html) and
deregistration-delay (draining ends inside the notice). The verdict is tested both ways: with the agent a
steady load sees no error through an interruption; without it (run_agents = False) the same interruption fails
requests.
"""

from __future__ import annotations

import threading
import time

import pytest
from _localfleet import fast_spec, run_load, wait_for

import mlops_lb as ml
from mlops_lb.errors import SpecError
from mlops_lb.local.spot import SpotController

pytestmark = [pytest.mark.fleet, pytest.mark.serial]


def _spot_spec(name: str, **spot: object) -> ml.FleetSpec:
    base = fast_spec(name, period_s=2.0, min=3, desired=3, max=5, scale_in=False, min_service_ms=40.0)
    return base.replace(
        capacity=ml.CapacitySpec(min=3, desired=3, max=5, spot={"instance_types": ["t3.small"], **spot}),
        target_group=ml.TargetGroupSpec(deregistration_delay_s=60),
    )


def _interrupt_under_load(fleet: ml.Fleet, url: str, seconds: float = 7.0):
    res = {}
    th = threading.Thread(
        target=lambda: res.setdefault(
            "s", run_load(url, requests=int(60 * seconds), concurrency=6, rps=60, max_s=seconds + 5)
        )
    )
    th.start()
    time.sleep(1.0)
    fleet.interrupt()  # type: ignore[attr-defined]
    th.join(seconds + 40)
    return res["s"]


def test_interruption_under_load_costs_no_request_and_is_replaced() -> None:
    # Base 1 on-demand; above it 0 % on-demand: one on-demand target and two spot ones.
    spec = _spot_spec("spot-ok", capacity_rebalance=True, on_demand_base=1)
    with ml.open_fleet(spec, backend="local") as fleet:
        with pytest.raises(ml.ProvisionError, match="launch"):
            fleet.interrupt()  # type: ignore[attr-defined]
        url = fleet.launch()
        lifecycle = fleet.status().attrs["lifecycle"]
        assert sorted(lifecycle.values()) == ["on-demand", "spot", "spot"]
        od = next(t for t, lc in lifecycle.items() if lc == "on-demand")
        fleet.interrupt(od)  # type: ignore[attr-defined]  # EC2 never interrupts an on-demand instance
        stats = _interrupt_under_load(fleet, url)
        wait_for(lambda: fleet.spot_interruptions()["replacement_healthy_s"].notna().all(), 40, "replacement")
        df = fleet.spot_interruptions()  # type: ignore[attr-defined]
        ev = fleet.events()
    assert stats.errors == 0 and set(stats.statuses) == {200}, (stats.statuses, stats.errors)
    assert len(df) == 1 and df.iloc[0]["target"] != od
    assert "not a spot target" in ev[ev["target"] == od].query("kind == 'spot_notice'")["detail"].iloc[0]
    row = df.iloc[0]
    # The agent polls every 2 AWS s (0.1 s here); the endpoint drains in HAProxy at once: well under a second.
    assert row["notice_to_deregistered_s"] < 1.0, row
    # EC2 reclaims two minutes (4 s here) after the notice, not before.
    assert 4.0 <= row["terminated_s"] - row["notice_s"] < 5.0, row
    # Capacity rebalancing: the replacement launched at the recommendation, before the notice ended.
    assert row["released_s"] == row["rebalance_s"] and row["replacement"]
    assert {"spot_rebalance", "spot_notice", "spot_agent", "spot_interrupted"} <= set(ev["kind"])
    assert any(r["lifecycle"] == "spot" for r in df.attrs["ledger"])


def test_without_the_agent_the_same_interruption_fails_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SpotController, "run_agents", False)
    spec = _spot_spec("spot-noagent", capacity_rebalance=True)
    with ml.open_fleet(spec, backend="local") as fleet:
        url = fleet.launch()
        stats = _interrupt_under_load(fleet, url)
        df = fleet.spot_interruptions()  # type: ignore[attr-defined]
    failed = stats.errors + sum(n for code, n in stats.statuses.items() if code != 200)
    assert failed > 0, stats.statuses
    assert (
        df.iloc[0]["deregistered_s"] is None or df.iloc[0]["deregistered_s"] != df.iloc[0]["deregistered_s"]
    )


def test_interrupt_needs_a_spot_section() -> None:
    with (
        ml.open_fleet(fast_spec("nospot"), backend="local") as fleet,
        pytest.raises(SpecError, match=r"capacity\.spot"),
    ):
        fleet.interrupt()  # type: ignore[attr-defined]
