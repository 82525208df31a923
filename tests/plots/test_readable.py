"""Issue 18: latency axes carry numbers on any range, overlapping lines stay distinct, nothing is hidden or
invented (partial last interval, one-interval runs, the nominal period, legends off the data)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mlops_lb import plots


def _intervals(p99_ms: list[float], step_s: float = 1.0) -> pd.DataFrame:
    n = len(p99_ms)
    t = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * step_s, unit="s")
    v = np.asarray(p99_ms) / 1000.0
    return pd.DataFrame(
        {
            "interval_start": t,
            "offered_rps": [40.0] * n,
            "achieved_rps": [40.0] * (n - 1) + [12.0],
            **{f"{k}_s": v * f for k, f in (("p50", 0.5), ("p90", 0.8), ("p99", 1.0), ("p999", 1.05))},
        }
    )


def _labelled_ticks(ax: Any) -> list[float]:
    FigureCanvasAgg(ax.figure).draw()
    lo, hi = ax.get_ylim()
    return [
        t.get_loc() for t in ax.yaxis.get_major_ticks() if t.label1.get_text() and lo <= t.get_loc() <= hi
    ]


def test_healthy_20_to_95_ms_reads_on_a_linear_axis_with_numbers() -> None:
    """A narrow range (under one decade) is linear in ms with several numbered ticks, not a lone '100'."""
    ax = plots.latency_over_time(_intervals([40, 60, 95, 80]), uncorrected=False).axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "latency (ms)"
    assert len(_labelled_ticks(ax)) >= 4


def test_a_wide_range_is_log_with_1_2_5_ticks() -> None:
    """Over more than a decade the axis is log with ticks at 1-2-5 steps (20, 50, 100, 200 ms …)."""
    ax = plots.latency_over_time(_intervals([8, 30, 400, 900]), uncorrected=False).axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "latency (ms, log scale)"
    ticks = set(_labelled_ticks(ax))
    assert {10.0, 20.0, 50.0, 100.0, 200.0, 500.0} <= {round(t, 6) for t in ticks}


def test_one_interval_run_draws_markers() -> None:
    """A run of one interval draws points (a line through one point is invisible)."""
    ax = plots.latency_over_time(_intervals([30]), uncorrected=False).axes[0]
    assert all(ln.get_marker() == "o" for ln in ax.get_lines())
    thr = plots.throughput(_intervals([30])).axes[0]
    assert [ln.get_marker() for ln in thr.get_lines()] == ["o", "o"]


def test_partial_last_interval_is_not_drawn_as_a_drop() -> None:
    """The last interval's rate (12 of 40 rps, a partial interval) is not on the achieved line."""
    ax = plots.throughput(_intervals([30, 30, 30])).axes[0]
    achieved = next(ln for ln in ax.get_lines() if ln.get_label() == "achieved")
    assert list(achieved.get_ydata()) == [40.0, 40.0]
    partial = next(ln for ln in ax.get_lines() if ln.get_label() == "last interval (partial)")
    assert partial.get_markerfacecolor() == "none"


def test_scaling_timeline_uses_the_nominal_period_and_keeps_legends_off_the_data() -> None:
    """2.03577 s between datapoints is labelled 'per 2 s'; the legends sit right of the axes."""
    t = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(6) * 2.03577, unit="s")
    rows = []
    for i, ts in enumerate(t):
        for metric, value in (
            ("RequestCountPerTarget", 40.0 + 10 * i),
            ("GroupDesiredCapacity", 2.0),
            ("GroupInServiceInstances", 2.0),
            ("HealthyHostCount", 2.0),
        ):
            stat = "Sum" if metric == "RequestCountPerTarget" else "Average"
            rows.append(
                {"timestamp": ts, "metric": metric, "stat": stat, "value": value, "unit": "", "target": ""}
            )
    fig = plots.scaling_timeline(pd.DataFrame(rows), None, target_rps_per_target=40)
    top, bottom = fig.axes
    assert bottom.get_ylabel() == "requests per target per 2 s"
    assert [ln.get_label() for ln in bottom.get_lines()][-1] == "target 80 = 40 rps x 2 s"
    FigureCanvasAgg(fig).draw()
    for ax in (top, bottom):
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    # desired, in service and healthy coincide here: each has its own width and dash so all three show
    styles = {(ln.get_linestyle(), ln.get_linewidth()) for ln in top.get_lines()}
    assert len(styles) == 3


def test_per_target_dots_have_head_room_and_the_legend_is_outside() -> None:
    """The highest p99 dot is below the top of its axis; the legend does not overlap the bars."""
    req = pd.DataFrame(
        {
            "target": ["a"] * 50 + ["b"] * 50,
            "latency_s": np.r_[np.full(50, 0.01), np.full(50, 0.09)],
            "error": "",
        }
    )
    fig = plots.per_target(req)
    ax, ax2 = fig.axes
    assert max(ax2.get_lines()[0].get_ydata()) < ax2.get_ylim()[1]
    FigureCanvasAgg(fig).draw()
    assert ax.get_legend().get_window_extent().x0 >= ax2.get_window_extent().x1
