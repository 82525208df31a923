"""Plots rendered from the synthetic bundle and checked for content: titles, labels, lines, legends, data."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mlops_lb import plots
from mlops_lb.analysis import plan_capacity


def _legend(ax: Any) -> list[str]:
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def _line(ax: Any, label: str) -> Any:
    matches = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert matches, f"no line {label!r} in {[ln.get_label() for ln in ax.get_lines()]}"
    return matches[0]


def _close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float))


def _renders(fig: Figure) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


class TestLatencyOverTime:
    def test_eight_lines_in_ms_on_log_scale(self, bundle: Any) -> None:
        """Corrected and uncorrected p50/p90/p99/p99.9 are drawn in ms against seconds since start."""
        fig = plots.latency_over_time(bundle.intervals)
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 8
        assert ax.get_yscale() == "log"
        assert ax.get_title() == "Latency percentiles per interval"
        assert ax.get_ylabel() == "latency (ms, log scale)"
        assert ax.get_xlabel() == "time since start (s)"
        assert _legend(ax)[:2] == ["p50", "p50 (uncorrected)"]
        p99 = _line(ax, "p99")
        _close(p99.get_ydata(), bundle.intervals["p99_s"] * 1000.0)
        assert p99.get_xdata()[0] == 0.0 and p99.get_xdata()[-1] == 59.0
        _renders(fig)

    def test_corrected_only_and_utc_axis(self, bundle: Any) -> None:
        """corrected=False/uncorrected=False select the line sets; time='utc' plots datetimes."""
        fig = plots.latency_over_time(bundle.intervals, uncorrected=False, time="utc")
        ax = fig.axes[0]
        assert [ln.get_label() for ln in ax.get_lines()] == ["p50", "p90", "p99", "p99.9"]
        assert ax.get_xlabel() == "time (UTC)"
        assert np.issubdtype(np.asarray(ax.get_lines()[0].get_xdata()).dtype, np.datetime64)
        only_unc = plots.latency_over_time(bundle.intervals, corrected=False).axes[0]
        assert all("uncorrected" in str(ln.get_label()) for ln in only_unc.get_lines())

    def test_draws_into_given_axes(self, bundle: Any) -> None:
        """With ax=, the plot goes into that axes and its figure is returned."""
        fig = Figure()
        ax = fig.add_subplot()
        assert plots.latency_over_time(bundle.intervals, ax=ax) is fig
        assert len(ax.get_lines()) == 8


class TestThroughput:
    def test_offered_achieved_and_error_kinds(self, bundle: Any) -> None:
        """Offered and achieved rps are lines; the timeout and 5xx bursts are stacked on a second axis."""
        fig = plots.throughput(bundle.intervals)
        ax, ax2 = fig.axes
        assert ax.get_ylabel() == "requests per second"
        assert ax2.get_ylabel() == "errors per second (stacked)"
        # every whole interval on the lines; the last (partial) one is a point of its own
        _close(_line(ax, "achieved").get_ydata(), bundle.intervals["achieved_rps"][:-1])
        _close(_line(ax, "offered").get_ydata(), bundle.intervals["offered_rps"][:-1])
        _close(_line(ax, "last interval (partial)").get_ydata(), bundle.intervals["achieved_rps"][-1:])
        assert _legend(ax) == [
            "offered",
            "achieved",
            "last interval (partial)",
            "errors: timeout",
            "errors: http_5xx",
        ]
        assert len(ax2.collections) == 2
        assert ax2.get_ylim()[1] >= 5  # 5 timeouts in one 1 s interval

    def test_no_error_axis_when_clean(self, bundle: Any) -> None:
        """A run without errors has no second axis."""
        clean = bundle.intervals.copy()
        for c in [c for c in clean.columns if c.startswith("err_")]:
            clean[c] = 0
        assert len(plots.throughput(clean).axes) == 1


class TestPercentileSpectrum:
    def test_spectrum_frame_axis_and_ticks(self) -> None:
        """x is 1/(1-p) on a log axis, labelled 50% ... 99.99%; percentiles given in % or as fractions agree."""
        spec = pd.DataFrame({"percentile": [50.0, 90.0, 99.0, 99.9], "latency_s": [0.01, 0.02, 0.05, 0.2]})
        ax = plots.percentile_spectrum(spec).axes[0]
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["50%", "90%", "99%", "99.9%", "99.99%"]
        line = ax.get_lines()[0]
        _close(line.get_xdata(), [2.0, 10.0, 100.0, 1000.0])
        _close(line.get_ydata(), [10.0, 20.0, 50.0, 200.0])
        frac = spec.assign(percentile=spec["percentile"] / 100.0)
        _close(plots.percentile_spectrum(frac).axes[0].get_lines()[0].get_xdata(), line.get_xdata())

    def test_from_requests_corrected_and_uncorrected(self, bundle: Any) -> None:
        """From raw requests: two curves, monotone, topping out near the slowest successful request."""
        ax = plots.percentile_spectrum(bundle.requests).axes[0]
        assert _legend(ax) == ["corrected", "uncorrected (service time)"]
        y = np.asarray(ax.get_lines()[0].get_ydata(), dtype=float)
        assert np.all(np.diff(y) >= 0)
        ok = bundle.requests[bundle.requests["error"].isna()]
        assert y[-1] <= ok["latency_s"].max() * 1000.0 + 1e-9
        assert y[0] >= ok["latency_s"].min() * 1000.0 - 1e-9

    def test_from_result_like(self) -> None:
        """An object with percentile_spectrum() (a LoadResult) is accepted, with a custom label."""

        class Result:
            def percentile_spectrum(self) -> pd.DataFrame:
                return pd.DataFrame({"percentile": [50.0, 99.0], "latency_s": [0.001, 0.004]})

        ax = plots.percentile_spectrum(Result(), label="run A").axes[0]
        assert _legend(ax) == ["run A"]

    def test_rejects_other_input(self) -> None:
        """Anything else is a TypeError naming what is accepted."""
        with pytest.raises(TypeError, match="LoadResult"):
            plots.percentile_spectrum(42)


class TestPerTarget:
    def test_counts_and_p99_per_target(self, bundle: Any) -> None:
        """Bars count successful requests per target; dots are each target's p99 in ms."""
        fig = plots.per_target(bundle.requests)
        ax, ax2 = fig.axes
        ok = bundle.requests[bundle.requests["error"].isna()]
        counts = ok.groupby("target").size()
        assert [t.get_text() for t in ax.get_xticklabels()] == list(counts.index)
        assert [p.get_height() for p in ax.patches] == list(counts.to_numpy(dtype=float))  # type: ignore[attr-defined]
        _close(ax2.get_lines()[0].get_ydata(), ok.groupby("target")["latency_s"].quantile(0.99) * 1000.0)
        assert ax.get_title() == "Per-target load and p99 latency"
        assert _legend(ax) == ["even share", "requests served", "p99 latency"]


