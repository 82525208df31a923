"""Figures of a scaling run: the scaling timeline against the policy target, and the capacity curve.

Example::

    from mlops_lb import plots
    plots.scaling_timeline(fleet.metrics(), fleet.events(), target_rps_per_target=20, period_s=2)
    plots.capacity_curve(plan)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._base import (
    TimeAxis,
    _axes,
    _frame,
    _latency_y,
    _metric_period,
    _nominal,
    _time_label,
    _utc,
    _x,
)
from ._registry import FigureInput, report_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["capacity_curve", "scaling_timeline"]


def _series(metrics: pd.DataFrame, metric: str, stat: str | None = None) -> pd.DataFrame:
    m = metrics[metrics["metric"] == metric]
    if stat is not None and (m["stat"] == stat).any():
        m = m[m["stat"] == stat]
    if "target" in m.columns and (m["target"] == "").any():
        m = m[m["target"] == ""]
    return m.groupby("timestamp", as_index=False)["value"].sum().sort_values("timestamp")


def scaling_timeline(
    metrics: Any,
    events: Any = None,
    *,
    target_rps_per_target: float | None = None,
    period_s: float | None = None,
    ax: Axes | None = None,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Desired, in-service and healthy targets as steps; RequestCountPerTarget against the policy's target line;
    scale events as vertical lines labelled with their reasons.

    Without ``ax`` the figure has two panels (targets on top, RequestCountPerTarget below); with ``ax`` both go on
    it, RequestCountPerTarget on a second y axis. The target line is ``target_rps_per_target x period_s``
    requests per target per period (``period_s`` defaults to the metric's spacing).

    Example::

        scaling_timeline(fleet.metrics(), fleet.events(), target_rps_per_target=20, period_s=2)
    """
    import pandas as pd

    mf = _frame(metrics, "metrics")
    ev = (
        _frame(events, "events")
        if events is not None
        else pd.DataFrame(columns=["timestamp", "kind", "detail"])
    )
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.0, 6.0), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
    else:
        fig, top = ax.figure, ax  # type: ignore[assignment]
        bottom = ax.twinx()
    # Time zero is the first metric point: events from before it (the initial launch) get negative times.
    if t0 is None and (len(mf) or len(ev)):
        t0 = _utc(mf["timestamp"] if len(mf) else ev["timestamp"]).min()
    # Three series that often coincide: widths and dashes differ so each stays visible on top of the others.
    for metric, stat, label, color, style, width in (
        ("GroupDesiredCapacity", "Average", "desired", "tab:blue", "-", 4.0),
        ("GroupInServiceInstances", "Average", "in service", "tab:green", "--", 2.5),
        ("HealthyHostCount", "Average", "healthy", "tab:orange", "-.", 2.0),
    ):
        s = _series(mf, metric, stat)
        if len(s):
            top.step(
                _x(s["timestamp"], time, t0),
                s["value"].to_numpy(dtype=float),
                where="post",
                label=label,
                color=color,
                linestyle=style,
                linewidth=width,
                alpha=0.85,
            )
    top.set_ylabel("targets")
    top.set_ylim(bottom=0)
    top.set_title("Scaling timeline")
    top.grid(True, alpha=0.3)

    rcpt = _series(mf, "RequestCountPerTarget", "Sum")
    per = period_s or _nominal(_metric_period(mf, rcpt))
    if len(rcpt):
        bottom.plot(
            _x(rcpt["timestamp"], time, t0),
            rcpt["value"].to_numpy(dtype=float),
            color="tab:purple",
            marker="o",
            markersize=3,
            label="RequestCountPerTarget",
        )
    if target_rps_per_target is not None:
        tv = target_rps_per_target * per
        bottom.axhline(
            tv,
            color="tab:red",
            linestyle="--",
            label=f"target {tv:.4g} = {target_rps_per_target:g} rps x {per:g} s",
        )
    bottom.set_ylabel(f"requests per target per {per:g} s")
    bottom.set_ylim(bottom=0)

    scale = ev[ev["kind"].isin(["scale_out", "scale_in"])] if len(ev) else ev
    if len(scale):
        xs = _x(scale["timestamp"], time, t0)
        for xv, kind in zip(xs, scale["kind"], strict=False):
            color = "tab:green" if kind == "scale_out" else "tab:red"
            for a in (top, bottom) if ax is None else (top,):
                a.axvline(xv, color=color, alpha=0.5, linestyle=":")
            # A short horizontal tag inside the axes (the reasons are long: they are in the events table).
            top.annotate(
                kind.replace("_", " "),
                (xv, 0.02),
                xycoords=("data", "axes fraction"),
                xytext=(2, 0),
                textcoords="offset points",
                va="bottom",
                ha="left",
                fontsize="x-small",
                color=color,
                annotation_clip=True,
            )
    if ax is None:
        _time_label(bottom, time)
        bottom.set_title("RequestCountPerTarget vs the policy target")
        bottom.grid(True, alpha=0.3)
        # legends outside the axes: inside they covered the peak of RequestCountPerTarget
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        if bottom.get_lines():
            bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        _time_label(top, time)
        h1, l1 = top.get_legend_handles_labels()
        h2, l2 = bottom.get_legend_handles_labels()
        if h1 or h2:
            top.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize="small")
    return fig


