"""The local fleet's period sampler, its per-period records, and their conversion to a CloudWatch-shaped MetricFrame.

:class:`PeriodSampler` turns what the controller sees into one :class:`PeriodRecord` per local period: counters
from HAProxy (``show stat`` deltas, accumulated every controller tick so a deleted server loses at most one tick),
in-flight requests per target (HAProxy's ``scur`` + ``qcur`` sampled every tick, averaged over the period), response
times from the workers' Prometheus histograms (bucket deltas merged across workers, so percentiles over longer
periods come from merged buckets, not averages) and CPU per target (psutil). What each metric *is* (unit,
statistics, dimensions) is the catalogue's business (:data:`mlops_lb.frames.CATALOGUE`); how this fleet computes
it from a group of records is :data:`LOCAL_SOURCES`, keyed by the catalogue's names. As on CloudWatch, a count
metric is *missing* (not 0) in a period where nothing was counted.

Example::

    sampler = PeriodSampler(frontend="alb", backends=("tg", "tg_open"))
    sampler.add_stats(api.show_stat())                 # every tick
    observed = PeriodRecord(start=t0, end=t1, healthy=2, unhealthy=0, desired=2, in_service=2, ready=2)
    rec = sampler.end_period(observed)
    to_metric_frame([rec], group=1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LOCAL_SOURCES",
    "HistogramDelta",
    "PeriodRecord",
    "PeriodSampler",
    "histogram_quantile",
    "parse_duration_histogram",
    "parse_prefix_cache",
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


# vLLM's prefix-cache counters as they appear on the wire (prometheus_client adds _total to a counter's name).
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"


def parse_prefix_cache(text: str) -> tuple[float, float] | None:
    """(queried tokens, hit tokens) from a Prometheus text page, summed over label sets; None when absent.

    Example::

        parse_prefix_cache('vllm:prefix_cache_queries_total{model_name="m"} 90\nvllm:prefix_cache_hits_total 32')
        # (90.0, 32.0)
    """
    q = h = 0.0
    seen = False
    for line in text.splitlines():
        if not line.startswith("vllm:prefix_cache_"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if name == PREFIX_CACHE_QUERIES:
            q += value
            seen = True
        elif name == PREFIX_CACHE_HITS:
            h += value
    return (q, h) if seen else None


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


@dataclass(kw_only=True)
class PeriodRecord:
    """What one local period measured (one CloudWatch datapoint per metric).

    The controller observes the period's span and the target counts itself (required); the
    :class:`PeriodSampler` fills in the request counters it accumulated from HAProxy.
    """

    start: datetime
    end: datetime
    healthy: int
    unhealthy: int
    desired: int
    in_service: int
    ready: int
    request_count: int = 0
    target_2xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    elb_5xx: int = 0
    latency: HistogramDelta = field(default_factory=HistogramDelta)
    cpu: dict[str, float] = field(default_factory=dict)
    per_target: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)  # average in-flight requests per target
    # LLM targets' prefix cache over the period, in prompt tokens (vLLM's counters): queried and found cached.
    cache_queries: dict[str, float] = field(default_factory=dict)
    cache_hits: dict[str, float] = field(default_factory=dict)

    @property
    def concurrency(self) -> float:
        """In-flight requests of the period summed over targets: the group total that concurrency tracking uses."""
        return float(sum(self.in_flight.values()))


@dataclass
class _Counts:
    request_count: int = 0
    frontend_5xx: int = 0
    target_2xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    per_target: dict[str, int] = field(default_factory=dict)
    in_flight_sum: dict[str, float] = field(default_factory=dict)
    ticks: int = 0


class PeriodSampler:
    """Accumulates HAProxy's ``show stat`` rows tick by tick and closes one :class:`PeriodRecord` per period.

    ``frontend`` is the ALB's frontend; ``backends`` the target group's backends (checked and fail-open), whose
    server rows are the targets. Not thread-safe: the fleet's controller calls it under its lock.

    Example::

        s = PeriodSampler(frontend="alb", backends=("tg", "tg_open"))
        s.add_stats(rows); s.reset_counters()   # after a balancer restart: its counters start from zero
    """

    def __init__(self, *, frontend: str, backends: Sequence[str]) -> None:
        self.frontend = frontend
        self.backends = tuple(backends)
        self._last: dict[tuple[str, str], tuple[int, ...]] = {}
        self._counts = _Counts()
        self._hist_last: dict[str, HistogramDelta] = {}
        self._cpu_procs: dict[str, Any] = {}
        self._cache_last: dict[str, tuple[float, float]] = {}
        self._cache: dict[str, tuple[float, float]] = {}

    def scrape(
        self, targets: Sequence[tuple[str, Any]], *, metrics_path: str | None
    ) -> tuple[HistogramDelta, dict[str, float]]:
        """Latency histogram delta merged over ``targets`` ((id, WorkerProcess) pairs) and CPU percent per target.

        ``metrics_path`` None skips the histogram (a user's server that does not serve ours); CPU works for any
        process. A target's first CPU reading only sets psutil's baseline.
        """
        import psutil

        total = HistogramDelta()
        cpu: dict[str, float] = {}
        for tid, worker in targets:
            text = None if metrics_path is None else worker.scrape_metrics(0.3, metrics_path)
            if text is not None:
                try:
                    h = parse_duration_histogram(text)
                except ValueError:
                    h = None
                if h is not None:
                    total.add(h.minus(self._hist_last.get(tid)))
                    self._hist_last[tid] = h
                self._add_cache(tid, text)
            try:
                p = self._cpu_procs.get(tid)
                if p is None:
                    p = self._cpu_procs[tid] = psutil.Process(worker.pid)
                    p.cpu_percent(None)
                else:
                    cpu[tid] = float(p.cpu_percent(None))
            except psutil.Error:
                pass
        return total, cpu

    def _add_cache(self, tid: str, text: str) -> None:
        """Accumulate a target's prefix-cache counter deltas (an LLM server's; absent elsewhere) for the period."""
        got = parse_prefix_cache(text)
        if got is None:
            return
        old = self._cache_last.get(tid)
        self._cache_last[tid] = got
        # A counter that went down belongs to a restarted server: count it from zero.
        dq, dh = (got[0] - old[0], got[1] - old[1]) if old and got[0] >= old[0] and got[1] >= old[1] else got
        q, h = self._cache.get(tid, (0.0, 0.0))
        self._cache[tid] = (q + dq, h + dh)

    def reset_counters(self) -> None:
        """Forget the last cumulative counters (a new HAProxy process counts from zero)."""
        self._last.clear()

    def _delta(self, key: tuple[str, str], vals: tuple[int, ...]) -> tuple[int, ...]:
        old = self._last.get(key)
        self._last[key] = vals
        # A counter that went down belongs to a new process or server: count it from zero.
        return tuple(
            v - o if old is not None and v >= o else v for v, o in zip(vals, old or vals, strict=True)
        )

    def add_stats(self, rows: Sequence[Any]) -> None:
        """Add one tick's ``show stat`` rows (StatRow): request and status counts, and an in-flight sample."""
        c = self._counts
        in_flight: dict[str, float] = {}
        for r in rows:
            if r.proxy == self.frontend and r.server == "FRONTEND":
                req, fe5xx = self._delta((r.proxy, r.server), (r.req_tot, r.hrsp_5xx))
                c.request_count += req
                c.frontend_5xx += fe5xx
            elif r.proxy in self.backends and r.is_server:
                stot, r2, r4, r5 = self._delta(
                    (r.proxy, r.server), (r.stot, r.hrsp_2xx, r.hrsp_4xx, r.hrsp_5xx)
                )
                c.per_target[r.server] = c.per_target.get(r.server, 0) + stot
                c.target_2xx += r2
                c.target_4xx += r4
                c.target_5xx += r5
                # scur: requests being served; qcur: waiting in HAProxy for this server. Both are in flight.
                in_flight[r.server] = in_flight.get(r.server, 0.0) + r.scur + r.int("qcur")
        c.ticks += 1
        for t, n in in_flight.items():
            c.in_flight_sum[t] = c.in_flight_sum.get(t, 0.0) + n

    def end_period(self, observed: PeriodRecord) -> PeriodRecord:
        """Close the period: ``observed`` (what the controller read itself: start, end, health and capacity counts,
        latency, CPU) with the counters accumulated since the last call filled in; then start afresh."""
        c, self._counts = self._counts, _Counts()
        cache, self._cache = self._cache, {}
        ticks = max(c.ticks, 1)
        return dataclasses.replace(
            observed,
            request_count=c.request_count,
            target_2xx=c.target_2xx,
            target_4xx=c.target_4xx,
            target_5xx=c.target_5xx,
            elb_5xx=max(0, c.frontend_5xx - c.target_5xx),
            per_target=c.per_target,
            in_flight={t: v / ticks for t, v in c.in_flight_sum.items()},
            cache_queries={t: q for t, (q, _) in cache.items()},
            cache_hits={t: h for t, (_, h) in cache.items()},
        )


