"""Figures of streamed (LLM) responses: TTFT, ITL and tokens per second over time, their HDR spectra, goodput.

Example::

    from mlops_lb import plots
    plots.ttft_over_time(result.intervals()); plots.ttft_spectrum(result)
    plots.goodput_curve(result, slo={"ttft_s": 0.5, "tpot_s": 0.05})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..analysis.goodput import goodput_steps
from ._base import (
    _COLORS,
    TimeAxis,
    _axes,
    _frame,
    _latency_y,
    _markers,
    _spectrum_from_values,
    _spectrum_xy,
    _time_label,
    _x,
)
from ._registry import FigureInput, report_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "goodput_curve",
    "itl_over_time",
    "itl_spectrum",
    "prefix_cache_hit_rate",
    "tokens_per_s",
    "ttft_over_time",
    "ttft_spectrum",
]

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


def prefix_cache_hit_rate(metrics: Any, *, ax: Axes | None = None) -> Figure:
    """Prefix-cache hit rate per target over the run (the MetricFrame's ``PrefixCacheHitRate``), the fleet's as
    a dashed line: prompt tokens found cached over prompt tokens queried, vLLM's definition.

    Per-target bars average the target's periods; the fleet line averages the group rows. Example::

        prefix_cache_hit_rate(fleet.metrics())
    """
    df = _frame(metrics, "metrics")
    fig, ax = _axes(ax, figsize=(9.0, 3.5))
    rows = df[df["metric"] == "PrefixCacheHitRate"] if "metric" in df.columns else df.iloc[0:0]
    per = rows[rows["target"] != ""].groupby("target")["value"].mean() if len(rows) else None
    if per is None or not len(per):
        ax.text(0.5, 0.5, "no prefix-cache counters in this run", transform=ax.transAxes, ha="center")
    else:
        ax.bar([str(t) for t in per.index], per.to_numpy(dtype=float), color="tab:green", label="per target")
        group = rows[rows["target"] == ""]["value"]
        if len(group):
            ax.axhline(
                float(group.mean()), color="black", linestyle="--", label=f"fleet {group.mean():.1f} %"
            )
        ax.legend(loc="upper right")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylim(0, 100)
    ax.set_ylabel("prefix cache hit rate (%)")
    ax.set_title("Prefix cache hit rate per target")
    ax.grid(True, axis="y", alpha=0.3)
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


# --------------------------------------------------------------------------- in the report
def _slo_text(slo: dict[str, float]) -> str:
    return (
        ", ".join(f"{k.removesuffix('_s').upper()} ≤ {v * 1000:g} ms" for k, v in slo.items())
        or "none given: every successful request counts"
    )


@report_figure(
    "ttft_over_time",
    "Time to first token per interval; dashed lines are uncorrected (from the actual send time).",
    section="llm",
)
def _report_ttft(run: FigureInput) -> Figure | None:
    return ttft_over_time(run.intervals, t0=run.t0) if len(run.intervals) else None


@report_figure("itl_over_time", "Inter-token latency per interval.", section="llm")
def _report_itl(run: FigureInput) -> Figure | None:
    return itl_over_time(run.intervals, t0=run.t0) if len(run.intervals) else None


@report_figure("tokens_per_s", "Output tokens per second.", section="llm")
def _report_tokens(run: FigureInput) -> Figure | None:
    return tokens_per_s(run.intervals, t0=run.t0) if len(run.intervals) else None


def _streamed(run: FigureInput) -> bool:
    return bool(len(run.requests)) and "ttft_s" in run.requests.columns


@report_figure("ttft_spectrum", "HDR spectrum of time to first token.", section="llm")
def _report_ttft_spectrum(run: FigureInput) -> Figure | None:
    return ttft_spectrum(run.requests) if _streamed(run) else None


@report_figure("itl_spectrum", "HDR spectrum of per-request mean ITL and TPOT.", section="llm")
def _report_itl_spectrum(run: FigureInput) -> Figure | None:
    return itl_spectrum(run.requests) if _streamed(run) else None


@report_figure(
    "goodput_curve",
    lambda run: f"Goodput per step against the offered rate (SLO: {_slo_text(run.slo)}).",
    section="llm",
)
def _report_goodput(run: FigureInput) -> Figure | None:
    if not _streamed(run) or not run.is_sweep:
        return None
    return goodput_curve(run.requests, run.intervals, slo=run.slo)


@report_figure(
    "prefix_cache_hit_rate",
    "Prefix-cache hit rate per target (cached over queried prompt tokens, vLLM's counters); dashed: the fleet.",
    section="llm",
)
def _report_prefix_cache(run: FigureInput) -> Figure | None:
    m = run.metrics
    if not len(m) or "metric" not in m.columns or not (m["metric"] == "PrefixCacheHitRate").any():
        return None
    return prefix_cache_hit_rate(m)
