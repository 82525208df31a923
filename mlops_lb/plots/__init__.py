"""Matplotlib figures of a load test and a scaling run; each function returns a Figure and accepts ``ax``.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never through pyplot state,
so they render the same in a notebook, a headless test and the HTML report. Time axes are seconds since the start
of the run by default (``time="utc"`` for wall-clock UTC); latencies are shown in milliseconds.

One module per family, sharing the reading rules of :mod:`mlops_lb.plots._base` (latency axes that always carry
numbers, the partial last interval, the nominal period, legends off the data, plain-text labels):
:mod:`~mlops_lb.plots.load`, :mod:`~mlops_lb.plots.scaling`, :mod:`~mlops_lb.plots.llm`,
:mod:`~mlops_lb.plots.dashboard`. Each figure registers how the report draws it (:func:`report_figure`); the report
iterates the registry and never names a figure.

Example::

    from mlops_lb import plots
    plots.latency_over_time(result.intervals())          # p50/p90/p99/p99.9, corrected and uncorrected
    plots.throughput(result.intervals())                  # offered vs achieved, errors by kind
    plots.percentile_spectrum(result)                     # HDR plot
    plots.scaling_timeline(fleet.metrics(), fleet.events(), target_rps_per_target=20, period_s=2)
    plots.dashboard(bundle)                               # everything on one figure
"""

from __future__ import annotations

from ..analysis.goodput import goodput_steps
from ._registry import FigureInput, ReportFigure, draw_figures, registered_figures, report_figure
from .dashboard import dashboard
from .llm import (
    goodput_curve,
    itl_over_time,
    itl_spectrum,
    prefix_cache_hit_rate,
    tokens_per_s,
    ttft_over_time,
    ttft_spectrum,
)
from .load import latency_over_time, per_target, percentile_spectrum, throughput
from .rollout import rollout_timeline
from .scaling import capacity_curve, scaling_timeline
from .spot import spot_interruptions

__all__ = [
    "FigureInput",
    "ReportFigure",
    "capacity_curve",
    "dashboard",
    "draw_figures",
    "goodput_curve",
    "goodput_steps",
    "itl_over_time",
    "itl_spectrum",
    "latency_over_time",
    "per_target",
    "percentile_spectrum",
    "prefix_cache_hit_rate",
    "registered_figures",
    "report_figure",
    "rollout_timeline",
    "scaling_timeline",
    "spot_interruptions",
    "throughput",
    "tokens_per_s",
    "ttft_over_time",
    "ttft_spectrum",
]
