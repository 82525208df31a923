"""The rollout figure: the new slot's share of traffic over time above each variant's p99 and errors per interval.

Example::

    from mlops_lb import plots
    res = fleet.rollout(...)
    plots.rollout_timeline(res)          # a RolloutResult, or its to_dict() (what rollout.json in a bundle holds)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Registration order is the report's order: the load and scaling figures first, this one last.
from . import load as _load  # noqa: F401
from . import scaling as _scaling  # noqa: F401
from ._base import _show_figures_in_notebooks
from ._registry import FigureInput, report_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["rollout_timeline"]

_COLORS = {"old": "tab:blue", "new": "tab:orange", "unknown": "tab:gray"}


def rollout_timeline(rollout: Any) -> Figure:
    """Three stacked panels sharing the time axis: percent of traffic on the new slot (asked and given by weight),
    each variant's p99 per guard interval (with the guard's bound), and each variant's failed requests.

    Example::

        rollout_timeline(res).savefig("rollout.png")
    """
    import pandas as pd
    from matplotlib.figure import Figure

    _show_figures_in_notebooks()
    data = rollout.to_dict() if hasattr(rollout, "to_dict") else dict(rollout)
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    ax_w, ax_l, ax_e = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1.3, 0.8])
    tl = pd.DataFrame(data.get("timeline") or [])
    iv = pd.DataFrame(data.get("intervals") or [])
    for df in (tl, iv):
        if len(df):
            df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    if len(tl):
        ax_w.step(tl["timestamp"], tl["percent"], where="post", color="tab:orange", label="asked")
        ax_w.step(
            tl["timestamp"], tl["effective_percent"], where="post", ls=":", color="k", label="by weight"
        )
    ax_w.set_ylabel("% on new slot")
    ax_w.set_ylim(-5, 105)
    ax_w.legend(loc="upper left", fontsize=8)
    bound = (data.get("guard") or {}).get("p99_s")
    if len(iv):
        for variant, part in iv.groupby("variant"):
            c = _COLORS.get(str(variant), "tab:gray")
            ax_l.plot(
                part["timestamp"], part["p99_s"] * 1e3, marker="o", ms=3, color=c, label=f"{variant} p99"
            )
            ax_e.bar(part["timestamp"], part["errors"], width=0.00001, color=c, label=str(variant))
    if bound:
        ax_l.axhline(bound * 1e3, color="red", ls="--", lw=1, label="guard p99 bound")
    ax_l.set_ylabel("p99 (ms)")
    ax_l.legend(loc="upper left", fontsize=8)
    ax_e.set_ylabel("failed requests")
    ax_e.set_xlabel("time (UTC)")
    state = data.get("state", "")
    fig.suptitle(f"Rollout {state}: {data.get('reason', '')}"[:110], fontsize=10)
    return fig


def _caption(run: FigureInput) -> str:
    if not run.rollouts:
        return "Rollout: the share of traffic on the new slot, each variant's p99 and errors."
    r = run.rollouts[-1]
    zero = r.get("breach_to_zero_s")
    extra = f" The new slot was at 0 % {zero:.2f} s after the breach began." if zero is not None else ""
    return (
        f"Rollout ({(r.get('strategy') or {}).get('kind', '')}, guard from the {r.get('source', '')} side): "
        f"{r.get('state', '')}: {r.get('reason', '')}.{extra} Requests served: {r.get('served', {})}; "
        f"client errors: {r.get('client_errors', {})}."
    )


@report_figure("rollout", _caption)
def _report_rollout(run: FigureInput) -> Figure | None:
    return rollout_timeline(run.rollouts[-1]) if run.rollouts else None
