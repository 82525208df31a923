"""What-if replay through decide(): a hand-worked trace, and reproduction of recorded decision logs."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from mlops_lb.analysis import ReplayResult, replay, reproduce
from mlops_lb.autoscaling import CapacityState, PeriodSample, TargetTrackingPolicy, decide
from mlops_lb.errors import SpecError
from mlops_lb.spec import ScalingPolicySpec

POLICY = TargetTrackingPolicy(target_value=600.0, warmup_periods=1)
TRACE = [300.0, 300.0] + [1500.0] * 6 + [200.0] * 20


class TestHandWorked:
    def test_trace(self) -> None:
        """Target 600/period, launch 2 periods, warm-up 1, min 1, max 6, one instance to start:

        * t=2,3,4 above (1500 > 600) -> at t=4 scale out to ceil(1500/600) = 3; two launch at t=4;
        * t=5: both pending (serve from t=6) -> none ("warming ... cover it"); per instance still 1500;
        * t=6: serving 3 (500 each, under target), ready 1 (warm-up until t=7) so the metric is still 1500;
        * t=7: ready 3, metric 500 < 540 (90 % of 600); t=8..: 200/3 = 66.7 < 540; the 15th period below is t=21,
          17 periods after the action -> scale in to ceil(200/600) = 1 at t=21;
        * above target per instance: t=2,3,4,5 = 4 periods = 240 s;
        * instance-periods: 5 x 1 (t=0-4) + 17 x 3 (t=5-21) + 6 x 1 (t=22-27) = 62 -> 62/60 h,
          x 0.0208 USD/h (t3.small, us-east-1) = 0.021493 USD.
        """
        r = replay(TRACE, policy=POLICY, min=1, max=6, launch_periods=2)
        c = r.capacity
        assert list(c.loc[c["action"] != "none", "period"]) == [4, 21]
        assert list(r.scale_events["desired"]) == [3, 1]
        assert c.loc[5, "pending"] == 2 and "warming" in str(c.loc[5, "reason"])
        assert (c.loc[6, "serving"], c.loc[6, "ready"], c.loc[6, "warming"]) == (3, 1, 2)
        assert c.loc[6, "per_target"] == 500.0 and c.loc[6, "metric"] == 1500.0
        assert c.loc[7, "ready"] == 3
        assert r.time_above_target_s == 240.0
        assert r.instance_hours == pytest.approx(62 / 60)
        assert r.cost_usd == pytest.approx(62 / 60 * 0.0208)
        assert r.fraction_above_target == pytest.approx(4 / 28)

    def test_spec_policy_is_the_same(self) -> None:
        """A ScalingPolicySpec (10 rps/target, 60 s warm-up) at 60 s periods equals target 600, warm-up 1."""
        a = replay(TRACE, policy=ScalingPolicySpec(target_rps_per_target=10, warmup_s=60), max=6)
        b = replay(TRACE, policy=POLICY, max=6)
        assert a.policy == b.policy
        pd.testing.assert_frame_equal(a.capacity, b.capacity)

    def test_max_bounds_capacity(self) -> None:
        """A flood never takes the group past max, and the reason says so."""
        r = replay([60000.0] * 10, policy=POLICY, min=1, max=4)
        assert r.capacity["desired"].max() == 4
        assert (r.capacity["reason"].str.contains("max 4")).any()

    def test_repr(self) -> None:
        """The result has a one-line repr and an HTML table."""
        r = replay(TRACE, policy=POLICY, max=6)
        assert isinstance(r, ReplayResult)
        assert "scale events: 1 out, 1 in" in repr(r)
        assert "What-if replay" in r._repr_html_()

    def test_from_metric_frame(self, bundle: Any) -> None:
        """A MetricFrame's RequestCount Sum rows are the trace; timestamps carry through."""
        r = replay(
            bundle.metrics,
            policy=ScalingPolicySpec(target_rps_per_target=40, warmup_s=60),
            period_s=2.0,
            max=6,
        )
        rc = bundle.metrics[bundle.metrics["metric"] == "RequestCount"]
        assert list(r.capacity["request_count"]) == list(rc["value"])
        assert list(r.capacity["timestamp"]) == list(rc["timestamp"])

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"min": 3, "max": 2}, "min"),
            ({"initial": 9, "max": 6}, "initial"),
            ({"launch_periods": -1}, "launch_periods"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], field: str) -> None:
        """Invalid group settings raise SpecError naming the field."""
        with pytest.raises(SpecError) as exc:
            replay(TRACE, policy=POLICY, **kwargs)
        assert exc.value.field == field

    def test_bad_policy(self) -> None:
        """A policy of the wrong type is a SpecError."""
        with pytest.raises(SpecError, match="policy"):
            replay(TRACE, policy={"target": 5})


