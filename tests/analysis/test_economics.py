"""Token economics: the three $/1M-token definitions, good tokens, and the 'as if priced at' label."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops_lb.analysis.economics import good_tokens, token_cost
from mlops_lb.errors import SpecError


class TestTokenCost:
    def test_hand_worked(self) -> None:
        """One g5.xlarge hour (1.006 $) over 2M output / 1.5M good / 4M input tokens and 10k requests.

        per 1M output = 1.006 / 2 = 0.503; good = 1.006 / 1.5 = 0.67067; GKE = 1.006 / (4/4 + 2) = 0.33533;
        per 1M requests = 1.006 / 0.01 = 100.6.
        """
        c = token_cost(
            instance_type="g5.xlarge",
            region="us-east-1",
            instance_seconds=3600,
            output_tokens=2_000_000,
            good_output_tokens=1_500_000,
            input_tokens=4_000_000,
            requests=10_000,
            good_requests=7_500,
        )
        assert c.usd == pytest.approx(1.006)
        assert c.usd_per_million_output_tokens == pytest.approx(0.503)
        assert c.usd_per_million_good_output_tokens == pytest.approx(1.006 / 1.5)
        assert c.usd_per_million_tokens_gke == pytest.approx(1.006 / 3)
        assert c.usd_per_million_requests == pytest.approx(100.6)
        assert c.price_source.startswith("https://") and c.price_as_of == "2026-12-06"

    def test_good_costs_more_than_all_and_gke_less(self) -> None:
        """Fewer good tokens raise the price per good token; sharing with input lowers GKE's figure."""
        c = token_cost(
            usd_per_hour=2.0,
            instance_seconds=600,
            output_tokens=1000,
            good_output_tokens=500,
            input_tokens=8000,
            requests=20,
        )
        assert c.usd_per_million_good_output_tokens == pytest.approx(2 * c.usd_per_million_output_tokens)
        assert c.usd_per_million_tokens_gke < c.usd_per_million_output_tokens

    def test_local_says_as_if(self) -> None:
        """A local run's label says 'as if priced at <type>'; an AWS run's says 'priced at'."""
        kw = dict(instance_type="g6.xlarge", instance_seconds=60, output_tokens=100, requests=10)
        assert token_cost(local=True, **kw).label.startswith(
            "as if priced at g6.xlarge (us-east-1, 0.8048 $/h"
        )
        assert token_cost(**kw).label.startswith("priced at g6.xlarge")

    def test_request_priced_run_has_no_token_rows(self) -> None:
        """Without tokens the token figures are NaN and the rows keep only $ / 1M requests."""
        c = token_cost(instance_type="t3.small", instance_seconds=3600, output_tokens=0, requests=1_000_000)
        assert math.isnan(c.usd_per_million_output_tokens)
        assert [k for k, _ in c.rows()] == ["cost basis", "instance $", "$ / 1M requests"]
        assert c.usd_per_million_requests == pytest.approx(0.0208)

    def test_bad_input_names_the_field(self) -> None:
        """Negative seconds, an unknown type, no price at all: SpecError naming the field."""
        with pytest.raises(SpecError) as e:
            token_cost(usd_per_hour=1, instance_seconds=-1, output_tokens=1, requests=1)
        assert e.value.field == "instance_seconds"
        with pytest.raises(SpecError) as e:
            token_cost(instance_type="p4de.24xlarge", instance_seconds=1, output_tokens=1, requests=1)
        assert e.value.field == "instance_type"
        with pytest.raises(SpecError, match="give an instance type"):
            token_cost(instance_seconds=1, output_tokens=1, requests=1)


def _reqs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "error": ["", "", "", "timeout", ""],
            "ttft_s": [0.1, 0.9, 0.2, np.nan, 0.1],
            "tpot_s": [0.01, 0.01, 0.2, np.nan, np.nan],
            "latency_s": [1.0, 1.5, 5.0, 10.0, 0.2],
            "output_tokens": [10, 20, 30, 0, 1],
        }
    )


class TestGoodTokens:
    def test_bounds_and_nan(self) -> None:
        """ttft<=0.5 and tpot<=0.05: row 0 only (row 1 TTFT, row 2 TPOT, row 3 error, row 4 TPOT NaN fail)."""
        assert good_tokens(_reqs(), {"ttft_s": 0.5, "tpot_s": 0.05}) == (1, 10)

    def test_no_slo_means_every_success(self) -> None:
        """Without an SLO the good requests are the successful ones."""
        assert good_tokens(_reqs(), None) == (4, 61)

    def test_unknown_key(self) -> None:
        """A typo in the SLO names the known keys."""
        with pytest.raises(SpecError, match="known: latency_s, tpot_s, ttft_s"):
            good_tokens(_reqs(), {"ttft": 1})


class TestReportRows:
    def test_streamed_local_bundle_gets_as_if_token_rows(self) -> None:
        """The report's cost section gains $/1M output and good tokens, 'as if priced at' for a local bundle."""
        from mlops_lb.bundle import LoadedBundle
        from mlops_lb.report import _token_cost_rows

        b = LoadedBundle(path=None, spec=None, requests=_reqs(), intervals=pd.DataFrame(), metrics=pd.DataFrame(),
                         events=pd.DataFrame(), status=pd.DataFrame({"pid": [1]}))  # fmt: skip
        rows = dict(_token_cost_rows(b, {"output_tokens": 61, "requests": 5, "slo": {"ttft_s": 0.5}}, 3600,
                                     "g5.xlarge", "us-east-1"))  # fmt: skip
        assert rows["cost basis"].startswith("as if priced at g5.xlarge")
        assert float(rows["$ / 1M output tokens"]) == pytest.approx(1.006 / 61 * 1e6, rel=1e-4)
        good = float(rows["$ / 1M good output tokens (met SLO)"])
        assert good == pytest.approx(1.006 / 41 * 1e6, rel=1e-4)  # ttft <= 0.5 s, no error: rows 0, 2, 4

    def test_request_priced_bundle_unchanged(self) -> None:
        """A run without tokens adds no token rows."""
        from mlops_lb.bundle import LoadedBundle
        from mlops_lb.report import _token_cost_rows

        b = LoadedBundle(path=None, spec=None, requests=_reqs(), intervals=pd.DataFrame(), metrics=pd.DataFrame(),
                         events=pd.DataFrame())  # fmt: skip
        assert _token_cost_rows(b, {"output_tokens": 0}, 3600, "t3.small", "us-east-1") == []
