"""The one metric catalogue (mlops_lb.frames.CATALOGUE) feeds the MetricFrame check, the local sampler and the
CloudWatch queries; these tests pin that each reads it rather than a list of its own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_lb.aws import FleetDimensions
from mlops_lb.aws.cloudwatch import build_queries
from mlops_lb.frames import CATALOGUE, METRIC_UNITS, check_metric_frame, metric_by_name, metric_frame
from mlops_lb.local.metrics import LOCAL_SOURCES, HistogramDelta, PeriodRecord, PeriodSampler, to_metric_frame

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DIMS = FleetDimensions.from_arns(
    load_balancer_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/d-1/50dc6c495c0c9188",
    target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/d-2/73e2d6bc24d8a067",
    asg_name="d-asg",
)


def test_names_are_unique_and_units_derive_from_the_catalogue() -> None:
    """One entry per metric; METRIC_UNITS is the catalogue's units."""
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    assert dict(METRIC_UNITS) == {m.name: m.unit for m in CATALOGUE}
    with pytest.raises(KeyError, match="not in the metric catalogue"):
        metric_by_name("Nope")


def test_local_sources_name_only_catalogue_metrics() -> None:
    """The local fleet says how it computes catalogue metrics and nothing else: a source under a name the catalogue
    lacks (a typo, a renamed metric) would never be read."""
    assert set(LOCAL_SOURCES) < {m.name for m in CATALOGUE}


def test_cloudwatch_queries_every_stat_of_every_metric_once() -> None:
    """build_queries: one group query per (metric, stat) and one per instance for metrics with an instance
    dimension, each with the catalogue's namespace."""
    queries = build_queries(DIMS, instance_ids=("i-0123456789abcdef0",))
    group = [(q.metric.name, q.stat) for q in queries if not q.target]
    assert group == [(m.name, s) for m in CATALOGUE for s in m.stats]
    per_instance = [(q.metric.name, q.dimensions) for q in queries if q.target]
    assert per_instance == [
        (m.name, ((m.instance_dimension, "i-0123456789abcdef0"),)) for m in CATALOGUE if m.instance_dimension
    ]
    conc = next(q for q in queries if q.metric.name == "ConcurrencyPerTarget")
    assert conc.to_api(60)["MetricStat"]["Metric"]["Namespace"] == "MlopsLb"
    assert conc.dimensions == (("AutoScalingGroupName", "d-asg"),)


def test_local_frame_holds_exactly_the_catalogue_metrics_with_a_local_source() -> None:
    """A busy record gives a row for every metric with a local source, with its unit and an allowed stat."""
    lat = HistogramDelta({0.01: 5.0, 0.1: 10.0, float("inf"): 10.0}, sum=0.3, count=10.0)
    rec = PeriodRecord(
        start=T0, end=T0 + timedelta(seconds=2), request_count=10, target_2xx=8, target_4xx=1, target_5xx=1,
        elb_5xx=1, healthy=2, unhealthy=0, desired=2, in_service=2, ready=2, latency=lat,
        cpu={"i-1": 50.0}, in_flight={"i-1": 1.5, "i-2": 2.5},
        cache_queries={"i-1": 100.0, "i-2": 300.0}, cache_hits={"i-1": 50.0, "i-2": 0.0},
    )  # fmt: skip
    df = to_metric_frame([rec], api_calls=0)
    check_metric_frame(df)
    assert set(df["metric"]) == set(LOCAL_SOURCES)
    conc = df[df["metric"] == "ConcurrencyPerTarget"].set_index("target")["value"]
    assert (
        conc[""] == pytest.approx(2.0) and conc["i-1"] == 1.5 and conc["i-2"] == 2.5
    )  # (1.5 + 2.5) / 2 ready
    hit = df[df["metric"] == "PrefixCacheHitRate"].set_index("target")["value"]
    assert hit[""] == pytest.approx(12.5) and hit["i-1"] == 50.0 and hit["i-2"] == 0.0  # 50 of 400 tokens


