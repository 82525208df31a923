"""Scale-out's price in missed SLOs, on a hand-made timeline with known misses per phase."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_lb.analysis.slo_cost import LATENCY_MODEL, scale_out_slo_cost
from mlops_lb.errors import SpecError

T0 = pd.Timestamp("2026-12-06T12:00:00", tz="UTC")


def _events() -> pd.DataFrame:
    rows = [
        (0, "launch", "t1"), (1, "healthy", "t1"),  # the initial target
        (20, "scale_out", ""), (21, "launch", "t2"), (40, "healthy", "t2"),
    ]  # fmt: skip
    return pd.DataFrame(
        [
            {"timestamp": T0 + pd.Timedelta(seconds=s), "kind": k, "target": tg, "detail": ""}
            for s, k, tg in rows
        ]
    )


def _requests() -> pd.DataFrame:
    sec = np.arange(0, 60, 0.5)  # 2 rps for 60 s
    # misses: 10 s before the decision (10..20 s), all of decision->healthy (20..40 s), none after
    ttft = np.where((sec >= 10) & (sec < 40), 2.0, 0.1)
    return pd.DataFrame({
        "intended_at": T0 + pd.to_timedelta(sec, unit="s"), "done_at": T0 + pd.to_timedelta(sec + 0.5, unit="s"),
        "error": "", "ttft_s": ttft, "output_tokens": 10, "target": np.where(sec >= 41, "t2", "t1"),
    })  # fmt: skip


def test_phases_counted() -> None:
    """Before: 20 misses (10..20 s), decision->healthy: 40 (20..40 s), after: 0; tokens x10."""
    r = scale_out_slo_cost(_events(), _requests(), slo={"ttft_s": 1.0}).iloc[0]
    assert (r["missed_before"], r["missed_decision_to_healthy"], r["missed_after"]) == (20, 40, 0)
    assert r["missed_decision_to_healthy_tokens"] == 400 and r["requests_decision_to_healthy"] == 40
    assert r["latency_model"] == LATENCY_MODEL


def test_savings_under_the_model() -> None:
    """A warm pool healthy 5 s after the decision saves the misses of 25..40 s (30); deciding 6 s earlier saves
    those of 14..20 s (12); without the options the columns are NaN."""
    r = scale_out_slo_cost(_events(), _requests(), slo={"ttft_s": 1.0}, warm_healthy_s=5, earlier_s=6).iloc[0]
    assert r["saved_by_warm_pool"] == 30 and r["saved_by_earlier_decision"] == 12
    plain = scale_out_slo_cost(_events(), _requests(), slo={"ttft_s": 1.0}).iloc[0]
    assert np.isnan(plain["saved_by_warm_pool"])


def test_needs_an_slo() -> None:
    """Without an SLO there is nothing to miss: SpecError."""
    with pytest.raises(SpecError):
        scale_out_slo_cost(_events(), _requests(), slo={})
