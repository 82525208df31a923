"""The local fleet's MetricFrame honours the contract the CloudWatch readers share (tests/contract.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from contract import assert_metric_frame_contract

from mlops_lb.local import LocalFleet

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = pytest.mark.fleet

LOCAL_METRICS = (
    "RequestCount",
    "RequestCountPerTarget",
    "TargetResponseTime",
    "HTTPCode_Target_2XX_Count",
    "HealthyHostCount",
    "UnHealthyHostCount",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "CPUUtilization",
    "ConcurrencyPerTarget",
)


@pytest.fixture(params=["local"])
def metric_frame_source(request: pytest.FixtureRequest, rr_fleet: LocalFleet) -> pd.DataFrame:
    """A MetricFrame from each backend available here (the AWS reader tests add their own source)."""
    assert request.param == "local"
    return rr_fleet.metrics()


def test_metric_frame_contract(metric_frame_source: pd.DataFrame) -> None:
    """The frame passes check_metric_frame and carries every metric the local fleet promises."""
    assert_metric_frame_contract(metric_frame_source, expect=LOCAL_METRICS)


def test_request_count_matches_traffic(rr_fleet: LocalFleet) -> None:
    """RequestCount sums to the requests sent through the balancer; 2XX to the same; CPU is per target."""
    df = rr_fleet.metrics()
    total = df.loc[df["metric"] == "RequestCount", "value"].sum()
    ok = df.loc[df["metric"] == "HTTPCode_Target_2XX_Count", "value"].sum()
    # A balancer restart (another test) can lose the counters of the last 100 ms tick: allow a request or two.
    assert total >= 60 and abs(ok - total) <= 2
    cpu_targets = set(df.loc[df["metric"] == "CPUUtilization", "target"])
    assert cpu_targets and all(t.startswith("i-local") for t in cpu_targets)


def test_coarser_period_groups_local_periods(rr_fleet: LocalFleet) -> None:
    """metrics(period_s=k x local period) sums counts over k periods without losing requests."""
    fine = rr_fleet.metrics()
    coarse = rr_fleet.metrics(period_s=rr_fleet.spec.local.period_s * 3)
    assert_metric_frame_contract(coarse)
    pick = lambda d: d.loc[d["metric"] == "RequestCount", "value"]  # noqa: E731
    assert pick(coarse).sum() == pick(fine).sum()
    assert coarse.attrs["period_s"] == rr_fleet.spec.local.period_s * 3