def _fleet_log(trace: list[float], policy: TargetTrackingPolicy, lo: int, hi: int) -> pd.DataFrame:
    """A decision log built the way the local fleet's autoscaler builds one: decide() each period, with ready
    targets lagging desired by two periods (launch + check), no warm-up split recorded."""
    history: list[PeriodSample] = []
    rows = []
    desired, ready_queue = lo, [lo, lo]
    since = 10**9
    for t, rc in enumerate(trace):
        ready = ready_queue[-2]
        history.append(PeriodSample(request_count=rc, ready=ready))
        d = decide(
            policy,
            history,
            CapacityState(
                desired=desired,
                ready=ready,
                min=lo,
                max=hi,
                warming=desired - ready,
                periods_since_action=since,
            ),
        )
        rows.append(
            {
                "timestamp": pd.Timestamp("2025-01-15", tz="UTC") + pd.Timedelta(seconds=2 * t),
                "request_count": rc,
                "ready": ready,
                "desired_before": desired,
                "desired_after": d.desired,
                "action": d.action,
                "reason": d.reason,
            }
        )
        since = 0 if d.changed else since + 1
        desired = d.desired
        ready_queue.append(desired)
    return pd.DataFrame(rows)


class TestReproduce:
    def test_replay_log_reproduces(self) -> None:
        """Feeding replay()'s own decision log back to decide() gives the same decisions on every row."""
        r = replay(TRACE, policy=POLICY, min=1, max=6)
        out = reproduce(r.decisions, POLICY, min=1, max=6)
        assert out["matches"].all()
        assert list(out["replayed_reason"]) == list(r.decisions["reason"])
        # Without the warming column it is inferred as desired_before - ready, which is what was recorded.
        assert reproduce(r.decisions.drop(columns="warming"), POLICY, min=1, max=6)["matches"].all()

    def test_fleet_style_log_reproduces(self) -> None:
        """A log recorded like the local fleet's (2 s periods, 40 rps/target spec) is reproduced exactly."""
        pol = TargetTrackingPolicy.from_spec(
            ScalingPolicySpec(target_rps_per_target=40, warmup_s=0), period_s=2
        )
        trace = [40.0] * 3 + [300.0] * 8 + [20.0] * 25
        log = _fleet_log(trace, pol, 1, 5)
        assert set(log["action"]) == {"none", "scale_out", "scale_in"}
        out = reproduce(
            log, ScalingPolicySpec(target_rps_per_target=40, warmup_s=0), period_s=2, min=1, max=5
        )
        assert out["matches"].all()

    def test_divergence_is_flagged(self) -> None:
        """A recorded decision that decide() would not take is flagged, and only that row."""
        log = _fleet_log([1500.0] * 6, POLICY, 1, 6)
        log.loc[1, "action"] = "scale_out"
        log.loc[1, "desired_after"] = 2
        out = reproduce(log, POLICY, min=1, max=6)
        assert list(out.index[~out["matches"]]) == [1]

    def test_missing_columns(self) -> None:
        """A log without the needed columns is a SpecError listing them."""
        with pytest.raises(SpecError, match="ready"):
            reproduce(pd.DataFrame({"request_count": [1.0]}), POLICY)

    def test_min_max_columns_win(self) -> None:
        """Per-row min/max columns (as a fleet may record after scale()) are used over the arguments."""
        log = _fleet_log([1500.0] * 5, POLICY, 1, 2)
        log["min"], log["max"] = 1, 2
        assert reproduce(log, POLICY, min=1, max=10)["matches"].all()
        assert not math.isnan(float(log["request_count"].sum()))
