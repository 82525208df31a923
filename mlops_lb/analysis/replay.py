"""What-if replay: a recorded trace through the pure target-tracking model under another policy.

The trace is in the policy's own metric: per-period RequestCount for ``request_count_per_target``, or the
period's in-flight requests summed over targets (``ConcurrencyPerTarget`` per target, summed) for
``concurrency_per_target``. Like the request count, that total is taken as what the clients offer whatever the
group's size (Little's law: in-flight = rate x latency, with latency unchanged while the group keeps up).

No AWS and no processes: each period's request count goes to :func:`mlops_lb.autoscaling.decide` (the one
implementation of AWS's rules) together with the simulated group's state, and the group follows the decisions:

* an instance launched in period ``t`` starts serving at ``t + launch_periods`` (boot + first passing check) and
  counts as *ready* (in the metric) after the policy's warm-up on top of that; until then it is *warming*;
* the initial ``initial`` instances are ready from the first period;
* a scale-in terminates the newest instances first (pending ones before serving ones);
* requests are spread evenly over the serving instances, so ``per_target = RequestCount / serving``.

:func:`reproduce` feeds a recorded decision log (the local fleet's ``fleet.decisions()``) back to ``decide`` and
compares, so a test can show the replay and the fleet use the same rules.

Example::

    from mlops_lb.analysis import replay
    r = replay([600] * 5 + [3000] * 20 + [300] * 30, policy=spec.scaling, min=1, max=6)
    r.capacity          # DataFrame per period: request_count, desired, serving, ready, per_target, action, ...
    r.instance_hours, r.cost_usd, r.time_above_target_s
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..autoscaling import CapacityState, PeriodSample, TargetTrackingPolicy, decide
from ..errors import SpecError
from .pricing import hourly_price

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ReplayResult",
    "as_policy",
    "concurrency_from_metrics",
    "replay",
    "reproduce",
    "request_counts_from_metrics",
]

CONCURRENCY = "ConcurrencyPerTarget"

DECISION_COLUMNS = (
    "timestamp",
    "request_count",
    "ready",
    "desired_before",
    "desired_after",
    "action",
    "reason",
)


def as_policy(policy: Any, period_s: float = 60.0) -> TargetTrackingPolicy:
    """A TargetTrackingPolicy from itself or a ScalingPolicySpec (per-second target x ``period_s``).

    Example::

        as_policy(ScalingPolicySpec(target_rps_per_target=20)).target_value   # 1200.0
    """
    if isinstance(policy, TargetTrackingPolicy):
        return policy
    if hasattr(policy, "target_rps_per_target"):
        return TargetTrackingPolicy.from_spec(policy, period_s=period_s)
    raise SpecError(
        "policy", f"must be a ScalingPolicySpec or TargetTrackingPolicy (got {type(policy).__name__})"
    )


def concurrency_from_metrics(metrics: pd.DataFrame) -> pd.Series:
    """In-flight requests per period summed over targets, from a MetricFrame's ``ConcurrencyPerTarget`` rows.

    The per-target rows are summed; without them (a group-level series only) the group average is multiplied by
    ``GroupInServiceInstances``.

    Example::

        concurrency_from_metrics(fleet.metrics())
    """
    m = metrics[(metrics["metric"] == CONCURRENCY) & (metrics["stat"] == "Average")]
    per_target = m[m["target"] != ""]
    if len(per_target):
        s = per_target.groupby("timestamp")["value"].sum().sort_index()
    else:
        group = m.groupby("timestamp")["value"].mean()
        n = metrics[(metrics["metric"] == "GroupInServiceInstances") & (metrics["stat"] == "Average")]
        s = (group * n.groupby("timestamp")["value"].mean().reindex(group.index).fillna(1.0)).sort_index()
    s.name = "concurrency"
    return s


def request_counts_from_metrics(metrics: pd.DataFrame) -> pd.Series:
    """The group-level ``RequestCount`` ``Sum`` series of a MetricFrame, indexed by timestamp.

    Example::

        request_counts_from_metrics(fleet.metrics())
    """
    m = metrics[(metrics["metric"] == "RequestCount") & (metrics["stat"] == "Sum")]
    if "target" in m.columns and (m["target"] != "").any() and (m["target"] == "").any():
        m = m[m["target"] == ""]
    s = m.groupby("timestamp")["value"].sum().sort_index()
    s.name = "request_count"
    return s


@dataclass(frozen=True)
class ReplayResult:
    """Predicted behaviour of a policy on a trace.

    ``capacity`` has one row per period: period, timestamp (if the trace had one), request_count, desired,
    pending, warming, serving, ready, metric (per ready target, what ``decide`` saw), per_target (per serving
    target), above_target, action, reason. ``decisions`` has the ``fleet.decisions()`` columns (+ ``warming``).

    Example::

        r = replay(trace, policy=policy)
        r.scale_events                 # only the periods where capacity changed
    """

    policy: TargetTrackingPolicy
    period_s: float
    capacity: pd.DataFrame = field(repr=False)
    decisions: pd.DataFrame = field(repr=False)
    instance_hours: float
    cost_usd: float
    usd_per_hour_instance: float
    time_above_target_s: float
    instance_type: str
    region: str

    @property
    def scale_events(self) -> pd.DataFrame:
        """Rows of ``capacity`` where the policy changed the desired capacity."""
        return self.capacity[self.capacity["action"] != "none"].reset_index(drop=True)

    @property
    def fraction_above_target(self) -> float:
        """Share of periods in which requests per serving instance exceeded the target."""
        n = len(self.capacity)
        return float(self.capacity["above_target"].mean()) if n else 0.0

    def _lines(self) -> list[tuple[str, str]]:
        c = self.capacity
        return [
            ("periods", f"{len(c)} x {self.period_s:g} s"),
            (
                "target",
                f"{self.policy.target_value:g} in-flight requests per target"
                if self.policy.metric_name == CONCURRENCY
                else f"{self.policy.target_value:g} requests per target per period",
            ),
            (
                "capacity",
                f"min {int(c['desired'].min()) if len(c) else 0}, max {int(c['desired'].max()) if len(c) else 0}",
            ),
            (
                "scale events",
                f"{int((c['action'] == 'scale_out').sum())} out, {int((c['action'] == 'scale_in').sum())} in",
            ),
            (
                "time above target",
                f"{self.time_above_target_s:g} s ({self.fraction_above_target:.1%} of periods)",
            ),
            ("instance-hours", f"{self.instance_hours:.3f}"),
            (
                "cost",
                f"{self.cost_usd:.4f} USD ({self.instance_type} at {self.usd_per_hour_instance:g} USD/h, {self.region})",
            ),
        ]

    def __repr__(self) -> str:
        return "ReplayResult(" + ", ".join(f"{k}: {v}" for k, v in self._lines()) + ")"

    def _repr_html_(self) -> str:
        from ..summary import captioned_table

        return captioned_table("What-if replay", self._lines())


def _value_column(pol: TargetTrackingPolicy) -> str:
    return "concurrency" if pol.metric_name == CONCURRENCY else "request_count"


def _trace(request_counts: Any, column: str = "request_count") -> tuple[list[float], list[Any] | None]:
    import pandas as pd

    if isinstance(request_counts, pd.DataFrame):
        if {"metric", "stat", "value"} <= set(request_counts.columns):
            reader = concurrency_from_metrics if column == "concurrency" else request_counts_from_metrics
            request_counts = reader(request_counts)
        elif column in request_counts.columns:
            ts = list(request_counts["timestamp"]) if "timestamp" in request_counts.columns else None
            return [float(v) for v in request_counts[column].fillna(0.0)], ts
        else:
            raise SpecError(
                "request_counts",
                f"DataFrame needs MetricFrame columns or {column} (got {list(request_counts.columns)})",
            )
    if isinstance(request_counts, pd.Series):
        ts = list(request_counts.index) if isinstance(request_counts.index, pd.DatetimeIndex) else None
        # A missing CloudWatch count datapoint means no request flowed.
        return [float(v) for v in request_counts.fillna(0.0)], ts
    if isinstance(request_counts, Sequence) or hasattr(request_counts, "__iter__"):
        values = [float(v) for v in request_counts]
        if any(v < 0 or not math.isfinite(v) for v in values):
            raise SpecError("request_counts", "must be finite counts >= 0")
        return values, None
    raise SpecError(
        "request_counts", f"must be a list, Series, or MetricFrame (got {type(request_counts).__name__})"
    )


def _recorded_period(source: Any, period_s: float | None, table: str) -> tuple[Any, float]:
    """(the table to replay, its period): a run bundle gives its window's ``table`` and the metric period its
    session recorded (60 s on AWS, the local clock's period locally); anything else keeps ``period_s`` or
    CloudWatch's 60 s. Never the local clock's period for every backend."""
    facts = getattr(source, "facts", None)
    if facts is not None and callable(getattr(source, "in_window", None)):
        recorded = getattr(facts, "metric_period_s", None)
        source = getattr(source.in_window(), table)
        if period_s is None and recorded:
            period_s = float(recorded)
    return source, 60.0 if period_s is None else period_s


def replay(
    request_counts: Any,
    *,
    policy: Any,
    period_s: float | None = None,
    min: int = 1,
    max: int = 10,
    initial: int = 1,
    launch_periods: int = 2,
    instance_type: str = "t3.small",
    region: str = "us-east-1",
) -> ReplayResult:
    """Simulate the group under ``policy`` on a per-period trace of its metric (rules in the module docstring).

    ``request_counts`` holds request counts, or in-flight totals when the policy tracks concurrency (then the
    frames' ``request_count`` columns are called ``concurrency``); a MetricFrame gives either, and a run bundle
    gives its window's metrics. ``period_s`` defaults to the bundle's recorded metric period, else 60 s.

    Example::

        replay([1500] * 10, policy=TargetTrackingPolicy(target_value=600), min=1, max=6).capacity["desired"]
        replay(fleet.metrics(), policy=ScalingPolicySpec(metric="concurrency_per_target",
                                                          target_concurrency_per_target=4), period_s=2)
    """
    import pandas as pd

    request_counts, period_s = _recorded_period(request_counts, period_s, "metrics")
    lo, hi = min, max  # the signature mirrors the ASG's names; keep the builtins reachable
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi and hi >= 1):
        raise SpecError("min", f"must satisfy 0 <= min <= max, max >= 1 (got min={lo!r}, max={hi!r})")
    if not (isinstance(initial, int) and lo <= initial <= hi):
        raise SpecError("initial", f"must be between min and max (got {initial!r}, min={lo}, max={hi})")
    if not (isinstance(launch_periods, int) and launch_periods >= 0):
        raise SpecError("launch_periods", f"must be an integer >= 0 (got {launch_periods!r})")
    if not period_s > 0:
        raise SpecError("period_s", f"must be > 0 (got {period_s!r})")
    pol = as_policy(policy, period_s)
    column = _value_column(pol)
    counts, stamps = _trace(request_counts, column)
    price = hourly_price(instance_type, region)

    # Each instance is the period it was launched in; initial ones are ready at once.
    ready_after = launch_periods + pol.warmup_periods
    launched: list[float] = [-math.inf] * initial
    history: list[PeriodSample] = []
    since_action = 10**9
    rows: list[dict[str, Any]] = []
    dec_rows: list[dict[str, Any]] = []
    instance_periods = 0
    above_periods = 0
    for t, rc in enumerate(counts):
        pending = sum(1 for L in launched if t < L + launch_periods)
        ready = sum(1 for L in launched if t >= L + ready_after)
        serving = len(launched) - pending
        warming = serving - ready
        desired_before = len(launched)
        instance_periods += len(launched)
        history.append(PeriodSample(request_count=rc, ready=ready))
        state = CapacityState(
            desired=desired_before,
            ready=ready,
            min=lo,
            max=hi,
            warming=warming + pending,
            periods_since_action=since_action,
        )
        d = decide(pol, history, state)
        per_target = rc / serving if serving else math.inf if rc else 0.0
        above = per_target > pol.target_value
        above_periods += int(above)
        if d.desired > desired_before:
            launched.extend([float(t)] * (d.desired - desired_before))
        elif d.desired < desired_before:
            # Newest first: pending instances go before serving ones.
            launched = sorted(launched)[: d.desired]
        since_action = 0 if d.action != "none" else since_action + 1
        ts = stamps[t] if stamps is not None else None
        rows.append(
            {
                "period": t,
                "timestamp": ts,
                column: rc,
                "desired": d.desired,
                "desired_before": desired_before,
                "pending": pending,
                "warming": warming,
                "serving": serving,
                "ready": ready,
                "metric": history[-1].per_target,
                "per_target": per_target,
                "above_target": above,
                "action": d.action,
                "reason": d.reason,
            }
        )
        dec_rows.append(
            {
                "timestamp": ts
                if ts is not None
                else pd.Timestamp(0, tz="UTC") + pd.Timedelta(seconds=t * period_s),
                column: rc,
                "ready": ready,
                "desired_before": desired_before,
                "desired_after": d.desired,
                "action": d.action,
                "reason": d.reason,
                "warming": warming + pending,
            }
        )
    capacity = pd.DataFrame(
        rows,
        columns=list(rows[0]) if rows else ["period", column, "desired", "action", "above_target"],
    )
    dec_columns = [column if c == "request_count" else c for c in DECISION_COLUMNS]
    decisions = pd.DataFrame(dec_rows, columns=[*dec_columns, "warming"])
    hours = instance_periods * period_s / 3600.0
    return ReplayResult(
        policy=pol,
        period_s=float(period_s),
        capacity=capacity,
        decisions=decisions,
        instance_hours=hours,
        cost_usd=hours * price,
        usd_per_hour_instance=price,
        time_above_target_s=above_periods * float(period_s),
        instance_type=instance_type,
        region=region,
    )


def reproduce(
    decisions_df: pd.DataFrame,
    policy: Any,
    *,
    period_s: float | None = None,
    min: int | None = None,
    max: int | None = None,
) -> pd.DataFrame:
    """Feed a recorded decision log back to ``decide`` and return what it decides, row by row.

    ``decisions_df`` has the ``fleet.decisions()`` columns (timestamp, request_count, ready, desired_before,
    desired_after, action, reason); optional ``warming``, ``min``, ``max`` and ``periods_since_action`` columns
    (the local fleet records them) are used when present, otherwise warming is ``desired_before - ready``, min/max
    come from the arguments (default: the smallest and largest capacity in the log) and periods since the last
    action are counted from the recorded actions. The result adds
    ``replayed_desired``, ``replayed_action``, ``replayed_reason`` and ``matches``.

    Example::

        out = reproduce(RunBundle.load(run_dir), spec.scaling, min=1, max=6)   # the run's own metric period
        out["matches"].all()

    ``decisions_df`` may be a run bundle: its window's decisions, at the metric period its session recorded;
    ``period_s`` otherwise defaults to 60 s (CloudWatch's).
    """
    import pandas as pd

    decisions_df, period_s = _recorded_period(decisions_df, period_s, "decisions")

    pol = as_policy(policy, period_s)
    column = _value_column(pol)  # a concurrency policy replays the log's concurrency column
    missing = [c for c in (column, "ready", "desired_before", "action") if c not in decisions_df.columns]
    if missing:
        raise SpecError("decisions_df", f"is missing columns {missing} (has {list(decisions_df.columns)})")
    df = decisions_df.reset_index(drop=True)
    caps = pd.concat([df["desired_before"], df.get("desired_after", df["desired_before"])])
    lo_default = int(caps.min()) if len(caps) else 0
    hi_default = int(caps.max()) if len(caps) else 1
    history: list[PeriodSample] = []
    since_action = 10**9
    out_desired: list[int] = []
    out_action: list[str] = []
    out_reason: list[str] = []
    for _, row in df.iterrows():
        ready = int(row["ready"])
        desired_before = int(row["desired_before"])
        warming = int(row["warming"]) if "warming" in df.columns else desired_before - ready
        row_min = int(row["min"]) if "min" in df.columns else (min if min is not None else lo_default)
        row_max = int(row["max"]) if "max" in df.columns else (max if max is not None else hi_default)
        if "periods_since_action" in df.columns:
            since_action = int(row["periods_since_action"])
        history.append(PeriodSample(request_count=float(row[column]), ready=ready))
        d = decide(
            pol,
            history,
            CapacityState(
                desired=desired_before,
                ready=ready,
                min=row_min,
                max=row_max,
                warming=builtins.max(warming, 0),
                periods_since_action=since_action,
            ),
        )
        out_desired.append(d.desired)
        out_action.append(d.action)
        out_reason.append(d.reason)
        # The log's own action decides the window, so one divergence does not cascade.
        since_action = 0 if str(row["action"]) != "none" else since_action + 1
    out = df.copy()
    out["replayed_desired"] = out_desired
    out["replayed_action"] = out_action
    out["replayed_reason"] = out_reason
    ref = out["desired_after"] if "desired_after" in out.columns else out["desired_before"]
    out["matches"] = (out["replayed_action"] == out["action"].astype(str)) & (out["replayed_desired"] == ref)
    return out