class TestScalingTimeline:
    def test_steps_target_line_and_events(self, bundle: Any, synthetic: Any) -> None:
        """Desired/in-service/healthy are steps; RCPT is compared with target x period; scale events are marked."""
        fig = plots.scaling_timeline(bundle.metrics, bundle.events, target_rps_per_target=40, period_s=2)
        top, bottom = fig.axes
        desired = _line(top, "desired")
        assert desired.get_drawstyle() == "steps-post"
        assert set(desired.get_ydata()) == {1.0, 2.0, 3.0}
        assert max(_line(top, "healthy").get_ydata()) == 3.0
        target = _line(bottom, "target 80 = 40 rps x 2 s")
        assert list(target.get_ydata()) == [80.0, 80.0]
        rcpt = bundle.metrics[bundle.metrics["metric"] == "RequestCountPerTarget"]
        _close(_line(bottom, "RequestCountPerTarget").get_ydata(), rcpt["value"])
        assert bottom.get_ylabel() == "requests per target per 2 s"
        assert [t.get_text() for t in top.texts] == [
            "scale out",
            "scale in",
        ]  # short tags; reasons in the table
        # The scale-out line sits at t = 20 s.
        vlines = [ln for ln in top.get_lines() if ln.get_linestyle() == ":"]
        assert np.asarray(vlines[0].get_xdata(), dtype=float)[0] == pytest.approx(synthetic.SCALE_OUT_AT)
        assert _legend(top) == ["desired", "in service", "healthy"]

    def test_single_axes_puts_rcpt_on_twin(self, bundle: Any) -> None:
        """With ax=, targets go on ax and RequestCountPerTarget on a twin axis; the period is inferred."""
        fig = Figure()
        ax = fig.add_subplot()
        plots.scaling_timeline(bundle.metrics, None, ax=ax, target_rps_per_target=40)
        assert len(fig.axes) == 2
        assert fig.axes[1].get_ylabel() == "requests per target per 2 s"
        assert "target 80 = 40 rps x 2 s" in _legend(ax)