# --------------------------------------------------------------------------- how this fleet computes each metric
# (stat, value, target) rows of one datapoint, from a group of consecutive period records (oldest first).
LocalRows = Callable[[Sequence[Any]], list[tuple[str, float, str]]]


def _local_count(attr: str) -> LocalRows:
    def rows(group: Sequence[Any]) -> list[tuple[str, float, str]]:
        total = sum(getattr(r, attr) for r in group)
        return [("Sum", float(total), "")] if total else []  # CloudWatch: missing, not 0

    return rows


def _local_gauge(attr: str) -> LocalRows:
    def rows(group: Sequence[Any]) -> list[tuple[str, float, str]]:
        return [("Average", sum(getattr(r, attr) for r in group) / len(group), "")]

    return rows


def _local_request_count_per_target(group: Sequence[Any]) -> list[tuple[str, float, str]]:
    # Requests over the ready targets of each period, summed: what target tracking compares with its target.
    if not sum(r.request_count for r in group):
        return []
    return [("Sum", sum(r.request_count / max(r.ready, 1) for r in group), "")]


def _local_response_time(group: Sequence[Any]) -> list[tuple[str, float, str]]:
    lat = HistogramDelta()
    for r in group:
        lat.add(r.latency)
    if lat.count <= 0:
        return []
    out = [("Average", lat.sum / lat.count, "")]
    for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        value = histogram_quantile(q, lat)
        if value is not None:
            out.append((name, value, ""))
    return out


