"""The spot figure and its report registration: drawn only for runs with interruptions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from mlops_lb import plots
from mlops_lb.frames import events_frame
from mlops_lb.plots import FigureInput, registered_figures


def _events() -> pd.DataFrame:
    t0 = datetime(2026, 12, 7, tzinfo=timezone.utc)
    rows = [
        ("launch", "i-1", "keeping desired capacity"),
        ("spot_rebalance", "i-1", "rebalance recommendation served"),
        ("spot_notice", "i-1", "two-minute interruption notice served"),
        ("spot_agent", "i-1", "agent: notice: interruption notice"),
        ("spot_agent", "i-1", "agent: deregistered: deregistered 0.01 s after seeing the notice"),
        ("spot_interrupted", "i-1", "EC2 reclaimed the instance"),
    ]
    return events_frame(
        [
            {"timestamp": t0 + timedelta(seconds=i), "kind": k, "target": t, "detail": d}
            for i, (k, t, d) in enumerate(rows)
        ]
    )


def test_figure_marks_each_moment_and_the_errors() -> None:
    ev = _events()
    iv = pd.DataFrame({"interval_start": pd.to_datetime(ev["timestamp"]), "errors": [0, 0, 0, 0, 0, 0]})
    fig = plots.spot_interruptions(ev, iv)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "rebalance recommendation", "two-minute notice", "agent deregistered the target", "EC2 reclaimed the instance"
    ]  # fmt: skip
    # Only the agent's "deregistered" line is a point: four points in all.
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4
    assert "1 notices" in ax.get_title()


def test_report_draws_it_only_for_runs_with_interruptions() -> None:
    [fig] = [f for f in registered_figures("plots") if f.stem == "spot_interruptions"]
    assert fig.draw(FigureInput(events=_events())) is not None
    plain = _events()[lambda d: ~d["kind"].str.startswith("spot")]
    assert fig.draw(FigureInput(events=plain)) is None
