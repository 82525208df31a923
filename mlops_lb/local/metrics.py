"""Per-period metric records of the local fleet and their conversion to a CloudWatch-shaped MetricFrame.

Counters come from HAProxy (``show stat`` deltas, accumulated every controller tick so a deleted server loses at
most one tick), response times from the workers' Prometheus histograms (bucket deltas merged across workers, so
percentiles over longer periods are computed from merged buckets, not averaged). As on CloudWatch, a count metric
is *missing* (not 0) in a period where nothing was counted.

Example::

    h = parse_duration_histogram(prometheus_text)      # HistogramDelta of the non-health paths
    rec = PeriodRecord(start=t0, end=t1, ...)
    to_metric_frame([rec], group=1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HistogramDelta",
    "PeriodRecord",
    "histogram_quantile",
    "parse_duration_histogram",
    "to_metric_frame",
]

DURATION_METRIC = "mlops_request_duration_seconds"
SKIP_PATHS = frozenset({"/health", "/metrics"})


@dataclass
class HistogramDelta:
    """Cumulative bucket counts (upper bound -> count), sum and count of a latency histogram."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0

    def minus(self, older: HistogramDelta | None) -> HistogramDelta:
        """This minus ``older``; a counter that went backwards (restarted worker) counts from zero."""
        if older is None or self.count < older.count:
            return HistogramDelta(dict(self.buckets), self.sum, self.count)
        return HistogramDelta(
            {le: c - older.buckets.get(le, 0.0) for le, c in self.buckets.items()},
            self.sum - older.sum,
            self.count - older.count,
        )

    def add(self, other: HistogramDelta) -> None:
        for le, c in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + c
        self.sum += other.sum
        self.count += other.count


def parse_duration_histogram(text: str) -> HistogramDelta:
    """The request-duration histogram of a worker's /metrics text, summed over every non-health path."""
    from prometheus_client.parser import text_string_to_metric_families

    h = HistogramDelta()
    for fam in text_string_to_metric_families(text):
        if fam.name != DURATION_METRIC:
            continue
        for s in fam.samples:
            if s.labels.get("path") in SKIP_PATHS:
                continue
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                h.buckets[le] = h.buckets.get(le, 0.0) + s.value
            elif s.name.endswith("_sum"):
                h.sum += s.value
            elif s.name.endswith("_count"):
                h.count += s.value
    return h


def histogram_quantile(q: float, h: HistogramDelta) -> float | None:
    """Prometheus-style quantile: linear interpolation inside the bucket that holds rank ``q x count``."""
    if h.count <= 0:
        return None
    rank = q * h.count
    prev_le, prev_c = 0.0, 0.0
    for le in sorted(h.buckets):
        c = h.buckets[le]
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


@dataclass
class PeriodRecord:
    """What one local period measured (one CloudWatch datapoint per metric)."""

    start: datetime
    end: datetime
    request_count: int = 0
    target_2xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    elb_5xx: int = 0
    healthy: int = 0
    unhealthy: int = 0
    desired: int = 0
    in_service: int = 0
    ready: int = 0
    latency: HistogramDelta = field(default_factory=HistogramDelta)
    cpu: dict[str, float] = field(default_factory=dict)
    per_target: dict[str, int] = field(default_factory=dict)


def _rows_for(group: Sequence[PeriodRecord]) -> list[dict[str, object]]:
    ts = group[0].start
    n = len(group)
    rows: list[dict[str, object]] = []

    def add(metric: str, stat: str, value: float, unit: str, target: str = "") -> None:
        rows.append(
            {
                "timestamp": ts,
                "metric": metric,
                "stat": stat,
                "value": float(value),
                "unit": unit,
                "target": target,
            }
        )

    rc = sum(r.request_count for r in group)
    counts = {
        "RequestCount": rc,
        "HTTPCode_Target_2XX_Count": sum(r.target_2xx for r in group),
        "HTTPCode_Target_4XX_Count": sum(r.target_4xx for r in group),
        "HTTPCode_Target_5XX_Count": sum(r.target_5xx for r in group),
        "HTTPCode_ELB_5XX_Count": sum(r.elb_5xx for r in group),
    }
    for metric, count in counts.items():
        if count:  # CloudWatch leaves count metrics out when nothing was counted
            add(metric, "Sum", count, "Count")
    if rc:
        # RequestCountPerTarget: requests over the ready targets of each period, summed (what scaling tracks).
        add("RequestCountPerTarget", "Sum", sum(r.request_count / max(r.ready, 1) for r in group), "Count")
    lat = HistogramDelta()
    for r in group:
        lat.add(r.latency)
    if lat.count > 0:
        add("TargetResponseTime", "Average", lat.sum / lat.count, "Seconds")
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            quantile = histogram_quantile(q, lat)
            if quantile is not None:
                add("TargetResponseTime", name, quantile, "Seconds")
    add("HealthyHostCount", "Average", sum(r.healthy for r in group) / n, "Count")
    add("UnHealthyHostCount", "Average", sum(r.unhealthy for r in group) / n, "Count")
    add("GroupDesiredCapacity", "Average", sum(r.desired for r in group) / n, "None")
    add("GroupInServiceInstances", "Average", sum(r.in_service for r in group) / n, "None")
    cpu: dict[str, list[float]] = {}
    for r in group:
        for t, pct in r.cpu.items():
            cpu.setdefault(t, []).append(pct)
    for t, vs in cpu.items():
        add("CPUUtilization", "Average", sum(vs) / len(vs), "Percent", t)
    return rows


def to_metric_frame(records: Iterable[PeriodRecord], *, group: int = 1, **attrs: object) -> pd.DataFrame:
    """MetricFrame of ``records`` (oldest first), ``group`` consecutive local periods per datapoint."""
    from ..frames import metric_frame

    recs = list(records)
    rows: list[dict[str, object]] = []
    for i in range(0, len(recs), max(1, group)):
        rows.extend(_rows_for(recs[i : i + max(1, group)]))
    return metric_frame(rows, **attrs)
