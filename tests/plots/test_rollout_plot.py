"""The rollout section: RolloutResult -> rollout.json in the bundle -> LoadedBundle.rollouts -> the report figure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mlops_lb.bundle import RunBundle
from mlops_lb.local.rollout import RolloutResult
from mlops_lb.plots import FigureInput, draw_figures, rollout_timeline


def _result() -> RolloutResult:
    t0 = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)
    res = RolloutResult(
        state="rolled_back",
        reason="guard breached in 2 consecutive intervals: p99 0.300 s > guard.p99_s 0.120 s",
        strategy={"kind": "canary", "percent": 20.0, "bake_s": 10.0},
        guard={"p99_s": 0.12},
        source="client",
        served={"old": 900, "new": 40},
        client_errors={"old": 0, "new": 0},
        breach_to_zero_s=1.7,
    )
    res.timeline = [
        {"timestamp": t0, "step": 0, "percent": 20.0, "effective_percent": 20.0, "state": "baking"},
        {"timestamp": t0 + timedelta(seconds=3), "step": 0, "percent": 0.0, "effective_percent": 0.0,
         "state": "rolling_back"},
    ]  # fmt: skip
    for k in range(3):
        for variant, p99 in (("old", 0.02), ("new", 0.3)):
            res.intervals.append({"timestamp": t0 + timedelta(seconds=k + 1), "step": 0, "variant": variant,
                                  "requests": 20, "errors": 0, "p99_s": p99, "ttft_p99_s": None, "mean_s": p99})  # fmt: skip
    return res


def test_rollout_round_trips_through_the_bundle_into_the_report_figure(tmp_path):
    """to_bundle appends to rollout.json; the loaded bundle carries it; the registry draws the rollout figure
    with a caption that states the outcome and the time to 0 %."""
    bundle = RunBundle.create(tmp_path, "ro")
    bundle.write_json("summary.json", {"requests": 940})
    _result().to_bundle(bundle)
    _result().to_bundle(bundle)
    loaded = RunBundle.load(bundle.path)
    assert len(loaded.rollouts) == 2 and loaded.rollouts[-1]["state"] == "rolled_back"
    figs = draw_figures(FigureInput(rollouts=tuple(loaded.rollouts)), "plots")
    stems = {stem: caption for stem, caption, _ in figs}
    assert "rollout" in stems and "0 % 1.70 s after the breach" in stems["rollout"]


def test_no_rollout_no_figure():
    """A run without a rollout gets no rollout figure."""
    assert "rollout" not in {stem for stem, _, _ in draw_figures(FigureInput(), "plots")}


def test_timeline_figure_has_weight_latency_and_error_panels():
    """Three panels: the share on the new slot, each variant's p99 with the bound, failed requests."""
    fig = rollout_timeline(_result())
    w, lat, err = fig.axes
    assert [round(y) for y in w.get_lines()[0].get_ydata()] == [20, 0]
    labels = [line.get_label() for line in lat.get_lines()]
    assert {"old p99", "new p99", "guard p99 bound"} <= set(labels)
    assert err.get_ylabel() == "failed requests"
