"""Data contracts shared by both backends, every plot and the report (docs/design.md §3).

A *MetricFrame* is a tidy DataFrame with :data:`METRIC_COLUMNS`; an *events* frame has :data:`EVENT_COLUMNS`;
``fleet.status()`` has :data:`STATUS_COLUMNS` and ``fleet.decisions()`` :data:`DECISION_COLUMNS`. ``check_*`` raise ``ValueError`` naming what is wrong, so one
contract test can run against the local fleet and the CloudWatch readers alike.

:data:`CATALOGUE` is the one list of metrics: each :class:`MetricDef` says *what* a metric is: its CloudWatch name,
unit, statistics, namespace and dimensions (what ``mlops_lb.aws.cloudwatch`` queries) and whether rows may name a
target. *How* a backend measures it is the backend's own: the local fleet's calculations from its period records
are ``mlops_lb.local.metrics.LOCAL_SOURCES``. ``check_metric_frame``, the local sampler, the CloudWatch reader and
the contract test all read the catalogue, so adding a metric is one entry here, plus its local source (and a field
on the local ``PeriodRecord`` when it needs a new measurement).

Example::

    from mlops_lb.frames import empty_metric_frame, check_metric_frame
    df = empty_metric_frame(api_calls=0, metrics_requested=0)
    check_metric_frame(df)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CATALOGUE",
    "DECISION_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_KINDS",
    "HEALTH_VALUES",
    "METRIC_COLUMNS",
    "METRIC_UNITS",
    "STATE_VALUES",
    "STATUS_COLUMNS",
    "MetricDef",
    "check_events_frame",
    "check_metric_frame",
    "check_status_frame",
    "decisions_frame",
    "empty_metric_frame",
    "events_frame",
    "metric_by_name",
    "metric_frame",
]

METRIC_COLUMNS = ("timestamp", "metric", "stat", "value", "unit", "target")
EVENT_COLUMNS = ("timestamp", "kind", "target", "detail")
EVENT_KINDS = frozenset(
    {
        "scale_out",
        "scale_in",
        "launch",
        "terminate",
        "healthy",
        "unhealthy",
        "registered",
        "draining",
        "deregistered",
        "balancer_restart",
        "balancer_down",
        "balancer_up",
        "warm_pool_launch",
        "warm_pool_ready",
        "warm_pool_return",
        "spot_rebalance",
        "spot_notice",
        "spot_agent",
        "spot_interrupted",
        "decision",
    }
)
STATUS_COLUMNS = ("target", "address", "state", "health", "launched_at")
# One row per scaling decision: the exact inputs given to autoscaling.decide() (what the what-if replay needs to
# reproduce it) and its answer. AWS records only capacity changes, so its input columns stay empty.
DECISION_COLUMNS = (
    "timestamp",
    "request_count",
    "concurrency",
    "ready",
    "warming",
    "min",
    "max",
    "periods_since_action",
    "target_value",
    "metric",
    "desired_before",
    "desired_after",
    "action",
    "reason",
)
STATE_VALUES = frozenset({"pending", "in_service", "draining", "terminated"})
HEALTH_VALUES = frozenset({"initial", "healthy", "unhealthy", "draining", "unused"})

Dimensions = Literal["lb", "tg_lb", "asg"]


@dataclass(frozen=True)
class MetricDef:
    """One metric of the catalogue, the same on both backends.

    ``dimensions``: which CloudWatch dimensions identify the fleet's series (``lb``: LoadBalancer; ``tg_lb``:
    TargetGroup + LoadBalancer; ``asg``: AutoScalingGroupName). ``count``: CloudWatch omits the datapoint (rather
    than reporting 0) when nothing was counted; readers fill ``Sum`` with 0 on the period grid, the local fleet
    leaves it out. ``per_target``: rows may carry a target id (else ``target`` is always ""); ``instance_dimension``
    the CloudWatch dimension that selects one target's series. How a backend measures the metric is the
    backend's business (the local fleet's ``mlops_lb.local.metrics.LOCAL_SOURCES``, CloudWatch on AWS).

    Example::

        metric_by_name("TargetResponseTime").stats     # ('Average', 'p50', 'p90', 'p99')
    """

    name: str
    unit: str
    stats: tuple[str, ...]
    namespace: str
    dimensions: Dimensions
    count: bool = False
    per_target: bool = False
    instance_dimension: str | None = None

    @property
    def metric(self) -> str:
        """The CloudWatch MetricName (``name``; the attribute the CloudWatch reader's entries had before)."""
        return self.name


_ELB, _ASG, _EC2 = "AWS/ApplicationELB", "AWS/AutoScaling", "AWS/EC2"
# Our own metrics (published by the instances' agent on AWS, sampled from HAProxy locally).
CUSTOM_NAMESPACE = "MlopsLb"

CATALOGUE: tuple[MetricDef, ...] = (
    MetricDef("RequestCount", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("TargetResponseTime", "Seconds", ("Average", "p50", "p90", "p99"), _ELB, "lb"),
    MetricDef("HTTPCode_Target_2XX_Count", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("HTTPCode_Target_4XX_Count", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("HTTPCode_Target_5XX_Count", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("HTTPCode_ELB_5XX_Count", "Count", ("Sum",), _ELB, "lb", count=True),
    # 4xx the ALB answered itself; 460 among them is a client that closed the connection before the answer (a load
    # generator's timeout shorter than the fleet's latency). AWS only: HAProxy's own 4xx are not counted locally.
    MetricDef("HTTPCode_ELB_4XX_Count", "Count", ("Sum",), _ELB, "lb", count=True),
    # Minimum shows a dip that the period's Average hides.
    MetricDef("HealthyHostCount", "Count", ("Average", "Minimum"), _ELB, "tg_lb"),
    MetricDef("UnHealthyHostCount", "Count", ("Average", "Minimum"), _ELB, "tg_lb"),
    MetricDef("RequestCountPerTarget", "Count", ("Sum",), _ELB, "tg_lb", count=True),
    MetricDef("ActiveConnectionCount", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("TargetConnectionErrorCount", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("RejectedConnectionCount", "Count", ("Sum",), _ELB, "lb", count=True),
    MetricDef("GroupDesiredCapacity", "None", ("Average",), _ASG, "asg"),
    MetricDef("GroupInServiceInstances", "None", ("Average",), _ASG, "asg"),
    MetricDef("GroupPendingInstances", "None", ("Average",), _ASG, "asg"),
    MetricDef("GroupTerminatingInstances", "None", ("Average",), _ASG, "asg"),
    MetricDef(
        "CPUUtilization",
        "Percent",
        ("Average",),
        _EC2,
        "asg",
        per_target=True,
        instance_dimension="InstanceId",
    ),
    # Average in-flight requests per target (scaling.metric: concurrency_per_target). On AWS each instance's agent
    # publishes it with the AutoScalingGroupName dimension and target tracking reads its Average; locally it is
    # HAProxy's per-server scur + qcur sampled every controller tick and averaged over the period.
    MetricDef(
        "ConcurrencyPerTarget",
        "Count",
        ("Average",),
        CUSTOM_NAMESPACE,
        "asg",
        per_target=True,
        instance_dimension="InstanceId",  # the agent publishes each instance's series too
    ),
    # An LLM server's prefix-cache hit rate: prompt tokens found cached over prompt tokens queried, in percent
    # (vLLM's vllm:prefix_cache_hits / vllm:prefix_cache_queries counters). Locally scraped from each target's
    # /metrics every period; on AWS no agent publishes it yet, so the CloudWatch reader finds no datapoints.
    MetricDef("PrefixCacheHitRate", "Percent", ("Average",), CUSTOM_NAMESPACE, "asg", per_target=True),
)
_BY_NAME = {m.name: m for m in CATALOGUE}

# CloudWatch units of the metrics both backends produce (derived from the catalogue).
METRIC_UNITS: Mapping[str, str] = {m.name: m.unit for m in CATALOGUE}


def metric_by_name(name: str) -> MetricDef:
    """The catalogue entry of ``name`` (KeyError naming the known metrics otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the metric catalogue (known: {', '.join(_BY_NAME)})") from None


def metric_frame(rows: Iterable[Mapping[str, Any]], **attrs: Any) -> pd.DataFrame:
    """Build a MetricFrame from row dicts; sorts by (metric, stat, target, timestamp); ``attrs`` go on ``df.attrs``."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(METRIC_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df["value"] = df["value"].astype("float64")
    for c in ("metric", "stat", "unit", "target"):
        df[c] = df[c].fillna("").astype(str)
    df = df.sort_values(["metric", "stat", "target", "timestamp"], kind="stable").reset_index(drop=True)
    df.attrs.update({"api_calls": 0, "metrics_requested": 0, **attrs})
    return df


def empty_metric_frame(**attrs: Any) -> pd.DataFrame:
    """A MetricFrame with no rows (the right columns and dtypes)."""
    return metric_frame([], **attrs)


def events_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build an events frame (timestamp UTC, kind, target, detail), sorted by time."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    for c in ("kind", "target", "detail"):
        df[c] = df[c].fillna("").astype(str)
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


def decisions_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a decisions frame (:data:`DECISION_COLUMNS`, timestamp UTC); a missing column is left empty.

    Example::

        decisions_frame([{"timestamp": now, "action": "scale_out", "desired_before": 2, "desired_after": 4}])
    """
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(DECISION_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def _require(df: Any, columns: Iterable[str], what: str) -> None:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame (got {type(df).__name__})")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing} (has {list(df.columns)})")


def _require_utc(df: pd.DataFrame, column: str, what: str) -> None:
    import pandas as pd

    dtype = df[column].dtype
    if not isinstance(dtype, pd.DatetimeTZDtype) or str(dtype.tz) != "UTC":
        raise ValueError(f"{what}.{column} must be tz-aware UTC datetimes (got {dtype})")


def check_metric_frame(df: pd.DataFrame) -> None:
    """Raise ValueError unless ``df`` honours the MetricFrame contract."""
    import pandas as pd

    _require(df, METRIC_COLUMNS, "MetricFrame")
    _require_utc(df, "timestamp", "MetricFrame")
    if not pd.api.types.is_float_dtype(df["value"]):
        raise ValueError(f"MetricFrame.value must be float (got {df['value'].dtype})")
    for c in ("metric", "stat", "unit", "target"):
        if len(df) and not df[c].map(lambda v: isinstance(v, str)).all():
            raise ValueError(f"MetricFrame.{c} must hold strings")
    unknown = set(df["metric"]) - set(METRIC_UNITS)
    if unknown:
        raise ValueError(f"MetricFrame has metrics outside the CloudWatch catalogue: {sorted(unknown)}")
    wrong_unit = df[df["unit"] != df["metric"].map(METRIC_UNITS)]
    if len(wrong_unit):
        r = wrong_unit.iloc[0]
        raise ValueError(
            f"MetricFrame unit for {r['metric']} must be {METRIC_UNITS[r['metric']]} (got {r['unit']!r})"
        )
    bad_stat = df[[s not in _BY_NAME[m].stats for m, s in zip(df["metric"], df["stat"], strict=True)]]
    if len(bad_stat):
        r = bad_stat.iloc[0]
        raise ValueError(
            f"MetricFrame reads {r['metric']} with {r['stat']!r}; the catalogue has {list(_BY_NAME[r['metric']].stats)}"
        )
    targeted = df[(df["target"] != "") & ~df["metric"].map(lambda m: _BY_NAME[m].per_target)]
    if len(targeted):
        raise ValueError(
            f"MetricFrame has per-target rows for {sorted(set(targeted['metric']))}, which are group-wide"
        )
    if df.duplicated(["timestamp", "metric", "stat", "target"]).any():
        raise ValueError("MetricFrame has duplicate (timestamp, metric, stat, target) rows")
    for key in ("api_calls", "metrics_requested"):
        if key not in df.attrs:
            raise ValueError(f"MetricFrame.attrs must carry {key!r}")


def check_events_frame(df: pd.DataFrame) -> None:
    """Raise ValueError unless ``df`` honours the events contract."""
    _require(df, EVENT_COLUMNS, "events frame")
    _require_utc(df, "timestamp", "events frame")
    bad = set(df["kind"]) - EVENT_KINDS
    if bad:
        raise ValueError(f"events frame has unknown kinds {sorted(bad)} (allowed: {sorted(EVENT_KINDS)})")


def check_status_frame(df: pd.DataFrame) -> None:
    """Raise ValueError unless ``df`` honours the ``fleet.status()`` contract."""
    _require(df, STATUS_COLUMNS, "status frame")
    bad_state = set(df["state"]) - STATE_VALUES
    if bad_state:
        raise ValueError(f"status frame has unknown states {sorted(bad_state)}")
    bad_health = set(df["health"]) - HEALTH_VALUES
    if bad_health:
        raise ValueError(f"status frame has unknown health values {sorted(bad_health)}")
