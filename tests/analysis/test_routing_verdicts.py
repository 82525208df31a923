"""The routing A/B's verdicts, both ways, on synthetic runs whose truth is known (no processes).

Each run is 50 s of requests at 8 rps with TTFTs drawn from a lognormal; a "cache-aware" run that is truly faster
must be called *worth it*, one drawn from the same distribution *not worth its tier*, a faster one that answers
503 to 5 % of its requests *bought by shedding*, and a slower one *worse*.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_lb.analysis.routing import arm_counts, recommend_routing, routing_verdicts
from mlops_lb.errors import SpecError

T0 = pd.Timestamp("2026-12-07T00:00:00", tz="UTC")
SLO = {"ttft_s": 0.6}


def _run(seed: int, *, ttft_median: float, shed: float = 0.0, n: int = 400, dur: float = 50.0) -> Any:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, dur, n))
    ttft = ttft_median * np.exp(rng.normal(0, 0.35, n))
    status = np.where(rng.uniform(size=n) < shed, 503, 200)
    failed = status != 200
    req = pd.DataFrame(
        {
            "intended_at": T0 + pd.to_timedelta(t, unit="s"),
            "ttft_s": np.where(failed, np.nan, ttft),
            "tpot_s": np.where(failed, np.nan, 0.02),
            "latency_s": np.where(failed, 0.001, ttft + 0.3),
            "status": status,
            "error": np.where(failed, "http_5xx", ""),
            "output_tokens": np.where(failed, 0, 16),
        }
    )
    summary = {"duration_s": dur, "requests": n}
    return SimpleNamespace(requests=lambda: req, summary=lambda: summary, name=f"run{seed}")


def _verdicts(cand: list[Any], base: list[Any], hits: tuple[float, float] = (0.1, 0.6)) -> Any:
    return routing_verdicts(
        {"least_outstanding_requests": base, "consistent_hash": cand},
        {"least_outstanding_requests": [hits[0]] * len(base), "consistent_hash": [hits[1]] * len(cand)},
        baseline="least_outstanding_requests",
        slo=SLO,
        n_boot=60,
    )


def test_a_truly_faster_cache_aware_policy_is_worth_it() -> None:
    base = [_run(i, ttft_median=0.5) for i in range(1)]
    cand = [_run(10 + i, ttft_median=0.25) for i in range(1)]
    rc = _verdicts(cand, base)
    assert rc.verdicts["consistent_hash"].startswith("worth it"), rc.verdicts
    assert rc.recommendation.startswith("Use consistent_hash") and "router tier" in rc.recommendation
    t = rc.table.set_index("policy")
    assert t.loc["consistent_hash", "goodput_rps"] > t.loc["least_outstanding_requests", "goodput_rps"]
    assert t.loc["consistent_hash", "goodput_rps_lo"] <= t.loc["consistent_hash", "goodput_rps"]
    assert t.loc["consistent_hash", "hit_rate"] == pytest.approx(0.6)
    assert t.loc["consistent_hash", "ttft_p99_s_lo"] < t.loc["consistent_hash", "ttft_p99_s_hi"]


def test_the_same_distribution_is_not_worth_its_tier() -> None:
    base = [_run(i, ttft_median=0.3) for i in range(1)]
    cand = [_run(20 + i, ttft_median=0.3) for i in range(1)]
    rc = _verdicts(cand, base, hits=(0.6, 0.6))
    assert rc.verdicts["consistent_hash"].startswith("not worth its tier"), rc.verdicts
    assert rc.recommendation.startswith("Stay with least_outstanding_requests")
    assert "no router tier" in rc.recommendation


def test_a_win_bought_by_shedding_is_not_recommended() -> None:
    base = [_run(i, ttft_median=0.5) for i in range(1)]
    cand = [_run(30 + i, ttft_median=0.25, shed=0.05) for i in range(1)]
    rc = _verdicts(cand, base)
    assert rc.verdicts["consistent_hash"].startswith("bought by shedding"), rc.verdicts
    assert rc.recommendation.startswith("Stay with")
    assert rc.table.set_index("policy").loc["consistent_hash", "shed_share"] == pytest.approx(0.05, abs=0.02)


def test_a_slower_policy_is_worse() -> None:
    base = [_run(i, ttft_median=0.25) for i in range(1)]
    cand = [_run(40 + i, ttft_median=0.5) for i in range(1)]
    assert _verdicts(cand, base).verdicts["consistent_hash"].startswith("worse")


def test_counts_and_bad_input() -> None:
    c = arm_counts(_run(1, ttft_median=0.2, shed=0.1))
    assert c["requests"] == 400 and c["shed"] == c["errors"] and 0.05 < c["shed_share"] < 0.15
    with pytest.raises(SpecError, match="baseline"):
        routing_verdicts({"a": [_run(1, ttft_median=0.2)]}, {}, baseline="b", slo=SLO)
    one = _verdicts([_run(3, ttft_median=0.3)], [_run(4, ttft_median=0.3)])
    assert math.isnan(one.table["hit_rate_lo"].iloc[0])  # one repeat: no interval claimed
    assert "Stay with" in recommend_routing({}, baseline="round_robin")