def capacity_curve(
    steps_or_plan: Any,
    *,
    slo_p99_s: float | None = None,
    max_error_rate: float = 0.01,
    ax: Axes | None = None,
) -> Figure:
    """p99 latency against offered rate per target, with the SLO line, the knee and the max OK rate.

    Accepts a :class:`~mlops_lb.analysis.CapacityPlan` (its SLO and knee are used) or anything
    :func:`mlops_lb.analysis.plan_capacity` accepts together with ``slo_p99_s``.

    Example::

        capacity_curve(plan)            # or capacity_curve(result.steps(), slo_p99_s=0.1)
    """
    from ..analysis.capacity import CapacityPlan, plan_capacity

    if isinstance(steps_or_plan, CapacityPlan):
        plan = steps_or_plan
    else:
        if slo_p99_s is None:
            raise ValueError("capacity_curve needs slo_p99_s unless given a CapacityPlan")
        plan = plan_capacity(steps_or_plan, slo_p99_s=slo_p99_s, max_error_rate=max_error_rate)
    steps = plan.steps
    assert steps is not None
    fig, ax = _axes(ax)
    x = steps["rate_per_target"].to_numpy(dtype=float)
    y = steps["p99_s"].to_numpy(dtype=float) * 1000.0
    ax.plot(x, y, color="tab:blue", marker="o", label="p99 per step")
    fail = ~steps["passed"].to_numpy(dtype=bool)
    if fail.any():
        ax.plot(
            x[fail],
            y[fail],
            linestyle="none",
            marker="x",
            color="tab:red",
            markersize=10,
            label="step over SLO or error bound",
        )
    if plan.slo_p99_s is not None:  # a plan on TTFT/TPOT bounds alone has no latency line
        ax.axhline(
            plan.slo_p99_s * 1000.0,
            color="tab:red",
            linestyle="--",
            label=f"SLO p99 {plan.slo_p99_s * 1000:g} ms",
        )
    knee, max_ok = plan.knee_rate_per_target, plan.max_ok_rate_per_target
    if knee is not None and max_ok is not None and math.isclose(knee, max_ok):
        # one line, one label: two lines at the same rate would hide one under the other
        ax.axvline(knee, color="tab:orange", linestyle="-.", linewidth=2, label=f"knee = max OK {knee:g} rps")
    else:
        if knee is not None:
            ax.axvline(knee, color="tab:orange", linestyle=":", linewidth=2, label=f"knee {knee:g} rps")
        if max_ok is not None:
            ax.axvline(max_ok, color="tab:green", linestyle="-.", label=f"max OK {max_ok:g} rps")
    _latency_y(ax, "p99 latency")
    ax.set_xlabel("offered rate per target (rps)")
    ax.set_title("Capacity curve: p99 vs offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


# --------------------------------------------------------------------------- in the report
@report_figure(
    "scaling_timeline", "Targets and RequestCountPerTarget against the policy target, during this run only."
)
def _report_scaling(run: FigureInput) -> Figure | None:
    if not len(run.metrics):
        return None
    target = getattr(getattr(run.spec, "scaling", None), "target_rps_per_target", None)
    # The run's recorded metric period (60 s on AWS, spec.local.period_s locally); without one (an old bundle) the
    # metrics' own spacing, never the local clock's period for every backend.
    return scaling_timeline(
        run.metrics,
        run.events if len(run.events) else None,
        target_rps_per_target=target,
        period_s=run.metric_period_s,
        t0=run.t0,
    )


@report_figure("capacity_curve", "p99 against offered rate per step, with the SLO and the knee.")
def _report_capacity(run: FigureInput) -> Figure | None:
    if run.slo_p99_s is None or not run.is_sweep:
        return None
    return capacity_curve(run.intervals, slo_p99_s=run.slo_p99_s)
