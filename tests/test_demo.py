"""The main job, shortened: `mlops-lb demo` end to end on the real local fleet."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb.demo import demo_rates, demo_schedule, run_demo

FAST = ml.FleetSpec.example("demo").replace(local=ml.LocalSpec(period_s=0.75, slots=2, min_service_ms=20))


class TestSchedule:
    def test_schedule_crosses_scale_out_then_falls_below_scale_in(self) -> None:
        """The demo load peaks above one target's target rate and ends below 90 % of it."""
        peak, target = demo_rates(FAST)
        sched = demo_schedule(FAST, 100.0)
        per_second = [((sched >= s) & (sched < s + 1)).sum() for s in range(100)]
        assert max(per_second) > 2 * target  # more than one target's worth: scale-out
        assert peak < target * FAST.capacity.max  # never more than max targets can hold
        assert max(per_second[-30:]) < 0.9 * target  # the quiet tail: scale-in
        assert (abs(sched.size - (sum(per_second))) <= 1) and (sched == sorted(sched)).all()


@pytest.mark.timeout(240)
def test_shortened_demo_writes_a_bundle_that_shows_scale_out_and_scale_in(tmp_path: Path) -> None:
    """A 45 s demo scales out and back in, prints status lines, and writes a complete self-contained bundle."""
    out = io.StringIO()
    path = run_demo(duration_s=45, spec=FAST, out=tmp_path, stream=out)
    text = out.getvalue()
    assert re.search(r"offered +\d+\.\d rps +achieved +\d+\.\d rps +p99 .* healthy \d +desired \d", text)
    assert "report:" in text and str(path) in text

    bundle = ml.RunBundle.load(path)
    events = bundle.events
    outs, ins = events[events["kind"] == "scale_out"], events[events["kind"] == "scale_in"]
    assert len(outs) >= 1 and len(ins) >= 1, events[["kind", "detail"]].to_string()
    assert (outs["detail"].str.contains("RequestCountPerTarget")).all()  # each decision carries its reason
    assert (ins["detail"].str.contains("RequestCountPerTarget")).all()
    assert bundle.intervals["p99_s"].notna().sum() > 10  # a latency series
    cap = bundle.metrics[bundle.metrics["metric"] == "GroupDesiredCapacity"]["value"]
    assert cap.max() >= 2 and cap.iloc[-1] < cap.max()  # a capacity series that rose and fell
    assert len(bundle.requests) == bundle.summary["requests"]
    assert json.loads((path / "spec.json").read_text())["name"] == FAST.name

    # The what-if replay reproduces the local autoscaler's own decisions on the same trace.
    decisions = pd.DataFrame(json.loads((path / "decisions.json").read_text()))
    replayed = ml.analysis.reproduce(decisions, FAST.scaling, period_s=FAST.local.period_s)
    assert len(replayed) > 20 and replayed["matches"].all(), replayed[~replayed["matches"]].to_string()
    assert set(replayed["action"]) >= {"scale_out", "scale_in", "none"}

    html = (path / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']?https?:|url\(\s*["']?https?:""", html)  # self-contained
