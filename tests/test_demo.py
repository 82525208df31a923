"""The main job, shortened: `mlops-lb demo` end to end on the real local fleet."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

import mlops_lb as ml
from mlops_lb.demo import demo_rates, demo_schedule, run_demo

FAST = ml.FleetSpec.example("demo").replace(local=ml.LocalSpec(period_s=0.5, slots=2, min_service_ms=20))


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


@pytest.mark.fleet
@pytest.mark.serial  # must show scale-out and scale-in on the compressed clock
@pytest.mark.timeout(240)
def test_shortened_demo_writes_a_bundle_that_shows_scale_out_and_scale_in(tmp_path: Path) -> None:
    """A 22 s demo scales out and back in, prints status lines, and writes a complete self-contained bundle.

    On a 0.5 s AWS minute (the shortest allowed) the peak (2.9-12.1 s) holds 18 periods, scale-out needs 3 and a
    boot, and the quiet tail (9.2 s) holds scale-in's 15 periods plus the deregistration delay and two periods
    (8.75 s; run_demo notes when it cannot, and this test fails on that note)."""
    out = io.StringIO()
    path = run_demo(duration_s=22, spec=FAST, out=tmp_path, stream=out)
    assert "note: the quiet tail" not in out.getvalue()
    text = out.getvalue()
    assert re.search(r"offered +\d+\.\d rps +achieved +\d+\.\d rps +p99 .* healthy \d +desired \d", text)
    assert "report:" in text and str(path) in text
    assert "verdict " in text and "scale-outs / scale-ins" in text  # the shared summary rows

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
    decisions = bundle.decisions  # a first-class bundle table (decisions.parquet)
    assert len(decisions) and not (path / "decisions.json").exists()
    replayed = ml.analysis.reproduce(decisions, FAST.scaling, period_s=FAST.local.period_s)
    assert len(replayed) > 20 and replayed["matches"].all(), replayed[~replayed["matches"]].to_string()
    assert set(replayed["action"]) >= {"scale_out", "scale_in", "none"}

    html = (path / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']?https?:|url\(\s*["']?https?:""", html)  # self-contained


@pytest.mark.fleet
@pytest.mark.timeout(180)
def test_ctrl_c_keeps_the_bundle_writes_the_report_and_leaves_no_process(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130, the partial bundle and its report are written, HAProxy and workers are gone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    spec_file = tmp_path / "fast.yaml"
    FAST.to_yaml(spec_file)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_lb",
            "demo",
            "--duration-s",
            "60",
            "--spec",
            str(spec_file),
            "--out",
            str(tmp_path / "runs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # a shell without job control starts background jobs with SIGINT ignored; a terminal would not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    import threading

    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    children: list[psutil.Process] = []
    try:
        # Wait for the load itself (on a busy machine launch alone can take longer than any fixed sleep), then
        # for some interval lines, so the interrupt lands mid-run rather than during launch.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sum(ln.startswith("t=") for ln in list(lines)) < 2:
            children = psutil.Process(proc.pid).children(recursive=True) or children
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True) or children
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(10)
        stdout.close()
    out = "".join(lines)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    report = Path(out.split("report:")[-1].strip().splitlines()[0])
    assert report.is_file() and ml.RunBundle.load(report.parent).summary["requests"] > 0
    assert children and not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
