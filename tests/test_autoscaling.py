"""The pure target-tracking model, pinned to hand-worked cases (AWS rules, DESIGN §4)."""

from __future__ import annotations

import pytest

from mlops_lb.autoscaling import CapacityState, PeriodSample, TargetTrackingPolicy, decide
from mlops_lb.errors import SpecError
from mlops_lb.spec import ScalingPolicySpec

# 10 rps per target on AWS's 60 s periods: TargetValue 600 requests per target per minute.
POLICY = TargetTrackingPolicy(target_value=600.0)


def state(
    desired: int, ready: int | None = None, *, lo: int = 1, hi: int = 6, warming: int = 0, since: int = 10**9
) -> CapacityState:
    return CapacityState(
        desired=desired,
        ready=desired if ready is None else ready,
        min=lo,
        max=hi,
        warming=warming,
        periods_since_action=since,
    )


class TestScaleOut:
    def test_three_periods_above_scale_out_with_ceil(self) -> None:
        """1500 req/min on one target for 3 periods: ceil(1500 / 600) = 3 targets."""
        d = decide(POLICY, [PeriodSample(1500, 1)] * 3, state(1))
        assert (d.action, d.desired) == ("scale_out", 3)
        assert d.metric == 1500 and "for 3 periods" in d.reason

    def test_two_periods_above_is_not_enough(self) -> None:
        """Only 2 of the 3 required datapoints above target: nothing happens."""
        d = decide(POLICY, [PeriodSample(100, 1), PeriodSample(1500, 1), PeriodSample(1500, 1)], state(1))
        assert (d.action, d.desired) == ("none", 1)

    def test_metric_is_per_ready_target(self) -> None:
        """2 ready targets sharing 1300 requests are at 650 > 600: ceil(1300 / 600) = 3."""
        d = decide(POLICY, [PeriodSample(1300, 2)] * 3, state(2))
        assert (d.action, d.desired) == ("scale_out", 3)

    def test_clamped_to_max(self) -> None:
        """Wanting ceil(6000 / 600) = 10 with max 6 gives 6; at max it stays and says so."""
        assert decide(POLICY, [PeriodSample(6000, 1)] * 3, state(1)).desired == 6
        d = decide(POLICY, [PeriodSample(6000, 6)] * 3, state(6))
        assert d.action == "none" and "max 6" in d.reason

    def test_warming_targets_already_cover_it(self) -> None:
        """Desired already 3 (two warming): 1500 requests on the one ready target do not ask for more."""
        d = decide(POLICY, [PeriodSample(1500, 1)] * 3, state(3, 1, warming=2))
        assert (d.action, d.desired) == ("none", 3)


class TestScaleIn:
    LOW = [PeriodSample(1000, 4)] * 15  # 250 per target < 540 (90 % of 600)

    def test_fifteen_periods_below_90_percent_scale_in(self) -> None:
        """15 datapoints below 90 % of target: ceil(1000 / 600) = 2 targets."""
        d = decide(POLICY, self.LOW, state(4))
        assert (d.action, d.desired) == ("scale_in", 2)
        assert "90% of target" in d.reason

    def test_fourteen_periods_are_not_enough(self) -> None:
        """14 low datapoints: nothing happens."""
        assert decide(POLICY, self.LOW[:14], state(4)).action == "none"

    def test_just_under_target_but_above_90_percent_stays(self) -> None:
        """560 per target is under 600 but above 540: no scale-in."""
        assert decide(POLICY, [PeriodSample(2240, 4)] * 15, state(4)).action == "none"

    def test_no_scale_in_while_warming(self) -> None:
        """A warming target blocks scale-in."""
        assert decide(POLICY, self.LOW, state(4, warming=1)).action == "none"

    def test_window_must_follow_last_action(self) -> None:
        """Datapoints older than the last scaling action do not count toward scale-in."""
        assert decide(POLICY, self.LOW, state(4, since=14)).action == "none"
        assert decide(POLICY, self.LOW, state(4, since=15)).action == "scale_in"

    def test_clamped_to_min_and_never_below_one(self) -> None:
        """No traffic asks for max(1, ceil(0 / 600)) = 1, clamped up to min 2."""
        assert decide(POLICY, [PeriodSample(0, 4)] * 15, state(4, lo=2)).desired == 2
        assert decide(POLICY, [PeriodSample(0, 4)] * 15, state(4, lo=0)).desired == 1

    def test_disabled_scale_in(self) -> None:
        """scale_in_enabled=False never scales in."""
        policy = TargetTrackingPolicy(target_value=600.0, scale_in_enabled=False)
        assert decide(policy, self.LOW, state(4)).action == "none"


class TestUnitsAndBounds:
    def test_per_second_target_becomes_per_minute(self) -> None:
        """40 rps per target is 2400 requests per target per minute on AWS, 80 per 2 s local period."""
        scaling = ScalingPolicySpec(target_rps_per_target=40)
        assert scaling.alb_target_value == 2400
        assert TargetTrackingPolicy.from_spec(scaling, period_s=60).target_value == 2400
        assert TargetTrackingPolicy.from_spec(scaling, period_s=2).target_value == 80

    def test_desired_outside_bounds_is_clamped_first(self) -> None:
        """desired below min is raised to min before any metric is looked at."""
        d = decide(POLICY, [], CapacityState(desired=0, ready=0, min=2, max=4))
        assert (d.action, d.desired) == ("scale_out", 2) and "clamped to min" in d.reason

    def test_no_history_no_action(self) -> None:
        """Without datapoints the policy waits."""
        assert decide(POLICY, [], state(2)).action == "none"

    def test_invalid_policy_names_the_field(self) -> None:
        """A non-positive target is a SpecError naming policy.target_value."""
        with pytest.raises(SpecError) as exc:
            TargetTrackingPolicy(target_value=0)
        assert exc.value.field == "policy.target_value"


def test_scale_in_reason_names_the_configured_ratio() -> None:
    """The scale-in reason states the policy's own ratio (not a hard-coded 90 %)."""
    from mlops_lb.autoscaling import CapacityState, PeriodSample, TargetTrackingPolicy, decide

    policy = TargetTrackingPolicy(target_value=100.0, scale_in_ratio=0.5)
    history = [PeriodSample(request_count=40, ready=2)] * 15
    d = decide(policy, history, CapacityState(desired=2, ready=2, min=1, max=4))
    assert d.action == "scale_in" and "(50% of target)" in d.reason
