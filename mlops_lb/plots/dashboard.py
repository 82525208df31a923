"""Everything at once: a multi-panel figure of a run.

Example::

    from mlops_lb import plots
    plots.dashboard(RunBundle.load("runs/2025-01-01T00-00-00-demo"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import TimeAxis, _utc, plain
from .load import latency_over_time, per_target, percentile_spectrum, throughput
from .scaling import capacity_curve, scaling_timeline

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["dashboard"]


def dashboard(bundle: Any, *, time: TimeAxis = "relative", slo_p99_s: float | None = None) -> Figure:
    """A multi-panel figure of a run: latency, throughput, spectrum, per-target load, scaling timeline, and the
    capacity curve when the run was a sweep and ``slo_p99_s`` is given.

    ``bundle`` is a RunBundle (or anything with ``intervals``, ``requests``, ``metrics``, ``events`` frames and
    optionally ``spec``).

    Example::

        dashboard(RunBundle.load("runs/2025-01-01T00-00-00-demo"))
    """
    import pandas as pd
    from matplotlib.figure import Figure

    intervals: Any = getattr(bundle, "intervals", None)
    requests: Any = getattr(bundle, "requests", None)
    metrics: Any = getattr(bundle, "metrics", None)
    events: Any = getattr(bundle, "events", None)
    spec = getattr(bundle, "spec", None)
    has = {
        n: isinstance(v, pd.DataFrame) and len(v) > 0
        for n, v in (
            ("intervals", intervals),
            ("requests", requests),
            ("metrics", metrics),
            ("events", events),
        )
    }
    t0 = _utc(intervals["interval_start"]).min() if has["intervals"] else None
    fig = Figure(figsize=(14.0, 13.0), layout="constrained")
    grid = fig.subplots(3, 2)
    (a_lat, a_thr), (a_spec, a_tgt), (a_scale, a_note) = grid
    if has["intervals"]:
        latency_over_time(intervals, ax=a_lat, time=time, t0=t0)
        throughput(intervals, ax=a_thr, time=time, t0=t0)
    if has["requests"]:
        percentile_spectrum(requests, ax=a_spec)
        per_target(requests, ax=a_tgt)
    if has["metrics"]:
        scaling = getattr(spec, "scaling", None)
        # No period_s from spec.local: an AWS run's datapoints cover 60 s whatever the local clock says, and a
        # local frame may group several periods per datapoint; the metrics' own spacing is right for both.
        scaling_timeline(
            metrics,
            events if has["events"] else None,
            ax=a_scale,
            time=time,
            t0=t0,
            target_rps_per_target=getattr(scaling, "target_rps_per_target", None),
        )
    is_sweep = has["intervals"] and "step_rps" in intervals.columns and intervals["step_rps"].notna().any()
    if is_sweep and slo_p99_s is not None:
        capacity_curve(intervals, slo_p99_s=slo_p99_s, ax=a_note)
    for a, key in (
        (a_lat, "intervals"),
        (a_thr, "intervals"),
        (a_spec, "requests"),
        (a_tgt, "requests"),
        (a_scale, "metrics"),
    ):
        if not has[key]:
            a.set_axis_off()
            a.text(0.5, 0.5, f"no {key} in this run", ha="center", va="center", transform=a.transAxes)
    if not a_note.has_data():
        a_note.set_axis_off()
    name = getattr(spec, "name", None) or getattr(getattr(bundle, "path", None), "name", "run")
    fig.suptitle(plain(f"mlops_lb run: {name}"))  # a run name is data, not mathtext
    return fig
