"""Replay and capacity planner with both scaling metrics: request_count_per_target and concurrency_per_target."""

from __future__ import annotations

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb.analysis import plan_capacity
from mlops_lb.analysis.replay import concurrency_from_metrics, replay, reproduce
from mlops_lb.autoscaling import TargetTrackingPolicy
from mlops_lb.errors import SpecError
from mlops_lb.frames import metric_frame

CONC = ml.ScalingPolicySpec(metric="concurrency_per_target", target_concurrency_per_target=4, warmup_s=60)


def test_policy_from_spec_keeps_concurrency_unconverted() -> None:
    """A concurrency target is an average: the same on a 60 s and a 2 s period; a request target is per period."""
    assert TargetTrackingPolicy.from_spec(CONC, period_s=60).target_value == 4.0
    assert TargetTrackingPolicy.from_spec(CONC, period_s=2).target_value == 4.0
    assert TargetTrackingPolicy.from_spec(CONC).metric_name == "ConcurrencyPerTarget"
    rps = ml.ScalingPolicySpec(target_rps_per_target=5)
    assert TargetTrackingPolicy.from_spec(rps, period_s=2).target_value == 10.0


def test_replay_on_a_concurrency_trace() -> None:
    """Hand-worked: 1 instance, target 4 in flight; 3 periods at 10 in flight -> ceil(10 / 4) = 3 instances; the
    new ones serve after 2 periods (then 10 / 3 = 3.3 per target, below 4); 20 quiet periods -> back to 1."""
    r = replay([10.0] * 6 + [0.0] * 20, policy=CONC, period_s=60, min=1, max=5)
    c = r.capacity
    assert "concurrency" in c.columns and "request_count" not in c.columns
    out = c[c["action"] == "scale_out"]
    assert list(out["period"]) == [2] and list(out["desired"]) == [3]
    assert "ConcurrencyPerTarget 10.0 > target 4.0" in out["reason"].iloc[0]
    assert c["above_target"].iloc[5] == False  # noqa: E712 - 10 / 3 serving
    assert c["desired"].iloc[-1] == 1
    assert "in-flight requests per target" in repr(r)
    # The replay's own decision log replays to the same answers.
    assert reproduce(r.decisions, CONC, period_s=60)["matches"].all()


def test_reproduce_needs_the_policys_column() -> None:
    """A concurrency policy replays a log's concurrency column; a log without one is a clear error."""
    log = pd.DataFrame({"request_count": [1.0], "ready": [1], "desired_before": [1], "action": ["none"]})
    with pytest.raises(SpecError, match=r"missing columns \['concurrency'\]"):
        reproduce(log, CONC)


def test_concurrency_trace_from_a_metric_frame() -> None:
    """Per-target ConcurrencyPerTarget rows are summed per timestamp; a group-only frame is scaled by in-service."""
    t0, t1 = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-01 00:01", tz="UTC")
    row = lambda t, v, target="", metric="ConcurrencyPerTarget": {  # noqa: E731
        "timestamp": t, "metric": metric, "stat": "Average", "value": v, "unit": "Count", "target": target
    }  # fmt: skip
    df = metric_frame([row(t0, 3.0), row(t0, 2.0, "i-1"), row(t0, 4.0, "i-2"), row(t1, 1.0, "i-1")])
    assert list(concurrency_from_metrics(df)) == [6.0, 1.0]
    group_only = metric_frame(
        [row(t0, 3.0), {**row(t0, 2.0, metric="GroupInServiceInstances"), "unit": "None"}]
    )
    assert list(concurrency_from_metrics(group_only)) == [6.0]


def test_planner_recommends_a_concurrency_target_by_littles_law() -> None:
    """Steps 100/200/300 rps per target with mean latency 20/25/60 ms, p99 SLO 100 ms: 300 fails, so the max OK
    rate is 200; at safety 0.5 the target is 100 rps -> 100 x 0.025 s = 2.5 in flight per target."""
    steps = pd.DataFrame(
        {
            "rate": [100.0, 200.0, 300.0],
            "p99_s": [0.04, 0.08, 0.5],
            "error_rate": [0.0, 0.0, 0.0],
            "mean_s": [0.020, 0.025, 0.060],
        }
    )
    plan = plan_capacity(steps, slo_p99_s=0.1, safety_factor=0.5)
    assert plan.recommended_rps_per_target == 100.0
    assert plan.recommended_concurrency_per_target == pytest.approx(2.5)
    pol = plan.scaling_policy("concurrency_per_target")
    assert pol.metric == "concurrency_per_target" and pol.target_concurrency_per_target == 2.5
    assert plan.scaling_policy().target_rps_per_target == 100.0
    assert "2.50 in-flight requests per target" in repr(plan)
    no_latency = plan_capacity(steps.drop(columns="mean_s"), slo_p99_s=0.1)
    assert no_latency.recommended_concurrency_per_target is None
    with pytest.raises(SpecError, match="mean_s or p50_s"):
        no_latency.scaling_policy("concurrency_per_target")
