"""Matplotlib figures of a load test and a scaling run; each function returns a Figure and accepts ``ax``.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never through pyplot state,
so they render the same in a notebook, a headless test and the HTML report. Time axes are seconds since the start
of the run by default (``time="utc"`` for wall-clock UTC); latencies are shown in milliseconds.

Why one module of about 1,000 lines: every figure shares the same reading rules (latency axes that always carry numbers,
the partial last interval, the nominal period, legends off the data), and keeping them next to each other is what
keeps the figures consistent; each public function is self-contained below its helpers.

Example::

    from mlops_lb import plots
    plots.latency_over_time(result.intervals())          # p50/p90/p99/p99.9, corrected and uncorrected
    plots.throughput(result.intervals())                  # offered vs achieved, errors by kind
    plots.percentile_spectrum(result)                     # HDR plot
    plots.scaling_timeline(fleet.metrics(), fleet.events(), target_rps_per_target=20, period_s=2)
    plots.dashboard(bundle)                               # everything on one figure
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "capacity_curve",
    "dashboard",
    "goodput_curve",
    "goodput_steps",
    "itl_over_time",
    "itl_spectrum",
    "latency_over_time",
    "per_target",
    "percentile_spectrum",
    "scaling_timeline",
    "throughput",
    "tokens_per_s",
    "ttft_over_time",
    "ttft_spectrum",
]

TimeAxis = Literal["relative", "utc"]

_PCTS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
_COLORS = {"p50": "tab:blue", "p90": "tab:green", "p99": "tab:orange", "p999": "tab:red"}
_ERROR_KINDS = ("timeout", "connect", "reset", "http_4xx", "http_5xx", "other")


# --------------------------------------------------------------------------- helpers
_FORMATTER_REGISTERED = False


def _show_figures_in_notebooks() -> None:
    """Let a bare Figure (no pyplot) display as a PNG when it is a notebook cell's last value.

    Figures built without pyplot have no inline display unless ``%matplotlib inline`` ran first; registering a
    PNG formatter for the Figure type makes ``plots.latency_over_time(r)`` show a picture in any kernel.
    """
    global _FORMATTER_REGISTERED
    if _FORMATTER_REGISTERED:
        return
    _FORMATTER_REGISTERED = True
    import sys

    ipython_mod = sys.modules.get("IPython")
    ip = ipython_mod.get_ipython() if ipython_mod is not None else None  # type: ignore[attr-defined]
    if ip is None:
        return
    from matplotlib.figure import Figure

    png = ip.display_formatter.formatters["image/png"]
    if not _has_type(png, Figure):  # %matplotlib inline registers its own; keep it
        png.for_type(Figure, _png_bytes)


def _has_type(formatter: Any, cls: type) -> bool:
    try:
        formatter.lookup_by_type(cls)
    except KeyError:
        return False
    return True


def _png_bytes(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _axes(ax: Axes | None, figsize: tuple[float, float] = (9.0, 4.0)) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    _show_figures_in_notebooks()
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _frame(obj: Any, name: str) -> pd.DataFrame:
    """A DataFrame itself, or ``obj.<name>`` (attribute of a bundle, or method of a LoadResult)."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    val = getattr(obj, name, None)
    if callable(val):
        val = val()
    if isinstance(val, pd.DataFrame):
        return val
    raise TypeError(f"expected a DataFrame or an object with .{name} (got {type(obj).__name__})")


