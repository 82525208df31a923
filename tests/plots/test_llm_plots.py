"""The streamed-response (LLM) plots: what each draws from hand-made intervals and requests, and the notes shown
for a run without streamed responses or a run of one interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_lb import plots
from mlops_lb.load._engine import new_histogram

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _intervals(n: int = 4, *, streamed: bool = True) -> pd.DataFrame:
    t = pd.date_range(T0, periods=n, freq="1s")
    nan = np.full(n, math.nan)
    df = pd.DataFrame({"interval_start": t, "p99_s": np.full(n, 0.5)})
    ttft = np.linspace(0.1, 0.4, n) if streamed else nan
    df["ttft_p50_s"], df["ttft_p99_s"] = ttft, ttft * 2
    df["ttft_p50_uncorrected_s"], df["ttft_p99_uncorrected_s"] = ttft / 2, ttft
    df["itl_p50_s"], df["itl_p99_s"] = (np.full(n, 0.02), np.full(n, 0.05)) if streamed else (nan, nan)
    df["output_tokens_per_s"] = np.arange(1, n + 1) * 100.0 if streamed else np.zeros(n)
    return df


def _lines(fig: Any) -> dict[str, Any]:
    return {ln.get_label(): ln for ln in fig.axes[0].get_lines()}


def _texts(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_ttft_over_time_draws_p50_p99_corrected_and_uncorrected_in_ms() -> None:
    fig = plots.ttft_over_time(_intervals())
    lines = _lines(fig)
    assert set(lines) == {"TTFT p50", "TTFT p99", "TTFT p50 (uncorrected)", "TTFT p99 (uncorrected)"}
    np.testing.assert_allclose(lines["TTFT p99"].get_ydata(), [200, 400, 600, 800])
    np.testing.assert_allclose(lines["TTFT p50 (uncorrected)"].get_xdata(), [0, 1, 2, 3])
    assert lines["TTFT p99 (uncorrected)"].get_linestyle() == "--"
    assert "TTFT (ms" in fig.axes[0].get_ylabel()
    assert plots.ttft_over_time(_intervals(), uncorrected=False).axes[0].get_legend() is not None
    assert set(_lines(plots.ttft_over_time(_intervals(), uncorrected=False))) == {"TTFT p50", "TTFT p99"}


def test_itl_and_tokens_over_time() -> None:
    lines = _lines(plots.itl_over_time(_intervals()))
    assert set(lines) == {"ITL p50", "ITL p99"}
    np.testing.assert_allclose(lines["ITL p99"].get_ydata(), [50, 50, 50, 50])
    tok = _lines(plots.tokens_per_s(_intervals()))["output tokens/s"]
    np.testing.assert_allclose(tok.get_ydata(), [100, 200, 300, 400])


@pytest.mark.parametrize("fn", [plots.ttft_over_time, plots.itl_over_time, plots.tokens_per_s])
def test_a_run_without_streamed_responses_says_so(fn: Any) -> None:
    fig = fn(_intervals(streamed=False))
    assert "no streamed responses in this run" in _texts(fig) and not fig.axes[0].get_lines()
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=30)  # draws without a log-axis error


def test_one_interval_is_a_visible_point() -> None:
    ln = _lines(plots.ttft_over_time(_intervals(1)))["TTFT p99"]
    assert len(ln.get_xdata()) == 1 and ln.get_marker() == "o"


def _requests() -> pd.DataFrame:
    n = 100
    ttft = np.arange(1, n + 1) / 1000.0  # 1 .. 100 ms
    return pd.DataFrame(
        {
            "intended_at": T0 + pd.to_timedelta(np.arange(n) * 0.1, unit="s"),
            "error": [""] * n,
            "latency_s": ttft + 0.5,
            "ttft_s": ttft,
            "ttft_uncorrected_s": ttft / 2,
            "itl_mean_s": np.full(n, 0.02),
            "tpot_s": np.full(n, 0.03),
        }
    )


def test_ttft_spectrum_from_requests_has_both_curves() -> None:
    fig = plots.ttft_spectrum(_requests())
    lines = _lines(fig)
    assert set(lines) == {"corrected", "uncorrected"}
    y = lines["corrected"].get_ydata()
    assert y[0] == pytest.approx(1.0) and max(y) <= 100.0 and y[-1] > 90.0
    assert max(lines["uncorrected"].get_ydata()) <= 50.0


def test_spectra_from_a_result_use_its_histograms() -> None:
    class Result:
        def __init__(self) -> None:
            self.h = {k: new_histogram() for k in ("ttft", "ttft_uncorrected", "itl", "tpot")}
            for v in range(1, 1001):
                self.h["itl"].record_value(v * 10)  # 10 µs .. 10 ms
            self.h["tpot"].record_value(20_000)

        def stream_histogram(self, metric: str) -> Any:
            return self.h[metric]

    lines = _lines(plots.itl_spectrum(Result()))
    assert set(lines) == {"ITL (every gap)", "TPOT (per request)"}
    assert max(lines["ITL (every gap)"].get_ydata()) == pytest.approx(10.0, rel=0.01)
    # empty TTFT histograms: the note, not an empty plot
    assert "no streamed responses in this run" in _texts(plots.ttft_spectrum(Result()))


def test_goodput_per_step_is_rate_times_share_meeting_the_slo() -> None:
    """Two steps of 5 s: at 10 rps 50 requests, TTFT 1..50 ms; at 20 rps 50 requests TTFT 51..100 ms (hand-made:
    the engine would schedule 100 at 20 rps, the arithmetic is what is checked). SLO TTFT <= 60 ms: step 1 all 50
    meet -> 10 rps; step 2 the 10 of 51..60 ms -> 20 x 10/50 = 4 rps."""
    req = _requests()
    req["intended_at"] = T0 + pd.to_timedelta(np.r_[np.arange(50) * 0.1, 5 + np.arange(50) * 0.1], unit="s")
    iv = pd.DataFrame(
        {"interval_start": pd.date_range(T0, periods=10, freq="1s"), "step_rps": [10.0] * 5 + [20.0] * 5}
    )
    steps = plots.goodput_steps(req, iv, {"ttft_s": 0.060})
    assert steps.to_dict("list") == {
        "rate": [10.0, 20.0],
        "requests": [50, 50],
        "meeting_slo": [50, 10],
        "goodput_rps": [10.0, 4.0],
    }
    fig = plots.goodput_curve(req, iv, slo={"ttft_s": 0.060})
    good = _lines(fig)["goodput per step"]
    np.testing.assert_allclose(good.get_xdata(), [10, 20])
    np.testing.assert_allclose(good.get_ydata(), [10, 4])
    assert "TTFT ≤ 60 ms" in fig.axes[0].get_title()
    # a failed request never counts, whatever its timings
    req.loc[0, "error"] = "timeout"
    assert plots.goodput_steps(req, iv, {"ttft_s": 0.060})["meeting_slo"].tolist() == [49, 10]


def test_goodput_without_steps_says_so() -> None:
    iv = _intervals()
    fig = plots.goodput_curve(_requests(), iv.assign(step_rps=math.nan), slo={})
    assert "no steps in this run" in _texts(fig)[0]