class TestCapacityCurve:
    def test_from_plan_marks_slo_knee_and_failures(self, synthetic: Any) -> None:
        """p99 per step in ms, the SLO line, the knee and max-OK verticals, and failing steps as red crosses."""
        plan = plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05)
        ax = plots.capacity_curve(plan).axes[0]
        _close(_line(ax, "p99 per step").get_ydata(), [10, 11, 12, 20, 100])
        assert list(_line(ax, "step over SLO or error bound").get_xdata()) == [500.0]
        assert list(_line(ax, "SLO p99 50 ms").get_ydata()) == [50.0, 50.0]
        # knee and max OK coincide here: one line with one label, not one hidden under the other
        assert list(_line(ax, "knee = max OK 400 rps").get_xdata()) == [400.0, 400.0]
        assert ax.get_xlabel() == "offered rate per target (rps)"

    def test_needs_slo_without_plan(self, synthetic: Any) -> None:
        """A raw sweep needs slo_p99_s."""
        with pytest.raises(ValueError, match="slo_p99_s"):
            plots.capacity_curve(synthetic.sweep_steps())
        assert plots.capacity_curve(synthetic.sweep_steps(), slo_p99_s=0.015).axes[0].get_lines()


class TestDashboard:
    def test_all_panels_from_a_bundle(self, bundle: Any) -> None:
        """The dashboard fills five panels for a run with intervals, requests and metrics."""
        fig = plots.dashboard(bundle)
        titles = {a.get_title() for a in fig.axes}
        assert {
            "Latency percentiles per interval",
            "Throughput: offered vs achieved, errors by kind",
            "Latency by percentile (HDR spectrum)",
            "Per-target load and p99 latency",
            "Scaling timeline",
        } <= titles
        assert fig.get_suptitle() == "mlops_lb run: synthetic"
        _renders(fig)

    def test_missing_parts_say_so(self, bundle: Any) -> None:
        """A bundle without metrics shows a 'no metrics' panel instead of failing."""
        from types import SimpleNamespace

        partial = SimpleNamespace(
            intervals=bundle.intervals,
            requests=bundle.requests,
            metrics=pd.DataFrame(),
            events=pd.DataFrame(),
            spec=None,
            path=None,
        )
        fig = plots.dashboard(partial)
        assert any(t.get_text() == "no metrics in this run" for a in fig.axes for t in a.texts)


def test_plots_of_a_run_where_every_request_failed_say_so_instead_of_raising() -> None:
    """An all-error run (no latencies) renders with a 'no successful requests' note, not a log-scale crash."""
    import io

    import numpy as np
    import pandas as pd

    from mlops_lb import plots

    t = pd.date_range("2026-01-01", periods=3, freq="1s", tz="UTC")
    requests = pd.DataFrame({"latency_s": [np.nan] * 3, "service_s": [np.nan] * 3, "error": ["connect"] * 3})
    intervals = pd.DataFrame(
        {"interval_start": t, **{f"{k}_s": [np.nan] * 3 for k in ("p50", "p90", "p99", "p999", "max")}}
    )
    for fig in (plots.percentile_spectrum(requests), plots.latency_over_time(intervals)):
        fig.savefig(io.BytesIO(), format="png")  # drawing is where a log axis without data raised
        assert "no successful requests" in [txt.get_text() for txt in fig.axes[0].texts]


def _aws_run(bundle: Any) -> Any:
    """The synthetic run as an AWS run: CloudWatch's 60 s datapoints, and a spec whose local clock is irrelevant."""
    from types import SimpleNamespace

    mf = bundle.metrics.copy()
    start = mf["timestamp"].min()
    mf["timestamp"] = start + (mf["timestamp"] - start) * 30  # 2 s local periods -> 60 s CloudWatch periods
    return SimpleNamespace(**{**vars(bundle), "metrics": mf})


def test_dashboard_target_line_follows_the_metric_period_not_the_local_clock(bundle: Any) -> None:
    """On 60 s CloudWatch data the policy line is target x 60, even though spec.local.period_s is 2."""
    fig = plots.dashboard(_aws_run(bundle))
    labels = [ln.get_label() for a in fig.axes for ln in a.get_lines()]
    assert "target 2400 = 40 rps x 60 s" in labels, labels


def test_scaling_timeline_infers_the_period_from_the_frame_when_rcpt_has_one_point(bundle: Any) -> None:
    """With a single RequestCountPerTarget point the period comes from the other series' spacing, not 60 s."""
    mf = bundle.metrics
    first = mf[mf["metric"] == "RequestCountPerTarget"]["timestamp"].min()
    one = mf[(mf["metric"] != "RequestCountPerTarget") | (mf["timestamp"] == first)]
    fig = plots.scaling_timeline(one, None, target_rps_per_target=40)
    assert "target 80 = 40 rps x 2 s" in _legend(fig.axes[1])
