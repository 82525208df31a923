"""Scale-out waterfall: for each scale-out, how long from the decision to the first request a new target served.

Stages, from the events frame (and the load test's per-request records):

``decision`` (``scale_out`` event) → ``launch`` (the new target's ``launch`` event) → ``registered`` → ``healthy``
(its first passing check: the ALB sends traffic only after that) → ``first_request`` (the earliest ``done_at`` of
a request whose ``target`` is the new one).

A launch belongs to the latest ``scale_out`` before it, up to the next scale event; launches with no scale-out
before them (the initial fleet) are not part of any waterfall. A stage that never happened is ``NaT`` / ``NaN``.

Example::

    from mlops_lb.analysis import scale_out_waterfall
    scale_out_waterfall(bundle.events, bundle.requests)[["target", "decision_to_first_request_s"]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WATERFALL_COLUMNS", "scale_out_waterfall"]

WATERFALL_COLUMNS = (
    "scale_out_at",
    "reason",
    "target",
    "launch_at",
    "registered_at",
    "healthy_at",
    "first_request_at",
    "decision_to_launch_s",
    "launch_to_healthy_s",
    "healthy_to_first_request_s",
    "decision_to_healthy_s",
    "decision_to_first_request_s",
)


def _secs(a: Any, b: Any) -> float:
    import pandas as pd

    if pd.isna(a) or pd.isna(b):
        return float("nan")
    return float((b - a).total_seconds())


def scale_out_waterfall(events: pd.DataFrame, requests: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per target launched by a scale-out, with the stage times and durations in seconds.

    Example::

        wf = scale_out_waterfall(fleet.events(), result.requests())
        wf["decision_to_first_request_s"].max()     # the slowest new target
    """
    import pandas as pd

    for col in ("timestamp", "kind", "target"):
        if col not in events.columns:
            raise SpecError("events", f"is missing column {col!r} (has {list(events.columns)})")
    ev = events.copy()
    ev["timestamp"] = pd.to_datetime(ev["timestamp"], utc=True)
    ev = ev.sort_values("timestamp", kind="stable").reset_index(drop=True)
    ev["target"] = ev["target"].fillna("").astype(str)
    detail = ev["detail"].fillna("").astype(str) if "detail" in ev.columns else pd.Series([""] * len(ev))

    first_served: dict[str, Any] = {}
    if requests is not None and len(requests) and {"target", "done_at"} <= set(requests.columns):
        r = requests[requests["target"].notna() & (requests["target"].astype(str) != "")]
        if "error" in r.columns:
            # A request that failed was not served by the target.
            r = r[r["error"].isna() | (r["error"].astype(str) == "")]
        done = pd.to_datetime(r["done_at"], utc=True)
        first_served = done.groupby(r["target"].astype(str)).min().to_dict()

    def first(kind: str, target: str, after: Any) -> Any:
        m = ev[(ev["kind"] == kind) & (ev["target"] == target) & (ev["timestamp"] >= after)]
        return m["timestamp"].iloc[0] if len(m) else pd.NaT

    scale_idx = list(ev.index[ev["kind"].isin(["scale_out", "scale_in"])])
    rows: list[dict[str, Any]] = []
    for pos, i in enumerate(scale_idx):
        if ev.at[i, "kind"] != "scale_out":
            continue
        t_dec = ev.at[i, "timestamp"]
        t_next = ev.at[scale_idx[pos + 1], "timestamp"] if pos + 1 < len(scale_idx) else None
        window = ev[(ev["kind"] == "launch") & (ev.index > i)]
        if t_next is not None:
            window = window[window["timestamp"] < t_next]
        launches = list(window.itertuples()) or [None]
        for ln in launches:
            target = "" if ln is None else str(ln.target)
            t_launch = pd.NaT if ln is None else ln.timestamp
            t_reg = first("registered", target, t_launch) if target else pd.NaT
            t_ok = first("healthy", target, t_launch) if target else pd.NaT
            t_req = first_served.get(target, pd.NaT) if target else pd.NaT
            rows.append(
                {
                    "scale_out_at": t_dec,
                    "reason": detail.iloc[i],
                    "target": target,
                    "launch_at": t_launch,
                    "registered_at": t_reg,
                    "healthy_at": t_ok,
                    "first_request_at": t_req,
                    "decision_to_launch_s": _secs(t_dec, t_launch),
                    "launch_to_healthy_s": _secs(t_launch, t_ok),
                    "healthy_to_first_request_s": _secs(t_ok, t_req),
                    "decision_to_healthy_s": _secs(t_dec, t_ok),
                    "decision_to_first_request_s": _secs(t_dec, t_req),
                }
            )
    out = pd.DataFrame(rows, columns=list(WATERFALL_COLUMNS))
    for c in ("scale_out_at", "launch_at", "registered_at", "healthy_at", "first_request_at"):
        out[c] = pd.to_datetime(out[c], utc=True)
    return out