def test_sampler_averages_in_flight_over_ticks_and_counts_deltas() -> None:
    """Two ticks with 4 then 0 sessions on a server average to 2 in flight; request counters are deltas, and a
    counter that goes down (a new HAProxy) counts from zero."""

    class Row:
        def __init__(self, proxy: str, server: str, **v: int) -> None:
            self.proxy, self.server = proxy, server
            self.is_server = server not in ("FRONTEND", "BACKEND")
            self.req_tot, self.hrsp_5xx = v.get("req_tot", 0), v.get("hrsp_5xx", 0)
            self.stot, self.hrsp_2xx, self.hrsp_4xx = (
                v.get("stot", 0),
                v.get("hrsp_2xx", 0),
                v.get("hrsp_4xx", 0),
            )
            self.scur, self._qcur = v.get("scur", 0), v.get("qcur", 0)

        def int(self, name: str) -> int:
            return self._qcur if name == "qcur" else 0

    s = PeriodSampler(frontend="alb", backends=("tg", "tg_open"))
    s.add_stats([Row("alb", "FRONTEND", req_tot=100), Row("tg", "i-1", stot=50, hrsp_2xx=50, scur=3, qcur=1)])
    s.add_stats([Row("alb", "FRONTEND", req_tot=110), Row("tg", "i-1", stot=60, hrsp_2xx=60, scur=0)])
    rec = s.end_period(
        PeriodRecord(start=T0, end=T0, healthy=1, unhealthy=0, desired=1, in_service=1, ready=1)
    )
    assert rec.in_flight == {"i-1": 2.0} and rec.concurrency == 2.0
    # The first sight of a counter has no baseline: counted whole (as the fleet did), then deltas.
    assert rec.request_count == 110 and rec.target_2xx == 60
    s.add_stats([Row("alb", "FRONTEND", req_tot=5)])  # a restarted HAProxy counts from zero
    rec2 = s.end_period(
        PeriodRecord(start=T0, end=T0, healthy=1, unhealthy=0, desired=1, in_service=1, ready=1)
    )
    assert rec2.request_count == 5 and rec2.in_flight == {}


@pytest.mark.parametrize(
    ("row", "words"),
    [
        (
            {"metric": "RequestCount", "stat": "Average", "unit": "Count", "target": ""},
            "catalogue has ['Sum']",
        ),
        ({"metric": "RequestCount", "stat": "Sum", "unit": "Count", "target": "i-1"}, "per-target rows"),
        (
            {"metric": "Latency", "stat": "Sum", "unit": "Count", "target": ""},
            "outside the CloudWatch catalogue",
        ),
        ({"metric": "RequestCount", "stat": "Sum", "unit": "Seconds", "target": ""}, "must be Count"),
    ],
)
def test_check_metric_frame_enforces_the_catalogue(row: dict[str, str], words: str) -> None:
    """Unknown metrics, stats outside the catalogue, wrong units and per-target rows of group metrics fail."""
    df = metric_frame([{"timestamp": T0, "value": 1.0, **row}])
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_metric_frame(df)


def test_elb_4xx_is_read_by_load_balancer_and_only_on_aws() -> None:
    """HTTPCode_ELB_4XX_Count (the ALB's own 4xx, 460 = client closed first): one Sum query by LoadBalancer; a
    valid MetricFrame row; no local source, so the local frame leaves it out rather than reporting 0."""
    (q,) = [q for q in build_queries(DIMS) if q.metric.name == "HTTPCode_ELB_4XX_Count"]
    stat = q.to_api(60)["MetricStat"]
    assert stat["Stat"] == "Sum" and stat["Metric"]["Namespace"] == "AWS/ApplicationELB"
    assert stat["Metric"]["Dimensions"] == [{"Name": "LoadBalancer", "Value": "app/d-1/50dc6c495c0c9188"}]
    row = {"timestamp": T0, "metric": "HTTPCode_ELB_4XX_Count", "stat": "Sum", "value": 3.0, "target": ""}
    check_metric_frame(metric_frame([{**row, "unit": "Count"}]))
    with pytest.raises(ValueError, match="must be Count"):
        check_metric_frame(metric_frame([{**row, "unit": "Seconds"}]))
    assert "HTTPCode_ELB_4XX_Count" not in LOCAL_SOURCES
