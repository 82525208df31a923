"""The spot figure: each interruption's recommendation, notice, deregistration and reclaim per target, over the
client-visible errors of the run.

Example::

    from mlops_lb import plots
    plots.spot_interruptions(fleet.events(), result.intervals())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import TimeAxis, _axes, _time_label, _x
from ._registry import FigureInput, report_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SPOT_KINDS", "spot_interruptions"]

# kind -> (marker, label); the agent's own record counts only its "deregistered" line.
SPOT_KINDS = {
    "spot_rebalance": ("^", "rebalance recommendation"),
    "spot_notice": ("v", "two-minute notice"),
    "spot_agent": ("o", "agent deregistered the target"),
    "spot_interrupted": ("x", "EC2 reclaimed the instance"),
}


def _spot_rows(events: pd.DataFrame) -> pd.DataFrame:
    ev = events[events["kind"].isin(list(SPOT_KINDS)) & (events["target"].astype(str) != "")]
    agent = ev["kind"] == "spot_agent"
    return ev[~agent | ev["detail"].astype(str).str.contains("deregistered:", regex=False)]


def spot_interruptions(
    events: pd.DataFrame,
    intervals: pd.DataFrame | None = None,
    *,
    time: TimeAxis = "relative",
    t0: Any = None,
    ax: Axes | None = None,
) -> Figure:
    """One row per interrupted target with its four moments; client-visible errors per interval below (when
    ``intervals`` of the load run are given): a spot fleet that handles its notices shows markers and no errors.

    Example::

        spot_interruptions(fleet.events(), result.intervals())
    """
    import pandas as pd

    ev = _spot_rows(events)
    if t0 is None:
        starts = [pd.to_datetime(events["timestamp"], utc=True).min()] if len(events) else []
        if intervals is not None and len(intervals):
            starts.append(pd.to_datetime(intervals["interval_start"], utc=True).min())
        t0 = min(starts) if starts else None
    fig, ax = _axes(ax, figsize=(9.0, 4.5))
    targets = list(dict.fromkeys(ev["target"].astype(str)))
    row = {t: i for i, t in enumerate(targets)}
    for kind, (marker, label) in SPOT_KINDS.items():
        part = ev[ev["kind"] == kind]
        if len(part):
            ax.scatter(_x(part["timestamp"], time, t0), [row[str(t)] for t in part["target"]], marker=marker,
                       label=label, zorder=3)  # fmt: skip
    ax.set_yticks(range(len(targets)), targets)
    ax.set_ylim(-0.8, max(len(targets), 1) - 0.2 + (1 if intervals is not None else 0))
    if intervals is not None and len(intervals) and "errors" in intervals.columns:
        err = ax.twinx()
        err.step(_x(intervals["interval_start"], time, t0), intervals["errors"], where="post", color="tab:red",
                 label="client-visible errors per interval")  # fmt: skip
        err.set_ylabel("errors per interval")
        err.set_ylim(bottom=0, top=max(1, int(intervals["errors"].max()) * 1.2 + 1))
        err.legend(loc="upper right", fontsize="small")
    _time_label(ax, time)
    ax.set_title(f"Spot interruptions: {len(ev[ev['kind'] == 'spot_notice'])} notices")
    if len(ev):
        ax.legend(loc="upper left", fontsize="small")
    return fig


@report_figure(
    "spot_interruptions",
    "Each spot interruption (recommendation, notice, the agent's deregistration, the reclaim) over the errors.",
)
def _report_spot(run: FigureInput) -> Figure | None:
    if not len(run.events) or not len(_spot_rows(run.events)):
        return None
    return spot_interruptions(run.events, run.intervals if len(run.intervals) else None, t0=run.t0)
