"""Block-bootstrap intervals and run comparison on synthetic runs with known truth (no processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_lb.analysis.compare import compare, run_intervals, run_sample
from mlops_lb.errors import SpecError


def _run(
    seed: int, *, ttft_scale: float = 1.0, seconds: int = 120, rps: int = 20, ar: float = 0.7
) -> pd.DataFrame:
    """A streamed run whose TTFT follows an AR(1) queue-like process per second (autocorrelated, as real runs)."""
    rng = np.random.default_rng(seed)
    level = np.empty(seconds)
    x = 0.0
    for i in range(seconds):
        x = ar * x + rng.normal(0, 0.3)
        level[i] = np.exp(x)
    n = seconds * rps
    sec = np.repeat(np.arange(seconds), rps) + rng.uniform(0, 1, n)
    ttft = 0.1 * ttft_scale * level[sec.astype(int)] * rng.lognormal(0, 0.2, n)
    t0 = pd.Timestamp("2026-12-06T12:00:00", tz="UTC")
    return pd.DataFrame(
        {
            "intended_at": t0 + pd.to_timedelta(sec, unit="s"),
            "error": "",
            "ttft_s": ttft,
            "tpot_s": 0.01 * rng.lognormal(0, 0.1, n),
            "latency_s": ttft + 0.3,
            "output_tokens": rng.integers(8, 48, n),
        }
    )


class _Run:
    def __init__(self, df: pd.DataFrame, name: str) -> None:
        self._df, self.name = df, name

    def requests(self) -> pd.DataFrame:
        return self._df

    def summary(self) -> dict[str, object]:
        return {"slo": {"ttft_s": 0.5}}


class TestIntervals:
    def test_block_interval_is_wider_than_iid_on_autocorrelated_runs(self) -> None:
        """Resampling 10 s blocks keeps the autocorrelation: its TTFT p50 interval is wider than 1 s 'blocks' would
        give with iid resampling of bins (which understates uncertainty)."""
        s = run_sample(_Run(_run(1), "a"))
        block = s.bootstrap(block_s=10, n_boot=200)["ttft_p50_s"]
        iid = s.bootstrap(block_s=1, n_boot=200)["ttft_p50_s"]
        assert np.std(block) > 1.3 * np.std(iid)

    def test_table_says_method_and_contains_estimate(self) -> None:
        """Each figure has lo <= estimate <= hi and the method names the block length; 5 repeats switch method."""
        t = run_intervals(_Run(_run(2), "a"), usd_per_hour=1.0, n_boot=300)
        r = t.set_index("figure").loc["ttft_p99_s"]
        assert r["lo"] <= r["estimate"] <= r["hi"] and "blocks of 10 s" in r["method"]
        t5 = run_intervals([_Run(_run(i, seconds=40), str(i)) for i in range(5)], n_boot=300)
        assert t5["method"].iloc[0].startswith("across 5 runs")

    def test_short_run_flagged(self) -> None:
        """A 30 s run has 3 blocks: the method says too_short."""
        t = run_intervals(_Run(_run(3, seconds=30), "a"), n_boot=100)
        assert "too_short" in t["method"].iloc[0]

    def test_blocks_under_10s_refused(self) -> None:
        """block_s below 10 s is refused with the reason."""
        with pytest.raises(SpecError, match="autocorrelated"):
            run_intervals(_Run(_run(3), "a"), block_s=2)


class TestCompare:
    def test_same_configuration_no_difference(self) -> None:
        """Two runs of one process (different seeds): no significant difference."""
        c = compare(_Run(_run(10), "a"), _Run(_run(11), "b"), usd_per_hour=1.0, n_boot=200)
        assert c.verdict == "no significant difference", c

    def test_clear_difference_detected_with_direction(self) -> None:
        """TTFT x2.5: TTFT figures 'worse' with an interval excluding 0; the reverse direction says 'better'."""
        a, b = _Run(_run(10), "a"), _Run(_run(11, ttft_scale=2.5), "b")
        c = compare(a, b, usd_per_hour=1.0, n_boot=200)
        row = c.table.set_index("figure").loc["ttft_p50_s"]
        assert c.verdict == "significant difference" and row["verdict"] == "worse" and row["diff_lo"] > 0
        assert compare(b, a, n_boot=200).table.set_index("figure").loc["ttft_p50_s", "verdict"] == "better"

    def test_html_report(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        """The HTML report holds the verdict, the interval table and an inline plot."""
        c = compare(_Run(_run(10, seconds=40), "a"), _Run(_run(11, seconds=40), "b"), n_boot=50)
        text = c.to_html(tmp_path / "c.html").read_text()
        assert c.verdict in text and "data:image/png;base64," in text and "TTFT p99" in text

    def test_bad_inputs(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        """A folder that is not a bundle, or an unknown figure, is a SpecError naming the fix."""
        with pytest.raises(SpecError, match="not a run bundle folder"):
            compare(tmp_path / "nope", _Run(_run(1), "b"))
        with pytest.raises(SpecError, match="figures"):
            compare(_Run(_run(1), "a"), _Run(_run(2), "b"), figures=["ttft"])