def _utc(s: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(s, utc=True)


def _x(ts: pd.Series, time: TimeAxis, t0: Any) -> Any:
    """x values for timestamps: seconds since ``t0`` (default: the first timestamp) or naive UTC datetimes."""
    import pandas as pd

    ts = _utc(ts)
    if time == "utc":
        return ts.dt.tz_localize(None).to_numpy()
    if time != "relative":
        raise ValueError(f"time must be 'relative' or 'utc' (got {time!r})")
    start = ts.min() if t0 is None else pd.Timestamp(t0)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return (ts - start).dt.total_seconds().to_numpy()


def _latency_y(ax: Axes, what: str = "latency") -> None:
    """A latency axis in ms that always has numbers: linear when the data spans less than a decade, else log
    with ticks at 1-2-5 steps (10, 20, 50, 100 ms); the label says which."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    pos = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys]) if ys else np.zeros(0)
    if not pos.size:
        # Nothing positive to draw (every request failed): a log axis would raise at draw time.
        ax.text(0.5, 0.5, "no successful requests", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylabel(f"{what} (ms)")
        return
    lo, hi = float(pos.min()), float(pos.max())
    if hi / lo < 10.0:
        # A narrow range: on a log axis it would sit between two decade ticks with no number in sight.
        ax.set_ylim(bottom=0, top=hi * 1.1)
        ax.set_ylabel(f"{what} (ms)")
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=tuple(float(k) for k in range(1, 10))))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"{what} (ms, log scale)")


def _nominal(period_s: float) -> float:
    """The period a measured spacing stands for: 2.03577 s of real spacing is the nominal 2 s period."""
    if period_s <= 0 or not math.isfinite(period_s):
        return period_s
    nearest = round(period_s)
    if nearest >= 1 and abs(period_s - nearest) <= 0.05 * nearest:
        return float(nearest)
    return float(f"{period_s:.2g}")


def _markers(n: int) -> dict[str, Any]:
    """Markers for short series: a run of one interval is a single point, which a bare line does not draw."""
    return {"marker": "o", "markersize": 3} if n <= 60 else {}


def _time_label(ax: Axes, time: TimeAxis) -> None:
    ax.set_xlabel("time (UTC)" if time == "utc" else "time since start (s)")


def _metric_period(mf: pd.DataFrame, rcpt: pd.DataFrame) -> float:
    """Seconds one datapoint covers: RequestCountPerTarget's spacing, else the whole frame's, else CloudWatch's 60."""
    if len(rcpt) > 1:
        return _interval_s(rcpt["timestamp"])
    stamps = mf["timestamp"].drop_duplicates()
    return _interval_s(stamps) if len(stamps) > 1 else 60.0


def _interval_s(ts: pd.Series) -> float:
    d = _utc(ts).sort_values().diff().dt.total_seconds().dropna()
    d = d[d > 0]
    return float(d.median()) if len(d) else 1.0


# --------------------------------------------------------------------------- load test plots
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


def _spectrum_xy(p: Any) -> tuple[Any, Any]:
    import numpy as np

    p = np.asarray(p, dtype=float)
    if p.size == 0:  # a run whose every request failed has no latency spectrum
        return p, np.zeros(0, dtype=bool)
    if np.nanmax(p) > 1.0:  # percent, not fraction
        p = p / 100.0
    keep = (p >= 0) & (p < 1)
    return 1.0 / (1.0 - p[keep]), keep


def _spectrum_from_values(values: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(np.asarray(values, dtype=float))])
    if not len(v):
        return pd.DataFrame({"percentile": [], "latency_s": []})
    # Log-spaced in 1/(1-p), up to the resolution the sample supports.
    top = 1.0 - 1.0 / len(v)
    inv = np.logspace(0, math.log10(max(1.0 / (1.0 - top), 1.0)), 200)
    pct = 1.0 - 1.0 / inv
    return pd.DataFrame({"percentile": pct * 100.0, "latency_s": np.quantile(v, pct)})


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
        ax.plot(x, spec["latency_s"].to_numpy(dtype=float)[keep] * 1000.0, linestyle=style, label=name)
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
    ax.set_xticks(xs, names, rotation=30, ha="right")
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


# --------------------------------------------------------------------------- scaling
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
    from .analysis.capacity import CapacityPlan, plan_capacity

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


# --------------------------------------------------------------------------- everything at once
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
    fig.suptitle(f"mlops_lb run: {name}")
    return fig


# --------------------------------------------------------------------------- streamed (LLM) responses
_NO_STREAM = "no streamed responses in this run"
_STREAM_LABELS = {"ttft": "TTFT", "itl": "ITL", "tpot": "TPOT"}


