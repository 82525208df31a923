"""Figures of a load test: latency and throughput per interval, the HDR spectrum, per-target load.

Example::

    from mlops_lb import plots
    plots.latency_over_time(result.intervals())          # p50/p90/p99/p99.9, corrected and uncorrected
    plots.throughput(result.intervals())                  # offered vs achieved, errors by kind
    plots.percentile_spectrum(result)                     # HDR plot
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ._base import (
    _COLORS,
    _ERROR_KINDS,
    _PCTS,
    TimeAxis,
    _axes,
    _frame,
    _interval_s,
    _latency_y,
    _markers,
    _spectrum_from_values,
    _spectrum_xy,
    _time_label,
    _x,
    plain,
)
from ._registry import FigureInput, report_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["latency_over_time", "per_target", "percentile_spectrum", "throughput"]


def latency_over_time(
    intervals: Any,
    *,
    ax: Axes | None = None,
    corrected: bool = True,
    uncorrected: bool = True,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Latency percentiles per interval (p50/p90/p99/p99.9) in ms: a log scale with 1-2-5 ticks when they span a
    decade or more, linear otherwise.

    Solid lines are corrected for coordinated omission (measured from the intended send time), dashed lines are
    uncorrected (from the actual send): where they part, the client fell behind its schedule.

    Example::

        latency_over_time(result.intervals(), uncorrected=False)
    """
    df = _frame(intervals, "intervals")
    fig, ax = _axes(ax)
    x = _x(df["interval_start"], time, t0)
    mk = _markers(len(df))
    for key, label in _PCTS:
        if corrected and f"{key}_s" in df.columns:
            ax.plot(x, df[f"{key}_s"].to_numpy(dtype=float) * 1000.0, color=_COLORS[key], label=label, **mk)
        if uncorrected and f"{key}_uncorrected_s" in df.columns:
            ax.plot(
                x,
                df[f"{key}_uncorrected_s"].to_numpy(dtype=float) * 1000.0,
                color=_COLORS[key],
                linestyle="--",
                alpha=0.7,
                label=f"{label} (uncorrected)",
                **mk,
            )
    _latency_y(ax)
    _time_label(ax, time)
    ax.set_title("Latency percentiles per interval")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        # outside the axes: eight lines, and a latency spike is exactly where an inside legend would sit
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


