"""Shared contract assertions: the local fleet and the CloudWatch readers must produce interchangeable frames.

tests/ is not a package: load this file by path (see tests/local/test_metric_contract.py, ``_load_contract``).

Example (an AWS reader test)::

    assert_metric_frame_contract = _load_contract().assert_metric_frame_contract
    assert_metric_frame_contract(read_fleet_metrics(...), expect=("RequestCount", "TargetResponseTime"))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from mlops_lb.frames import CATALOGUE, check_metric_frame

__all__ = ["EXPECTED_STATS", "assert_metric_frame_contract"]

# The statistics each metric is read with, on both backends: the catalogue's.
EXPECTED_STATS: dict[str, set[str]] = {m.name: set(m.stats) for m in CATALOGUE}
_UNITS = {m.name: m.unit for m in CATALOGUE}
_PER_TARGET = {m.name for m in CATALOGUE if m.per_target}


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
        assert set(df.loc[df["metric"] == metric, "unit"]) == {_UNITS[str(metric)]}
    assert (df["value"] >= 0).all(), "metric values are counts, seconds or percents: never negative"
    targeted = set(df.loc[df["target"] != "", "metric"])
    assert targeted <= _PER_TARGET, f"per-target rows for group-wide metrics {sorted(targeted - _PER_TARGET)}"
    tr = df[df["metric"] == "TargetResponseTime"].pivot_table(
        index="timestamp", columns="stat", values="value"
    )
    if {"p50", "p90", "p99"} <= set(tr.columns):
        ordered = tr.dropna(subset=["p50", "p90", "p99"])
        assert ((ordered["p50"] <= ordered["p90"] + 1e-12) & (ordered["p90"] <= ordered["p99"] + 1e-12)).all()
    assert isinstance(df.attrs["api_calls"], int) and isinstance(df.attrs["metrics_requested"], int)
