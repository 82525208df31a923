"""Target tracking as a pure function: (policy, history, capacity) -> Decision.

This is AWS's rule set, written down once and used by the local fleet's autoscaler, the what-if replay and the
capacity planner, so what a data scientist sees locally is what AWS would do:

* The metric is the group's total per *ready* target per period: ``RequestCount / ready`` (ALBRequestCountPerTarget)
  or, with ``metric_name="ConcurrencyPerTarget"``, the in-flight requests of the period (averaged over it and summed
  over targets) ``/ ready``. Warming targets (launched less than ``warmup`` ago) are left out of ``ready``, as AWS
  leaves instances in warm-up out of the aggregated metric.
* **Scale out** when the last ``scale_out_periods`` (3) datapoints are all above the target value.
* **Scale in** when the last ``scale_in_periods`` (15) datapoints are all below ``scale_in_ratio`` (90 %) of the
  target, none of them older than the last scaling action, no target is warming, and scale-in is enabled.
* New capacity is ``ceil(RequestCount / target)``, i.e. ``ceil(ready * metric / target)``, clamped to
  ``[min, max]``; a scale-out never lowers and a scale-in never raises the desired capacity.
* A missing datapoint (no request flowed) counts as 0 requests.

On AWS one period is 60 s and ``TargetValue`` is per minute; locally a period lasts ``LocalSpec.period_s`` and the
same counts apply, so the per-second target in the spec is multiplied by the period once, here.

Example::

    from mlops_lb.autoscaling import TargetTrackingPolicy, CapacityState, PeriodSample, decide
    policy = TargetTrackingPolicy(target_value=600.0)            # 10 rps/target with 60 s periods
    history = [PeriodSample(request_count=1500, ready=1)] * 3       # 25 rps on one target, 3 periods
    decide(policy, history, CapacityState(desired=1, ready=1, min=1, max=6))
    # Decision(action='scale_out', desired=3, ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._validate import check_bool, check_int, check_num

__all__ = ["CapacityState", "Decision", "PeriodSample", "TargetTrackingPolicy", "decide"]


@dataclass(frozen=True, kw_only=True)
class TargetTrackingPolicy:
    """Target tracking in *per-period* units.

    Build it from a spec with :meth:`from_spec`; ``period_s=60`` gives AWS's per-minute ``TargetValue``.

    Example::

        TargetTrackingPolicy.from_spec(spec.scaling, period_s=60).target_value   # rps x 60
    """

    target_value: float
    scale_out_periods: int = 3
    scale_in_periods: int = 15
    scale_in_ratio: float = 0.9
    warmup_periods: float = 5.0
    scale_in_enabled: bool = True
    metric_name: str = "RequestCountPerTarget"

    def __post_init__(self) -> None:
        check_num("policy.target_value", self.target_value, 0, None, lo_open=True)
        check_int("policy.scale_out_periods", self.scale_out_periods, 1)
        check_int("policy.scale_in_periods", self.scale_in_periods, 1)
        check_num("policy.scale_in_ratio", self.scale_in_ratio, 0, 1, lo_open=True)
        check_num("policy.warmup_periods", self.warmup_periods, 0)
        check_bool("policy.scale_in_enabled", self.scale_in_enabled)

    @classmethod
    def from_spec(cls, scaling: object, *, period_s: float = 60.0) -> TargetTrackingPolicy:
        """From a ``ScalingPolicySpec``: target = rps per target x period (a count per period), or the target
        concurrency as it is (an average, the same for any period length); warm-up in AWS minutes (periods)."""
        if getattr(scaling, "metric", "request_count_per_target") == "concurrency_per_target":
            target, name = float(scaling.target_concurrency_per_target), "ConcurrencyPerTarget"  # type: ignore[attr-defined]
        else:
            target, name = scaling.target_rps_per_target * period_s, "RequestCountPerTarget"  # type: ignore[attr-defined]
        return cls(
            target_value=target,
            warmup_periods=scaling.warmup_s / 60.0,  # type: ignore[attr-defined]
            scale_in_enabled=scaling.scale_in_enabled,  # type: ignore[attr-defined]
            metric_name=name,
        )

    @property
    def scale_in_threshold(self) -> float:
        """Metric value below which a datapoint counts toward scale-in."""
        return self.target_value * self.scale_in_ratio


@dataclass(frozen=True)
class PeriodSample:
    """One period's datapoint: the group total of the tracked metric (requests the balancer routed, or in-flight
    requests for ConcurrencyPerTarget) and the ready (healthy, warmed-up) targets."""

    request_count: float
    ready: int

    @property
    def per_target(self) -> float:
        """RequestCountPerTarget over ready targets (all requests when none is ready)."""
        return self.request_count / max(self.ready, 1)


@dataclass(frozen=True, kw_only=True)
class CapacityState:
    """The group as the policy sees it. ``periods_since_action`` bounds the scale-in window."""

    desired: int
    ready: int
    min: int
    max: int
    warming: int = 0
    periods_since_action: int = 10**9


@dataclass(frozen=True)
class Decision:
    """What the policy wants: ``action`` is ``scale_out``, ``scale_in`` or ``none``; ``reason`` says why."""

    action: Literal["scale_out", "scale_in", "none"]
    desired: int
    reason: str
    metric: float | None = None

    @property
    def changed(self) -> bool:
        return self.action != "none"


def _total(v: float) -> str:
    """A group total as the reason shows it: whole requests as integers, averaged concurrency with one decimal."""
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def _clamp(n: int, state: CapacityState) -> int:
    return max(state.min, min(state.max, n))


def decide(policy: TargetTrackingPolicy, history: Sequence[PeriodSample], state: CapacityState) -> Decision:
    """Apply target tracking to the newest datapoints in ``history`` (oldest first).

    Returns a Decision; ``desired`` equals ``state.desired`` (clamped to min/max) when nothing changes.
    """
    current = _clamp(state.desired, state)
    if current != state.desired:
        side = "min" if state.desired < state.min else "max"
        return Decision(
            "scale_out" if current > state.desired else "scale_in",
            current,
            f"desired {state.desired} outside [{state.min}, {state.max}]: clamped to {side}",
        )
    if not history:
        return Decision("none", current, "no datapoints yet")
    last = history[-1]
    metric = last.per_target
    target = policy.target_value

    n_out = policy.scale_out_periods
    if len(history) >= n_out and all(s.per_target > target for s in history[-n_out:]):
        wanted = _clamp(math.ceil(last.request_count / target), state)
        if wanted > current:
            return Decision(
                "scale_out",
                wanted,
                f"{policy.metric_name} {metric:.1f} > target {target:.1f} for {n_out} periods: "
                f"ceil({_total(last.request_count)} / {target:.1f}) = {math.ceil(last.request_count / target)} targets",
                metric,
            )
        if current >= state.max and math.ceil(last.request_count / target) > state.max:
            return Decision("none", current, f"above target but already at max {state.max}", metric)
        return Decision(
            "none", current, f"above target; {state.warming} warming target(s) already cover it", metric
        )

    n_in = policy.scale_in_periods
    threshold = policy.scale_in_threshold
    window = history[-n_in:]
    if (
        policy.scale_in_enabled
        and len(history) >= n_in
        and state.periods_since_action >= n_in
        and state.warming == 0
        and all(s.per_target < threshold for s in window)
    ):
        wanted = _clamp(max(1, math.ceil(last.request_count / target)), state)
        if wanted < current:
            return Decision(
                "scale_in",
                wanted,
                f"{policy.metric_name} {metric:.1f} < {threshold:.1f} ({policy.scale_in_ratio:.0%} of target) for {n_in} periods: "
                f"ceil({_total(last.request_count)} / {target:.1f}) -> {wanted} targets",
                metric,
            )
    return Decision("none", current, "within target", metric)
