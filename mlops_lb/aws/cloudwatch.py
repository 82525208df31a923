"""CloudWatch readers: a whole fleet's metrics as one MetricFrame, in the fewest GetMetricData calls.

Facts this module keeps (DESIGN §4): GetMetricData takes at most 500 queries and returns at most 100,800
points a call (more pages come with NextToken); the period must be a multiple of 60 s for data up to 15 days
old, 300 s up to 63 days and 3600 s beyond; ALB dimensions are ARN suffixes; count metrics are *missing* (not
0) in minutes when no request flowed; percentiles (``p99``) work for TargetResponseTime.

Example::

    import mlops_lb as ml
    out = fleet.outputs()
    df = ml.aws.read_fleet_metrics(load_balancer_arn=out["alb_arn"], target_group_arn=out["target_group_arn"],
                                   asg_name=out["asg_name"], start=t0, end=t1)
    df.attrs["api_calls"], df.attrs["metrics_requested"]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import MetricsError
from ..frames import CATALOGUE, MetricDef, events_frame, metric_frame
from ._arns import FleetDimensions
from ._boto import client, metrics_error

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CATALOGUE",
    "MAX_POINTS_PER_CALL",
    "MAX_QUERIES_PER_CALL",
    "MetricDef",
    "build_queries",
    "choose_period",
    "read_fleet_metrics",
    "read_scaling_activities",
    "read_target_health",
]

log = logging.getLogger(__name__)

MAX_QUERIES_PER_CALL = 500
MAX_POINTS_PER_CALL = 100_800

# The metrics, their statistics, namespaces and dimensions: mlops_lb.frames.CATALOGUE, shared with the local fleet
# and the MetricFrame contract (re-exported here with MetricDef for the readers' users).


@dataclass(frozen=True)
class _Query:
    id: str
    metric: MetricDef
    stat: str
    dimensions: tuple[tuple[str, str], ...]
    target: str

    def to_api(self, period: int) -> dict[str, Any]:
        return {
            "Id": self.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.metric.namespace,
                    "MetricName": self.metric.name,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
                },
                "Period": period,
                "Stat": self.stat,
            },
            "ReturnData": True,
        }


def build_queries(dims: FleetDimensions, instance_ids: Sequence[str] = ()) -> list[_Query]:
    """Every (metric, stat, target) series of one fleet, as GetMetricData queries with ids ``q0, q1, ...``."""
    lb = (("LoadBalancer", dims.load_balancer),)
    tg_lb = (("TargetGroup", dims.target_group), ("LoadBalancer", dims.load_balancer))
    asg = (("AutoScalingGroupName", dims.asg_name),)
    by_kind = {"lb": lb, "tg_lb": tg_lb, "asg": asg}
    out: list[_Query] = []
    for m in CATALOGUE:
        for stat in m.stats:
            out.append(_Query(f"q{len(out)}", m, stat, by_kind[m.dimensions], ""))
    for m in CATALOGUE:
        if m.instance_dimension is None:
            continue
        for iid in dict.fromkeys(instance_ids):  # keep order, drop repeats
            out.append(_Query(f"q{len(out)}", m, m.stats[0], ((m.instance_dimension, iid),), iid))
    return out


def _utc(value: Any, name: str) -> datetime:
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise MetricsError(f"{name} must be a datetime (got {value!r})", code="InvalidParameter")
    # Naive datetimes are read as UTC: CloudWatch's clock, and what a notebook user almost always means.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _base_period(start: datetime, now: datetime) -> int:
    age = now - start
    if age <= timedelta(days=15):
        return 60
    if age <= timedelta(days=63):
        return 300
    return 3600


def choose_period(
    start: datetime,
    end: datetime,
    *,
    period_s: float | None = None,
    n_queries: int = 1,
    now: datetime | None = None,
) -> int:
    """A valid GetMetricData period (seconds) for the window ``start..end``.

    The period must be a multiple of 60 s while ``start`` is at most 15 days old, of 300 s up to 63 days and of
    3600 s beyond. With ``period_s=None`` the smallest valid period that keeps one call of ``n_queries`` series
    within 100,800 points is chosen; an explicit invalid ``period_s`` raises MetricsError saying which would do.

    Example::

        choose_period(now - timedelta(hours=1), now)                  # 60
        choose_period(now - timedelta(days=15), now, n_queries=22)    # 300: 22 x 4320 points fit one call
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    now = _utc(now, "now") if now is not None else datetime.now(timezone.utc)
    if end <= start:
        raise MetricsError(
            f"end must be after start (got start={start.isoformat()}, end={end.isoformat()})",
            code="InvalidParameter",
            hint="pass a window such as start=now-1h, end=now",
        )
    base = _base_period(start, now)
    if period_s is not None:
        if (
            isinstance(period_s, bool)
            or not isinstance(period_s, (int, float))
            or period_s <= 0
            or period_s != int(period_s)
            or int(period_s) % base
        ):
            raise MetricsError(
                f"period_s must be a multiple of {base} s for data starting {start.isoformat()} "
                f"({'<= 15 days' if base == 60 else '15-63 days' if base == 300 else '> 63 days'} old) (got {period_s!r})",
                code="InvalidParameter",
                hint=f"use period_s={base} or a multiple of it, or period_s=None",
            )
        return int(period_s)
    window = (end - start).total_seconds()
    per_series = max(1, MAX_POINTS_PER_CALL // max(1, min(n_queries, MAX_QUERIES_PER_CALL)))
    period = base * max(1, math.ceil(window / per_series / base))
    while math.ceil(window / period) > per_series:  # float edge cases
        period += base
    return period


def _aligned(start: datetime, end: datetime, period: int) -> tuple[datetime, datetime]:
    # CloudWatch returns points on period boundaries; aligning the window makes the 0-fill grid match them.
    s = math.floor(start.timestamp() / period) * period
    e = math.ceil(end.timestamp() / period) * period
    return datetime.fromtimestamp(s, timezone.utc), datetime.fromtimestamp(e, timezone.utc)


def read_fleet_metrics(
    *,
    load_balancer_arn: str,
    target_group_arn: str,
    asg_name: str,
    start: datetime | None = None,
    end: datetime | None = None,
    period_s: float | None = 60,
    instance_ids: Iterable[str] = (),
    session: Any = None,
    cloudwatch_client: Any = None,
    region: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Read the whole fleet's CloudWatch series (see :data:`CATALOGUE`) into one MetricFrame.

    ``start`` defaults to one hour before ``end`` (default: now). Queries go out in batches of at most 500,
    each batch following NextToken; ``attrs["api_calls"]`` counts the calls made, ``attrs["metrics_requested"]``
    the series requested (CloudWatch bills per metric requested). Missing count datapoints (``Sum`` of
    RequestCount, HTTPCode_*, ...) become 0; gauges stay missing. ``target`` is the instance id for per-instance
    CPU (``instance_ids``), else "".

    Example::

        df = read_fleet_metrics(load_balancer_arn=lb_arn, target_group_arn=tg_arn, asg_name="demo-asg",
                                start=datetime.now(timezone.utc) - timedelta(hours=1), end=None)
        df[df.metric == "TargetResponseTime"].pivot_table(index="timestamp", columns="stat", values="value")
    """
    dims = FleetDimensions.from_arns(
        load_balancer_arn=load_balancer_arn, target_group_arn=target_group_arn, asg_name=asg_name
    )
    now_utc = _utc(now, "now") if now is not None else datetime.now(timezone.utc)
    end_utc = _utc(end, "end") if end is not None else now_utc
    start_utc = _utc(start, "start") if start is not None else end_utc - timedelta(hours=1)
    queries = build_queries(dims, tuple(instance_ids))
    batch = min(len(queries), MAX_QUERIES_PER_CALL)
    period = choose_period(start_utc, end_utc, period_s=period_s, n_queries=batch, now=now_utc)
    a_start, a_end = _aligned(start_utc, end_utc, period)
    if cloudwatch_client is None:
        cloudwatch_client = client(
            "cloudwatch", session=session, region=region or load_balancer_arn.split(":")[3]
        )

    series: dict[str, dict[datetime, float]] = {q.id: {} for q in queries}
    calls = 0
    for i in range(0, len(queries), MAX_QUERIES_PER_CALL):
        chunk = queries[i : i + MAX_QUERIES_PER_CALL]
        request: dict[str, Any] = {
            "MetricDataQueries": [q.to_api(period) for q in chunk],
            "StartTime": a_start,
            "EndTime": a_end,
            "ScanBy": "TimestampAscending",
        }
        token: str | None = None
        while True:
            if token:
                request["NextToken"] = token
            try:
                page = cloudwatch_client.get_metric_data(**request)
            except Exception as exc:
                raise metrics_error("CloudWatch GetMetricData", exc) from exc
            calls += 1
            for res in page.get("MetricDataResults", []):
                points = series.setdefault(res["Id"], {})
                # A point repeated across pages (PartialData continuation) is kept once: the later value wins.
                for ts, v in zip(res.get("Timestamps", []), res.get("Values", []), strict=False):
                    points[_utc(ts, "timestamp")] = float(v)
                if res.get("StatusCode") not in (None, "Complete", "PartialData"):
                    log.warning(
                        "GetMetricData %s: status %s %s",
                        res["Id"],
                        res.get("StatusCode"),
                        res.get("Messages"),
                    )
            for m in page.get("Messages", []) or []:
                log.info("GetMetricData message: %s", m)
            token = page.get("NextToken")
            if not token:
                break
    log.info(
        "read %d CloudWatch series over %s..%s (period %d s) in %d call(s)",
        len(queries),
        a_start.isoformat(),
        a_end.isoformat(),
        period,
        calls,
    )

    # Only periods that have ended can be "no requests" (0); the open one may simply not be published yet.
    grid = [
        ts
        for k in range(int((a_end - a_start).total_seconds() // period))
        if (ts := a_start + timedelta(seconds=period * k)) + timedelta(seconds=period) <= now_utc
    ]
    rows: list[dict[str, Any]] = []
    for q in queries:
        points = series.get(q.id, {})
        if q.metric.count and q.stat == "Sum":
            for ts in grid:
                points.setdefault(ts, 0.0)
        unit = q.metric.unit
        rows.extend(
            {
                "timestamp": ts,
                "metric": q.metric.name,
                "stat": q.stat,
                "value": v,
                "unit": unit,
                "target": q.target,
            }
            for ts, v in points.items()
        )
    return metric_frame(
        rows,
        api_calls=calls,
        metrics_requested=len(queries),
        period_s=period,
        start=a_start.isoformat(),
        end=a_end.isoformat(),
    )


# --------------------------------------------------------------------------- scaling activities, target health
def _parse_capacity_change(cause: str) -> tuple[int, int] | None:
    import re

    m = re.search(r"desired capacity from (\d+) to (\d+)", cause)
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_scaling_activities(
    asg_name: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    session: Any = None,
    region: str | None = None,
    autoscaling_client: Any = None,
) -> pd.DataFrame:
    """The Auto Scaling group's activities as an events frame (kinds scale_out, scale_in, launch, terminate).

    A capacity change named in an activity's Cause ("changing the desired capacity from 1 to 3") becomes one
    ``scale_out``/``scale_in`` event; each launch or termination becomes a ``launch``/``terminate`` event for its
    instance. ``detail`` carries the Cause (and the status when it is not Successful).

    Example::

        read_scaling_activities("demo-asg-1a2b3c4", start=datetime.now(timezone.utc) - timedelta(hours=2))
    """
    import re

    from ._arns import check_asg_name

    check_asg_name(asg_name)
    cl = autoscaling_client or client("autoscaling", session=session, region=region)
    lo = _utc(start, "start") if start is not None else None
    hi = _utc(end, "end") if end is not None else None
    rows: list[dict[str, Any]] = []
    seen_changes: set[tuple[str, int, int]] = set()
    try:
        for page in cl.get_paginator("describe_scaling_activities").paginate(AutoScalingGroupName=asg_name):
            for act in page.get("Activities", []):
                ts = _utc(act["StartTime"], "StartTime")
                if (lo and ts < lo) or (hi and ts > hi):
                    continue
                cause = str(act.get("Cause", ""))
                desc = str(act.get("Description", ""))
                status = str(act.get("StatusCode", ""))
                detail = cause if status in ("", "Successful") else f"{status}: {cause}"
                change = _parse_capacity_change(cause)
                if change and change[0] != change[1]:
                    # One change launches several instances, each its own activity: report the decision once.
                    key = (cause.split(" changing")[0], *change)
                    if key not in seen_changes:
                        seen_changes.add(key)
                        rows.append(
                            {
                                "timestamp": ts,
                                "kind": "scale_out" if change[1] > change[0] else "scale_in",
                                "target": "",
                                "detail": f"desired {change[0]} -> {change[1]}: {cause}",
                            }
                        )
                iid = re.search(r"\b(i-[0-9a-f]{8,17})\b", desc)
                # capacity.spot: Capacity Rebalancing launches on a rebalance recommendation; without it the group
                # replaces a spot instance after EC2 interrupts it (ec2-auto-scaling-capacity-rebalancing.html). The
                # Cause names which: an extra spot_* row keeps the launch/terminate row below.
                low = cause.lower()
                spot_kind = (
                    "spot_rebalance"
                    if "rebalance recommendation" in low
                    else "spot_interrupted"
                    if "spot" in low and "interruption" in low
                    else None
                )
                if spot_kind and desc.startswith(("Launching", "Terminating")):
                    rows.append(
                        {
                            "timestamp": ts,
                            "kind": spot_kind,
                            "target": iid.group(1) if iid else "",
                            "detail": detail,
                        }
                    )
                kind = "launch" if desc.startswith("Launching") else "terminate"
                if desc.startswith(("Launching", "Terminating")):
                    rows.append(
                        {
                            "timestamp": ts,
                            "kind": kind,
                            "target": iid.group(1) if iid else "",
                            "detail": detail,
                        }
                    )
    except MetricsError:
        raise
    except Exception as exc:
        raise metrics_error("Auto Scaling DescribeScalingActivities", exc) from exc
    return events_frame(rows)


_HEALTH = {
    "initial": "initial",
    "healthy": "healthy",
    "unhealthy": "unhealthy",
    "unused": "unused",
    "draining": "draining",
    "unavailable": "unhealthy",
    "unhealthy.draining": "draining",
}


def read_target_health(
    target_group_arn: str, *, session: Any = None, region: str | None = None, elbv2_client: Any = None
) -> pd.DataFrame:
    """A snapshot of the target group's targets: target, port, health, aws_state, reason, description.

    ``health`` uses the contract's vocabulary (initial, healthy, unhealthy, draining, unused); ``aws_state``
    keeps what the ALB said.

    Example::

        read_target_health(fleet.outputs()["target_group_arn"])
    """
    import pandas as pd

    from ._arns import target_group_suffix

    target_group_suffix(target_group_arn)
    cl = elbv2_client or client("elbv2", session=session, region=region or target_group_arn.split(":")[3])
    try:
        resp = cl.describe_target_health(TargetGroupArn=target_group_arn)
    except Exception as exc:
        raise metrics_error("ELBv2 DescribeTargetHealth", exc) from exc
    rows = []
    for d in resp.get("TargetHealthDescriptions", []):
        th = d.get("TargetHealth", {})
        state = str(th.get("State", ""))
        rows.append(
            {
                "target": d["Target"]["Id"],
                "port": int(d["Target"].get("Port", 0)),
                "health": _HEALTH.get(state, "unhealthy"),
                "aws_state": state,
                "reason": str(th.get("Reason", "") or ""),
                "description": str(th.get("Description", "") or ""),
            }
        )
    return pd.DataFrame(rows, columns=["target", "port", "health", "aws_state", "reason", "description"])
