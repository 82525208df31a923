"""Data contracts shared by both backends, every plot and the report (docs/design.md §3).

A *MetricFrame* is a tidy DataFrame with :data:`METRIC_COLUMNS`; an *events* frame has :data:`EVENT_COLUMNS`;
``fleet.status()`` has :data:`STATUS_COLUMNS`. ``check_*`` raise ``ValueError`` naming what is wrong, so one
contract test can run against the local fleet and the CloudWatch readers alike.

Example::

    from mlops_lb.frames import empty_metric_frame, check_metric_frame
    df = empty_metric_frame(api_calls=0, metrics_requested=0)
    check_metric_frame(df)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_KINDS",
    "HEALTH_VALUES",
    "METRIC_COLUMNS",
    "STATE_VALUES",
    "STATUS_COLUMNS",
    "check_events_frame",
    "check_metric_frame",
    "check_status_frame",
    "empty_metric_frame",
    "events_frame",
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
        "decision",
    }
)
STATUS_COLUMNS = ("target", "address", "state", "health", "launched_at")
STATE_VALUES = frozenset({"pending", "in_service", "draining", "terminated"})
HEALTH_VALUES = frozenset({"initial", "healthy", "unhealthy", "draining", "unused"})

# CloudWatch units of the metrics both backends produce.
METRIC_UNITS: Mapping[str, str] = {
    "RequestCount": "Count",
    "RequestCountPerTarget": "Count",
    "TargetResponseTime": "Seconds",
    "HTTPCode_Target_2XX_Count": "Count",
    "HTTPCode_Target_4XX_Count": "Count",
    "HTTPCode_Target_5XX_Count": "Count",
    "HTTPCode_ELB_5XX_Count": "Count",
    "HealthyHostCount": "Count",
    "UnHealthyHostCount": "Count",
    "ActiveConnectionCount": "Count",
    "TargetConnectionErrorCount": "Count",
    "RejectedConnectionCount": "Count",
    "GroupDesiredCapacity": "None",
    "GroupInServiceInstances": "None",
    "GroupPendingInstances": "None",
    "GroupTerminatingInstances": "None",
    "CPUUtilization": "Percent",
}


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