def throughput(
    intervals: Any,
    *,
    ax: Axes | None = None,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Offered vs achieved requests per second, with errors per second stacked by kind on a second axis.

    The last interval is partial (the run ends inside it), so it is a hollow point of its own, not a drop.

    Example::

        throughput(result.intervals())
    """
    df = _frame(intervals, "intervals")
    fig, ax = _axes(ax)
    x = _x(df["interval_start"], time, t0)
    mk = _markers(len(df))
    offered = df["offered_rps"].to_numpy(dtype=float)
    achieved = df["achieved_rps"].to_numpy(dtype=float)
    # The last interval ends with the run, part of the way through: its rate covers a fraction of an interval
    # and would read as a collapse. It is drawn apart, hollow, and named.
    whole = slice(None, -1) if len(df) > 1 else slice(None)
    ax.plot(x[whole], offered[whole], color="tab:gray", linestyle="--", label="offered", **mk)
    ax.plot(x[whole], achieved[whole], color="tab:blue", label="achieved", **mk)
    if len(df) > 1:
        ax.plot(
            x[-1:],
            achieved[-1:],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            color="tab:blue",
            label="last interval (partial)",
        )
    ax.set_ylabel("requests per second")
    ax.set_ylim(bottom=0)
    _time_label(ax, time)
    ax.set_title("Throughput: offered vs achieved, errors by kind")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    kinds = [k for k in _ERROR_KINDS if f"err_{k}" in df.columns and float(df[f"err_{k}"].sum()) > 0]
    if kinds:
        per_s = _interval_s(df["interval_start"])
        ax2 = ax.twinx()
        ys = [df[f"err_{k}"].to_numpy(dtype=float) / per_s for k in kinds]
        ax2.stackplot(
            x,
            *ys,
            labels=[f"errors: {k}" for k in kinds],
            alpha=0.35,
            colors=["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"][: len(kinds)],
        )
        ax2.set_ylabel("errors per second (stacked)")
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper left", fontsize="small")
    return fig


def percentile_spectrum(
    result_or_spectrum: Any,
    *,
    ax: Axes | None = None,
    label: str | None = None,
    uncorrected: bool = True,
) -> Figure:
    """The HDR percentile spectrum: latency (ms, log) against 1/(1-p), ticks 50% … 99.99%.

    Accepts a LoadResult (``percentile_spectrum()``), a spectrum DataFrame (``percentile`` in % or as a
    fraction, ``latency_s``), a requests DataFrame or a bundle (then corrected and, if ``uncorrected``, service
    time lines are computed from the raw latencies).

    Example::

        percentile_spectrum(result)
    """
    import pandas as pd

    src = result_or_spectrum
    curves: list[tuple[str, pd.DataFrame]] = []
    reqs = src.requests if isinstance(getattr(src, "requests", None), pd.DataFrame) else None
    if isinstance(src, pd.DataFrame) and {"percentile", "latency_s"} <= set(src.columns):
        curves.append((label or "corrected", src))
    elif isinstance(src, pd.DataFrame) and "latency_s" in src.columns:
        reqs = src
    elif callable(getattr(src, "percentile_spectrum", None)):
        curves.append((label or "corrected", src.percentile_spectrum()))
        if uncorrected:
            # A spectrum source without the corrected switch has only the corrected curve.
            with contextlib.suppress(TypeError):
                curves.append(("uncorrected (service time)", src.percentile_spectrum(corrected=False)))
    if reqs is not None and not curves:
        ok = (
            reqs[reqs["error"].isna() | (reqs["error"].astype(str) == "")]
            if "error" in reqs.columns
            else reqs
        )
        curves.append((label or "corrected", _spectrum_from_values(ok["latency_s"])))
        if uncorrected and "service_s" in ok.columns:
            curves.append(("uncorrected (service time)", _spectrum_from_values(ok["service_s"])))
    if not curves:
        raise TypeError(
            f"percentile_spectrum needs a LoadResult, spectrum, requests frame or bundle "
            f"(got {type(src).__name__})"
        )
    fig, ax = _axes(ax)
    for (name, spec), style in zip(curves, ("-", "--"), strict=False):
        x, keep = _spectrum_xy(spec["percentile"])
        ax.plot(x, spec["latency_s"].to_numpy(dtype=float)[keep] * 1000.0, linestyle=style, label=plain(name))
    ax.set_xscale("log")
    _latency_y(ax)
    ticks = [2.0, 10.0, 100.0, 1000.0, 10000.0]
    ax.set_xticks(ticks, ["50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xticks([], minor=True)
    ax.set_xlim(1.0, max(ticks[-1], ax.get_xlim()[1]))
    ax.set_xlabel("percentile")
    ax.set_title("Latency by percentile (HDR spectrum)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def per_target(requests: Any, *, ax: Axes | None = None) -> Figure:
    """Requests served and p99 latency per target: bars for counts, dots for p99 — hot spots stand out.

    Example::

        per_target(result.requests())
    """
    import numpy as np

    df = _frame(requests, "requests")
    fig, ax = _axes(ax)
    served = df[df["target"].notna() & (df["target"].astype(str) != "")]
    if "error" in served.columns:
        served = served[served["error"].isna() | (served["error"].astype(str) == "")]
    g = served.groupby(served["target"].astype(str))["latency_s"]
    counts = g.size()
    p99 = g.quantile(0.99) * 1000.0
    names = list(counts.index)
    xs = np.arange(len(names))
    ax.bar(xs, counts.to_numpy(dtype=float), color="tab:blue", alpha=0.7, label="requests served")
    if len(names):
        ax.axhline(float(counts.mean()), color="tab:gray", linestyle=":", label="even share")
    ax.set_xticks(xs, [plain(n) for n in names], rotation=30, ha="right")  # ids are data, not mathtext
    ax.set_xlabel("target")
    ax.set_ylabel("requests served")
    ax.set_title("Per-target load and p99 latency")
    ax2 = ax.twinx()
    p99v = p99.to_numpy(dtype=float)
    ax2.plot(xs, p99v, "o", color="tab:red", label="p99 latency", clip_on=False, zorder=5)
    ax2.set_ylabel("p99 latency (ms)")
    top = float(np.nanmax(p99v)) if p99v.size and np.isfinite(p99v).any() else 1.0
    ax2.set_ylim(bottom=0, top=top * 1.2)  # head room: the highest dot is never on the frame
    ax.set_ylim(bottom=0, top=float(counts.max()) * 1.15 if len(counts) else 1.0)
    if len(names):
        ax.set_xlim(-0.6, len(names) - 0.4)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # outside the axes, where it cannot cover a bar or a dot
    ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize="small")
    return fig


# --------------------------------------------------------------------------- in the report
@report_figure(
    "latency_over_time",
    "Latency percentiles per interval; dashed lines are uncorrected (from the actual send time).",
)
def _report_latency(run: FigureInput) -> Figure | None:
    return latency_over_time(run.intervals, t0=run.t0) if len(run.intervals) else None


@report_figure(
    "throughput",
    "Offered vs achieved requests per second; errors per second by kind. The hollow point is the last interval, "
    "which the run ended part of the way through.",
)
def _report_throughput(run: FigureInput) -> Figure | None:
    return throughput(run.intervals, t0=run.t0) if len(run.intervals) else None


@report_figure("percentile_spectrum", "HDR percentile spectrum of successful requests.")
def _report_spectrum(run: FigureInput) -> Figure | None:
    req = run.requests
    return percentile_spectrum(req) if len(req) and "latency_s" in req.columns else None


@report_figure("per_target", "Requests served and p99 latency per target.")
def _report_per_target(run: FigureInput) -> Figure | None:
    req = run.requests
    return per_target(req) if len(req) and "target" in req.columns else None
