"""The report's figure registry: the report draws what is registered, in order, and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from mlops_lb import plots
from mlops_lb.plots import _registry
from mlops_lb.report import render_report_html

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_sweep"


def test_every_report_figure_is_registered_once_in_report_order() -> None:
    """The figures the report showed before the registry, in the same order, each with a caption."""
    assert [f.stem for f in plots.registered_figures("plots")] == [
        "latency_over_time",
        "throughput",
        "percentile_spectrum",
        "per_target",
        "scaling_timeline",
        "capacity_curve",
        "rollout",
        "spot_interruptions",  # drawn only for runs with spot interruptions (plots/spot.py)
    ]
    assert [f.stem for f in plots.registered_figures("llm")] == [
        "ttft_over_time",
        "itl_over_time",
        "tokens_per_s",
        "ttft_spectrum",
        "itl_spectrum",
        "goodput_curve",
        "prefix_cache_hit_rate",
    ]
    for f in plots.registered_figures():
        assert f.caption_for(plots.FigureInput()).endswith(".") and f.stem.isidentifier()


def test_a_registered_figure_appears_in_the_report_with_its_caption(tmp_path: Path, monkeypatch) -> None:
    """Adding a figure is one function: registered, it is drawn and captioned without touching the report."""
    monkeypatch.setattr(_registry, "_FIGURES", dict(_registry._FIGURES))
    seen: list[plots.FigureInput] = []

    @plots.report_figure("request_count", "Requests per interval, a figure this test adds.")
    def _draw(run: plots.FigureInput) -> Figure | None:
        seen.append(run)
        fig = Figure()
        fig.add_subplot().plot(run.intervals["sent"].to_numpy())
        return fig

    @plots.report_figure("never_shown", "A figure without data for this run.")
    def _none(run: plots.FigureInput) -> Figure | None:
        return None

    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    page = render_report_html(run)
    assert "<figure id='request_count'>" in page and "a figure this test adds." in page
    assert "never_shown" not in page and "A figure without data" not in page
    assert len(seen) == 1 and seen[0].t0 is not None and len(seen[0].intervals) == 4
    # its place: after the built-in figures of its section
    assert page.index("id='per_target'") < page.index("id='request_count'")


def test_registration_refuses_a_bad_stem_or_section() -> None:
    """A stem names a file and an anchor; a section must be one the report renders."""
    with pytest.raises(ValueError, match="stem"):
        plots.report_figure("../x", "caption.")
    with pytest.raises(ValueError, match="section"):
        plots.report_figure("ok", "caption.", section="appendix")


def test_the_old_public_names_still_work() -> None:
    """Every name of the former plots.py is still ml.plots.<name>; goodput_steps now lives in analysis."""
    from mlops_lb.analysis import goodput_steps

    for name in (
        "capacity_curve", "dashboard", "goodput_curve", "goodput_steps", "itl_over_time", "itl_spectrum",
        "latency_over_time", "per_target", "percentile_spectrum", "scaling_timeline", "throughput",
        "tokens_per_s", "ttft_over_time", "ttft_spectrum",
    ):  # fmt: skip
        assert callable(getattr(plots, name)) and name in plots.__all__
    assert plots.goodput_steps is goodput_steps