def _per_target_average(group: Sequence[Any], attr: str) -> list[tuple[str, float, str]]:
    values: dict[str, list[float]] = {}
    for r in group:
        for t, v in getattr(r, attr).items():
            values.setdefault(t, []).append(v)
    return [("Average", sum(vs) / len(vs), t) for t, vs in values.items()]


def _local_cpu(group: Sequence[Any]) -> list[tuple[str, float, str]]:
    return _per_target_average(group, "cpu")


def _local_concurrency(group: Sequence[Any]) -> list[tuple[str, float, str]]:
    # Group row: in-flight requests (averaged over each period, summed over targets) per ready target, what
    # target tracking on concurrency compares with its target; per-target rows: each target's own average.
    group_value = sum(sum(r.in_flight.values()) / max(r.ready, 1) for r in group) / len(group)
    return [("Average", group_value, ""), *_per_target_average(group, "in_flight")]


def _local_prefix_cache_hit_rate(group: Sequence[Any]) -> list[tuple[str, float, str]]:
    # Hit tokens over queried tokens (vLLM's definition of the hit rate), per target and for the group; a period
    # with no query has no datapoint (no rate), as a count metric would be missing.
    q: dict[str, float] = {}
    h: dict[str, float] = {}
    for r in group:
        for t, v in r.cache_queries.items():
            q[t] = q.get(t, 0.0) + v
        for t, v in r.cache_hits.items():
            h[t] = h.get(t, 0.0) + v
    total = sum(q.values())
    if total <= 0:
        return []
    rows = [("Average", 100.0 * sum(h.values()) / total, "")]
    rows += [("Average", 100.0 * h.get(t, 0.0) / v, t) for t, v in q.items() if v > 0]
    return rows


# The catalogue metrics this fleet measures, by their catalogue name; the others (ELB 4xx, connection counts,
# pending/terminating instances) have no local counterpart and are left out of its frames, not reported as 0.
LOCAL_SOURCES: Mapping[str, LocalRows] = {
    "RequestCount": _local_count("request_count"),
    "TargetResponseTime": _local_response_time,
    "HTTPCode_Target_2XX_Count": _local_count("target_2xx"),
    "HTTPCode_Target_4XX_Count": _local_count("target_4xx"),
    "HTTPCode_Target_5XX_Count": _local_count("target_5xx"),
    "HTTPCode_ELB_5XX_Count": _local_count("elb_5xx"),
    "HealthyHostCount": _local_gauge("healthy"),
    "UnHealthyHostCount": _local_gauge("unhealthy"),
    "RequestCountPerTarget": _local_request_count_per_target,
    "GroupDesiredCapacity": _local_gauge("desired"),
    "GroupInServiceInstances": _local_gauge("in_service"),
    "CPUUtilization": _local_cpu,
    "ConcurrencyPerTarget": _local_concurrency,
    "PrefixCacheHitRate": _local_prefix_cache_hit_rate,
}


def _rows_for(group: Sequence[PeriodRecord]) -> list[dict[str, object]]:
    from ..frames import CATALOGUE

    ts = group[0].start
    return [
        {
            "timestamp": ts,
            "metric": m.name,
            "stat": stat,
            "value": float(value),
            "unit": m.unit,
            "target": target,
        }
        for m in CATALOGUE
        if m.name in LOCAL_SOURCES
        for stat, value, target in LOCAL_SOURCES[m.name](group)
    ]


def to_metric_frame(records: Iterable[PeriodRecord], *, group: int = 1, **attrs: object) -> pd.DataFrame:
    """MetricFrame of ``records`` (oldest first), ``group`` consecutive local periods per datapoint."""
    from ..frames import metric_frame

    recs = list(records)
    rows: list[dict[str, object]] = []
    for i in range(0, len(recs), max(1, group)):
        rows.extend(_rows_for(recs[i : i + max(1, group)]))
    return metric_frame(rows, **attrs)
