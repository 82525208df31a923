"""The local target-tracking emulator: once per local period, feed :func:`mlops_lb.autoscaling.decide`.

Convention (one, everywhere): a local period of ``spec.local.period_s`` seconds stands for one AWS minute. The
metric is the *raw* request count of that local period over the ready targets, and the policy's target is
``target_rps_per_target x period_s`` requests per target per local period
(``TargetTrackingPolicy.from_spec(spec.scaling, period_s=spec.local.period_s)``). So a worker serving
``target_rps_per_target`` requests per second sits exactly on target, just as on AWS, where the same rate gives
``target_rps_per_target x 60`` per minute. With ``scaling.metric: concurrency_per_target`` the metric is the
period's in-flight requests (HAProxy's per-server sessions averaged over the period, summed over targets) over the
ready targets, against ``target_concurrency_per_target`` as it is (an average needs no period conversion). Every
decision (``none`` included) is recorded with the exact inputs passed to ``decide`` so the what-if replay
reproduces it (``value`` is ``request_count`` or ``concurrency``, as the policy's metric says):

    decide(policy, samples[: i + 1], CapacityState(desired=desired_before, ready=ready, min=min, max=max,
           warming=warming, periods_since_action=periods_since_action))

Example::

    a = Autoscaler(spec)
    d = a.tick(timestamp, request_count=400, ready=2, warming=0, desired=2, min=1, max=6)
    a.decisions()        # DataFrame, one row per period
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..autoscaling import CapacityState, Decision, PeriodSample, TargetTrackingPolicy, decide
from ..frames import DECISION_COLUMNS, decisions_frame

if TYPE_CHECKING:
    import pandas as pd

    from ..spec import FleetSpec

# DECISION_COLUMNS lives in mlops_lb.frames with the other data contracts; imported here for older code.
__all__ = ["DECISION_COLUMNS", "Autoscaler"]


class Autoscaler:
    """History of PeriodSamples plus the decisions made on them. Not thread-safe: one caller ticks it.

    Example::

        a = Autoscaler(spec); a.tick(now, request_count=0, ready=1, warming=0, desired=1, min=1, max=4).action
    """

    def __init__(self, spec: FleetSpec) -> None:
        self.period_s = spec.local.period_s
        self.policy = TargetTrackingPolicy.from_spec(spec.scaling, period_s=self.period_s)
        self.history: list[PeriodSample] = []
        self.records: list[dict[str, Any]] = []
        self.periods_since_action = 10**9

    def set_target(self, scaling: object) -> None:
        """Use a new ScalingPolicySpec from the next period on."""
        self.policy = TargetTrackingPolicy.from_spec(scaling, period_s=self.period_s)

    def note_manual_change(self) -> None:
        """A manual capacity change restarts the scale-in window, like a scaling activity on AWS."""
        self.periods_since_action = 0

    def tick(
        self,
        timestamp: datetime,
        *,
        request_count: float,
        concurrency: float = 0.0,
        ready: int,
        warming: int,
        desired: int,
        min: int,
        max: int,
    ) -> Decision:
        """Append this period's datapoint (the request count or the concurrency, as the policy tracks) and decide."""
        value = concurrency if self.policy.metric_name == "ConcurrencyPerTarget" else request_count
        self.history.append(PeriodSample(request_count=value, ready=ready))
        if self.periods_since_action < 10**9:
            self.periods_since_action += 1
        state = CapacityState(
            desired=desired,
            ready=ready,
            min=min,
            max=max,
            warming=warming,
            periods_since_action=self.periods_since_action,
        )
        decision = decide(self.policy, self.history, state)
        self.records.append(
            {
                "timestamp": timestamp,
                "request_count": float(request_count),
                "concurrency": float(concurrency),
                "ready": ready,
                "warming": warming,
                "min": min,
                "max": max,
                "periods_since_action": state.periods_since_action,
                "target_value": self.policy.target_value,
                "metric": decision.metric,
                "desired_before": desired,
                "desired_after": decision.desired,
                "action": decision.action,
                "reason": decision.reason,
            }
        )
        if decision.changed:
            self.periods_since_action = 0
        return decision

    def decisions(self) -> pd.DataFrame:
        """One row per period: the inputs given to ``decide`` and what it answered."""
        return decisions_frame(self.records)
