"""The report's figure registry: each figure registers how the report draws it, beside its own function.

The report never names a figure: it builds one :class:`FigureInput` for the run and asks every registered
:class:`ReportFigure` of a section to draw itself (``None`` when the run has no data for it). Adding a figure to
the report is its function plus one ``@report_figure`` adapter next to it, and its test.

Example::

    from mlops_lb.plots import FigureInput, report_figure

    @report_figure("error_share", "Share of failed requests per interval.")
    def _error_share(run: FigureInput):
        return my_error_share_plot(run.intervals, t0=run.t0) if len(run.intervals) else None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["SECTIONS", "FigureInput", "ReportFigure", "draw_figures", "registered_figures", "report_figure"]

SECTIONS = ("plots", "llm")
"""The report's figure sections: ``plots`` (every run) and ``llm`` (runs whose responses streamed)."""


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


@dataclass(frozen=True)
class FigureInput:
    """What a report figure reads: the run's tables cut to its window, its start and the bounds it was judged by.

    Example::

        run = FigureInput(intervals=b.intervals, requests=b.requests, t0=b.window[0])
    """

    intervals: pd.DataFrame = field(default_factory=_empty)
    requests: pd.DataFrame = field(default_factory=_empty)
    metrics: pd.DataFrame = field(default_factory=_empty)
    events: pd.DataFrame = field(default_factory=_empty)
    t0: Any = None
    spec: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    slo_p99_s: float | None = None
    metric_period_s: float | None = None
    rollouts: tuple[dict[str, Any], ...] = ()

    @property
    def slo(self) -> dict[str, float]:
        """The run's streaming SLO bounds (``ttft_s``, ``tpot_s``, ``latency_s``) that were given."""
        slo = dict(self.summary.get("slo") or {})
        return {k: float(v) for k, v in slo.items() if v is not None}

    @property
    def is_sweep(self) -> bool:
        """True when the intervals carry the step rate of a sweep or step profile."""
        iv = self.intervals
        return "step_rps" in iv.columns and bool(iv["step_rps"].notna().any())


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report: its file stem, caption (text, or a function of the run) and section.

    Example::

        [f.stem for f in registered_figures("plots")]   # ['latency_over_time', 'throughput', ...]
    """

    stem: str
    caption: str | Callable[[FigureInput], str]
    draw: Callable[[FigureInput], Figure | None]
    section: str = "plots"

    def caption_for(self, run: FigureInput) -> str:
        """The caption for ``run`` (a callable caption can name the run's SLO)."""
        return self.caption(run) if callable(self.caption) else self.caption


_FIGURES: dict[str, ReportFigure] = {}


def report_figure(
    stem: str, caption: str | Callable[[FigureInput], str], *, section: str = "plots"
) -> Callable[[Callable[[FigureInput], Figure | None]], Callable[[FigureInput], Figure | None]]:
    """Register the decorated ``draw(run) -> Figure | None`` as a report figure; the report shows them in
    registration order within their section.

    Example::

        @report_figure("per_target", "Requests served and p99 latency per target.")
        def _per_target(run):
            return per_target(run.requests) if "target" in run.requests.columns else None
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS} (got {section!r})")
    if not stem.isidentifier():
        # the stem names the PNG file and the HTML anchor: keep it a plain word
        raise ValueError(f"stem must be a plain identifier such as 'latency_over_time' (got {stem!r})")

    def register(draw: Callable[[FigureInput], Figure | None]) -> Callable[[FigureInput], Figure | None]:
        _FIGURES[stem] = ReportFigure(stem=stem, caption=caption, draw=draw, section=section)
        return draw

    return register


def registered_figures(section: str | None = None) -> list[ReportFigure]:
    """The registered report figures (of one section, or all), in registration order."""
    return [f for f in _FIGURES.values() if section is None or f.section == section]


def draw_figures(run: FigureInput, section: str) -> list[tuple[str, str, Figure]]:
    """(stem, caption, figure) for each figure of ``section`` that ``run`` has data for."""
    out: list[tuple[str, str, Figure]] = []
    for f in registered_figures(section):
        fig = f.draw(run)
        if fig is not None:
            out.append((f.stem, f.caption_for(run), fig))
    return out
