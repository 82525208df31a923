"""Spot interruptions on the local fleet (mlops_lb/local/spot.py): the same agent an EC2 instance runs polls an
IMDS emulator, deregisters its target on the two-minute notice (compressed clock), and EC2's reclaim is a SIGKILL.

Rules (mlops_lb/_aws_rules.py): spot-notice (two minutes, poll every 5 s,
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html) and
deregistration-delay (draining ends inside the notice). The verdict is tested both ways: with the agent a
steady load sees no error through an interruption; without it (run_agents = False) the same interruption fails
requests. Both runs go through a RunSession (the real open-loop generator, records with X-Target-Id) into a run
bundle, whose spot tables give the report's row for the interruption: 0 client-visible errors with the agent,
the failed requests without it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _localfleet import fast_spec, wait_for

import mlops_lb as ml
from mlops_lb.analysis.spot import interruption_errors
from mlops_lb.bundle import RunBundle
from mlops_lb.errors import SpecError
from mlops_lb.load import constant
from mlops_lb.local.spot import SpotController
from mlops_lb.report import _spot_section

pytestmark = [pytest.mark.fleet, pytest.mark.serial]


def _spot_spec(name: str, **spot: object) -> ml.FleetSpec:
    base = fast_spec(name, period_s=2.0, min=3, desired=3, max=5, scale_in=False, min_service_ms=40.0)
    return base.replace(
        capacity=ml.CapacitySpec(min=3, desired=3, max=5, spot={"instance_types": ["t3.small"], **spot}),
        target_group=ml.TargetGroupSpec(deregistration_delay_s=60),
    )


def _interrupt_under_load(fleet: ml.Fleet, out: Path, seconds: float = 7.0) -> Any:
    """A session at 60 rps for ``seconds`` into a bundle under ``out``; the oldest spot target interrupted 1 s in."""
    session = ml.RunSession(
        fleet, constant(60, seconds), out=out, report=False, connections=8, timeout_s=5
    ).start()
    time.sleep(1.0)
    fleet.interrupt()  # type: ignore[attr-defined]
    outcome = session.finish(timeout=seconds + 40)
    assert outcome.error is None and outcome.bundle_path is not None, outcome.error
    return outcome


def _spot_rows(fleet: ml.Fleet, bundle_path: Path) -> tuple[Any, str]:
    """The bundle's spot tables (saved again now that the replacement is known) -> the report's rows."""
    RunBundle(bundle_path).capture(fleet, tables=("spot", "events"))
    b = RunBundle.load(bundle_path)
    # the report's section alone: the whole page draws every plot (seconds; tests/spot renders a whole one)
    section = _spot_section(b.in_window(), b.requests, b.events, b.window[0])  # type: ignore[index]
    per = interruption_errors(b.spot_interruptions, b.requests, events=b.events)
    return per, section


def _failures(bundle_path: Path) -> str:
    """The failed requests and the spot moments, for an assertion message."""
    b = RunBundle.load(bundle_path)
    r = b.requests
    f = r[~r["error"].isin(["", "cancelled"])][["sent_at", "done_at", "status", "error", "target"]]
    moments = b.spot_interruptions[[c for c in b.spot_interruptions.columns if c.endswith("_at")]]
    ev = b.events[b.events["kind"].isin(["unhealthy", "terminate", "deregistered", "spot_interrupted"])]
    return f"{f.to_string()}\n{moments.T.to_string()}\n{ev.to_string()}"


def test_interruption_under_load_costs_no_request_and_is_replaced(tmp_path: Path) -> None:
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
        assert url
        outcome = _interrupt_under_load(fleet, tmp_path)
        wait_for(lambda: fleet.spot_interruptions()["replacement_healthy_s"].notna().all(), 40, "replacement")
        df = fleet.spot_interruptions()  # type: ignore[attr-defined]
        ev = fleet.events()
        per, section = _spot_rows(fleet, outcome.bundle_path)
    reqs = outcome.result.requests()
    assert outcome.summary["errors"] == 0 and set(reqs["status"]) == {200}, outcome.summary["errors_by_kind"]
    # The report's row: the interruption cost no request, and the target got none after its notice but the
    # ones sent in the agent's poll interval.
    assert per["target"].tolist() == [df.iloc[0]["target"]] and per["client_errors"].tolist() == [0]
    assert per.iloc[0]["notice_to_replacement_healthy_s"] > 0
    assert "0.00 (0 attributed to 1 interruption(s))" in section and "% saved" in section
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


def test_without_the_agent_the_same_interruption_fails_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(SpotController, "run_agents", False)
    spec = _spot_spec("spot-noagent", capacity_rebalance=True)
    with ml.open_fleet(spec, backend="local") as fleet:
        fleet.launch()
        outcome = _interrupt_under_load(fleet, tmp_path)
        df = fleet.spot_interruptions()  # type: ignore[attr-defined]
        per, section = _spot_rows(fleet, outcome.bundle_path)
    # "cancelled" is a request the run's own end never sent: not one the client saw fail
    failed = sum(n for kind, n in outcome.summary["errors_by_kind"].items() if kind != "cancelled")
    assert failed > 0, outcome.summary["errors_by_kind"]
    # The report's row shows them: every failure of the run falls to this interruption (none before it).
    assert per["client_errors"].tolist() == [failed] and per.attrs["unattributed"] == 0, (
        per.to_dict("records"),
        outcome.summary["errors_by_kind"],
        _failures(outcome.bundle_path),
    )
    assert f"{failed:.2f} ({failed} attributed to 1 interruption(s))" in section
    assert (
        df.iloc[0]["deregistered_s"] is None or df.iloc[0]["deregistered_s"] != df.iloc[0]["deregistered_s"]
    )


def test_interrupt_needs_a_spot_section() -> None:
    with (
        ml.open_fleet(fast_spec("nospot"), backend="local") as fleet,
        pytest.raises(SpecError, match=r"capacity\.spot"),
    ):
        fleet.interrupt()  # type: ignore[attr-defined]
