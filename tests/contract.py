"""Shared contract assertions: the local fleet and the CloudWatch readers must produce interchangeable frames.

tests/ is not a package: load this file by path (see tests/local/test_metric_contract.py, ``_load_contract``).

Example (an AWS reader test)::

    assert_metric_frame_contract = _load_contract().assert_metric_frame_contract
    assert_metric_frame_contract(read_fleet_metrics(...), expect=("RequestCount", "TargetResponseTime"))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from mlops_lb.frames import METRIC_UNITS, check_metric_frame

__all__ = ["EXPECTED_STATS", "assert_metric_frame_contract"]

# The statistic each metric is read with, on both backends.
EXPECTED_STATS: dict[str, set[str]] = {
    "RequestCount": {"Sum"},
    "RequestCountPerTarget": {"Sum"},
    "TargetResponseTime": {"Average", "p50", "p90", "p99"},
    "HTTPCode_Target_2XX_Count": {"Sum"},
    "HTTPCode_Target_4XX_Count": {"Sum"},
    "HTTPCode_Target_5XX_Count": {"Sum"},
    "HTTPCode_ELB_5XX_Count": {"Sum"},
    # Minimum shows a dip that the period's Average hides (issue 6 reads both).
    "HealthyHostCount": {"Average", "Minimum"},
    "UnHealthyHostCount": {"Average", "Minimum"},
    "GroupDesiredCapacity": {"Average"},
    "GroupInServiceInstances": {"Average"},
    "CPUUtilization": {"Average"},
}


def assert_metric_frame_contract(df: pd.DataFrame, *, expect: Iterable[str] = ()) -> None:
    """Assert ``df`` is a valid MetricFrame, uses the agreed stats and units, and holds the ``expect`` metrics."""
    check_metric_frame(df)
    present = set(df["metric"])
    missing = set(expect) - present
    assert not missing, f"MetricFrame lacks {sorted(missing)} (has {sorted(present)})"
    for metric, stats in df.groupby("metric")["stat"]:
        allowed = EXPECTED_STATS.get(str(metric))
        if allowed is not None:
            assert set(stats) <= allowed, (
                f"{metric} read with {sorted(set(stats) - allowed)}; agreed {sorted(allowed)}"
            )
        assert set(df.loc[df["metric"] == metric, "unit"]) == {METRIC_UNITS[str(metric)]}
    assert (df["value"] >= 0).all(), "metric values are counts, seconds or percents: never negative"
    counts = df[df["unit"] == "Count"]
    assert (counts["target"] == "").all() or set(counts["metric"]) <= {
        "RequestCountPerTarget",
        "RequestCount",
    }
    tr = df[df["metric"] == "TargetResponseTime"].pivot_table(
        index="timestamp", columns="stat", values="value"
    )
    if {"p50", "p90", "p99"} <= set(tr.columns):
        ordered = tr.dropna(subset=["p50", "p90", "p99"])
        assert ((ordered["p50"] <= ordered["p90"] + 1e-12) & (ordered["p90"] <= ordered["p99"] + 1e-12)).all()
    assert isinstance(df.attrs["api_calls"], int) and isinstance(df.attrs["metrics_requested"], int)