def _no_stream(ax: Axes, what: str) -> None:
    """A visible note instead of an empty axis: a run whose responses did not stream has no token timings."""
    ax.text(0.5, 0.5, _NO_STREAM, transform=ax.transAxes, ha="center", va="center")
    ax.set_ylabel(f"{what} (ms)")


def _has_values(df: pd.DataFrame, cols: list[str]) -> bool:
    present = [c for c in cols if c in df.columns]
    return bool(present) and bool(df[present].notna().to_numpy().any())


def _stream_over_time(
    intervals: Any, metric: str, ax: Axes | None, uncorrected: bool, time: TimeAxis, t0: Any, title: str
) -> Figure:
    df = _frame(intervals, "intervals")
    fig, ax = _axes(ax)
    ax.set_title(title)
    name = _STREAM_LABELS[metric]
    x = _x(df["interval_start"], time, t0) if len(df) else []
    mk = _markers(len(df))
    series = [("", "-", 1.0, "")]
    if uncorrected and metric == "ttft":
        series.append(("_uncorrected", "--", 0.7, " (uncorrected)"))
    cols = [f"{metric}_{p}{suf}_s" for p in ("p50", "p99") for suf, *_ in series]
    if not len(df) or not _has_values(df, cols):
        _no_stream(ax, name)
    else:
        for key, label in (("p50", "p50"), ("p99", "p99")):
            for suf, style, alpha, tail in series:
                col = f"{metric}_{key}{suf}_s"
                if col in df.columns:
                    ax.plot(x, df[col].to_numpy(dtype=float) * 1000.0, color=_COLORS[key], linestyle=style,
                            alpha=alpha, label=f"{name} {label}{tail}", **mk)  # fmt: skip
        _latency_y(ax, name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    _time_label(ax, time)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def ttft_over_time(
    intervals: Any,
    *,
    ax: Axes | None = None,
    uncorrected: bool = True,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Time to first token per interval, p50 and p99 in ms; dashed lines are uncorrected (from the actual send).

    Corrected TTFT runs from the intended send time, so it includes the time a request waited in the client or in
    a queue before it went out: where solid and dashed part, the schedule slipped. A run without streamed
    responses gets a note saying so.

    Example::

        ttft_over_time(result.intervals())
    """
    return _stream_over_time(intervals, "ttft", ax, uncorrected, time, t0, "Time to first token per interval")


def itl_over_time(
    intervals: Any,
    *,
    ax: Axes | None = None,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Inter-token latency (the gap between token events) per interval, p50 and p99 in ms.

    Example::

        itl_over_time(result.intervals())
    """
    return _stream_over_time(intervals, "itl", ax, False, time, t0, "Inter-token latency per interval")


def tokens_per_s(
    intervals: Any,
    *,
    ax: Axes | None = None,
    time: TimeAxis = "relative",
    t0: Any = None,
) -> Figure:
    """Output tokens per second per interval (tokens of the responses that completed in it).

    Example::

        tokens_per_s(result.intervals())
    """
    df = _frame(intervals, "intervals")
    fig, ax = _axes(ax)
    tok = df["output_tokens_per_s"] if "output_tokens_per_s" in df.columns else None
    if tok is None or not len(df) or not float(tok.fillna(0).sum()) > 0:
        ax.text(0.5, 0.5, _NO_STREAM, transform=ax.transAxes, ha="center", va="center")
    else:
        x = _x(df["interval_start"], time, t0)
        ax.plot(x, tok.to_numpy(dtype=float), color="tab:blue", label="output tokens/s", **_markers(len(df)))
        ax.set_ylim(bottom=0)
    ax.set_ylabel("output tokens per second")
    _time_label(ax, time)
    ax.set_title("Output tokens per second")
    ax.grid(True, alpha=0.3)
    return fig


def _stream_spectra(src: Any, metric: str) -> list[tuple[str, pd.DataFrame]]:
    """(label, spectrum) curves for ``metric`` from a LoadResult's histograms or a requests frame's columns."""
    import numpy as np
    import pandas as pd

    def from_hist(h: Any) -> pd.DataFrame | None:
        if h is None or h.get_total_count() == 0:
            return None
        ks = np.linspace(0, 5, 101)
        pcts = 100 * (1 - 10.0**-ks)
        vals = [h.get_value_at_percentile(float(p)) / 1e6 for p in pcts]
        return pd.DataFrame({"percentile": pcts, "latency_s": vals})

    out: list[tuple[str, pd.DataFrame]] = []
    if callable(getattr(src, "stream_histogram", None)):
        names = {"ttft": [("ttft", "corrected"), ("ttft_uncorrected", "uncorrected")],
                 "itl": [("itl", "ITL (every gap)"), ("tpot", "TPOT (per request)")]}[metric]  # fmt: skip
        for key, label in names:
            spec = from_hist(src.stream_histogram(key))
            if spec is not None:
                out.append((label, spec))
        return out
    reqs = src if isinstance(src, pd.DataFrame) else getattr(src, "requests", None)
    if callable(reqs):
        reqs = reqs()
    if not isinstance(reqs, pd.DataFrame):
        raise TypeError(f"expected a LoadResult, a requests DataFrame or a bundle (got {type(src).__name__})")
    cols = {"ttft": [("ttft_s", "corrected"), ("ttft_uncorrected_s", "uncorrected")],
            "itl": [("itl_mean_s", "ITL (per-request mean)"), ("tpot_s", "TPOT (per request)")]}[metric]  # fmt: skip
    for col, label in cols:
        if col in reqs.columns and reqs[col].notna().any():
            out.append((label, _spectrum_from_values(reqs[col].dropna())))
    return out


def _stream_spectrum(src: Any, metric: str, ax: Axes | None, title: str) -> Figure:
    curves = _stream_spectra(src, metric)
    fig, ax = _axes(ax)
    ax.set_title(title)
    ax.set_xlabel("percentile")
    if not curves:
        _no_stream(ax, _STREAM_LABELS[metric])
        return fig
    for (name, spec), style in zip(curves, ("-", "--"), strict=False):
        x, keep = _spectrum_xy(spec["percentile"])
        ax.plot(x, spec["latency_s"].to_numpy(dtype=float)[keep] * 1000.0, linestyle=style, label=name)
    ax.set_xscale("log")
    _latency_y(ax, _STREAM_LABELS[metric] if metric == "ttft" else "time between tokens")
    ticks = [2.0, 10.0, 100.0, 1000.0, 10000.0]
    ax.set_xticks(ticks, ["50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xticks([], minor=True)
    ax.set_xlim(1.0, max(ticks[-1], ax.get_xlim()[1]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def ttft_spectrum(result_or_requests: Any, *, ax: Axes | None = None) -> Figure:
    """HDR percentile spectrum of time to first token, corrected (from the intended send) and uncorrected.

    Accepts a LoadResult (its merged TTFT histograms), a requests DataFrame or a bundle (``ttft_s`` columns).

    Example::

        ttft_spectrum(result)
    """
    return _stream_spectrum(
        result_or_requests, "ttft", ax, "Time to first token by percentile (HDR spectrum)"
    )


def itl_spectrum(result_or_requests: Any, *, ax: Axes | None = None) -> Figure:
    """HDR percentile spectrum of inter-token latency and time per output token.

    From a LoadResult the ITL curve holds every gap between token events (its HDR histogram); from a requests
    frame or bundle it is each request's mean gap, which is all the records keep.

    Example::

        itl_spectrum(result)
    """
    return _stream_spectrum(result_or_requests, "itl", ax, "Inter-token latency by percentile (HDR spectrum)")


def goodput_steps(requests: Any, intervals: Any, slo: Any = None) -> pd.DataFrame:
    """Per step of a sweep or step run: ``rate`` offered, ``requests``, ``meeting_slo`` and ``goodput_rps``.

    A request belongs to the step it was scheduled in (its intended send time); goodput is the step's rate times
    the share of its requests that succeeded and met every bound of ``slo`` (``ttft_s``, ``tpot_s``,
    ``latency_s``; None: success alone). Empty without ``step_rps`` in the intervals.

    Example::

        goodput_steps(result.requests(), result.intervals(), {"ttft_s": 0.5})
    """
    import numpy as np
    import pandas as pd

    req, iv = _frame(requests, "requests"), _frame(intervals, "intervals")
    cols = ["rate", "requests", "meeting_slo", "goodput_rps"]
    if "step_rps" not in iv.columns or not iv["step_rps"].notna().any() or not len(req):
        return pd.DataFrame(columns=cols)
    iv = iv.assign(_at=_utc(iv["interval_start"]).astype("datetime64[ns, UTC]")).sort_values("_at")
    at = _utc(req["intended_at"]).astype("datetime64[ns, UTC]")
    # the interval each request was scheduled in: the last one starting at or before its intended send
    k = np.searchsorted(iv["_at"].to_numpy(dtype="int64"), at.to_numpy(dtype="int64"), side="right") - 1
    rates = iv["step_rps"].to_numpy(dtype=float)
    r = req.assign(step_rps=np.where(k >= 0, rates[np.clip(k, 0, None)], math.nan), _at=at).sort_values("_at")
    r = r[r["step_rps"].notna()]
    err = r["error"].astype(str) if "error" in r.columns else pd.Series("", index=r.index)
    ok = r["error"].isna() | (err == "") if "error" in r.columns else pd.Series(True, index=r.index)
    meet = ok.to_numpy(dtype=bool).copy()
    for key, bound in dict(slo or {}).items():
        meet &= np.nan_to_num(r[key].to_numpy(dtype=float), nan=math.inf) <= float(bound)
    r = r.assign(_meet=meet)
    # Consecutive steps can share a rate (a step profile that comes back to it): group by the run of equal rates.
    run = (r["step_rps"] != r["step_rps"].shift()).cumsum()
    g = r.groupby(run)
    out = pd.DataFrame(
        {
            "rate": g["step_rps"].first().astype(float),
            "requests": g.size().astype(int),
            "meeting_slo": g["_meet"].sum().astype(int),
        }
    )
    out["goodput_rps"] = out["rate"] * out["meeting_slo"] / out["requests"]
    return out.reset_index(drop=True)[cols]


def goodput_curve(
    requests: Any,
    intervals: Any = None,
    *,
    slo: Any = None,
    ax: Axes | None = None,
) -> Figure:
    """Goodput (requests/s that met every SLO bound) against the offered rate, one point per step.

    On the dotted diagonal every request met the SLO; where the points fall away from it, the fleet has passed
    its useful capacity even if it still answers. ``requests`` may be a LoadResult or bundle (then ``intervals``
    comes from it); ``slo`` defaults to the result's own.

    Example::

        goodput_curve(result, slo={"ttft_s": 0.5, "tpot_s": 0.05})
    """
    if intervals is None:
        intervals = requests
    if slo is None:
        slo = getattr(requests, "slo", None) or (getattr(requests, "summary", None) or {})
        slo = slo.get("slo", slo) if isinstance(slo, dict) else {}
        slo = {k: v for k, v in dict(slo).items() if k in ("ttft_s", "tpot_s", "latency_s")}
    steps = goodput_steps(requests, intervals, slo)
    fig, ax = _axes(ax)
    bounds = (
        ", ".join(f"{k.removesuffix('_s').upper()} ≤ {v * 1000:g} ms" for k, v in slo.items()) or "success"
    )
    ax.set_title(f"Goodput vs offered rate (SLO: {bounds})")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("goodput (requests/s meeting the SLO)")
    if steps.empty:
        ax.text(0.5, 0.5, "no steps in this run (run a sweep or step profile)", transform=ax.transAxes,
                ha="center", va="center")  # fmt: skip
        return fig
    x = steps["rate"].to_numpy(dtype=float)
    top = float(x.max()) * 1.05
    ax.plot([0, top], [0, top], color="tab:gray", linestyle=":", label="every request meets the SLO")
    ax.plot(
        x, steps["goodput_rps"].to_numpy(dtype=float), color="tab:blue", marker="o", label="goodput per step"
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig
