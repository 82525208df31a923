"""The run session on a real local fleet: one call leaves a complete bundle about the run (decisions and status
included) and its report; phases are announced in order; a second load on the same fleet is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb.errors import LoadTestError

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]

FAST = ml.FleetSpec.example("demo").replace(local=ml.LocalSpec(period_s=0.5, slots=2, min_service_ms=20))


@pytest.mark.timeout(180)
def test_one_session_writes_the_whole_bundle_and_refuses_a_second_load(tmp_path: Path) -> None:
    """run_session: phases sending -> writing report -> done; decisions, status, metrics, events and the report."""
    phases: list[str] = []
    with ml.open_fleet(FAST) as fleet:
        fleet.launch()
        first = ml.RunSession(fleet, ml.load.constant(20, 30), out=tmp_path).start()
        try:
            with pytest.raises(LoadTestError, match="already running against this fleet"):
                ml.RunSession(fleet, ml.load.constant(5, 1), out=tmp_path).start()
        finally:
            first.stop()
            first.finish()
        outcome = ml.run_session(fleet, ml.load.constant(20, 2), out=tmp_path, on_phase=phases.append)
    assert phases[0] == "sending" and phases[-2:] == ["writing report", "done"], phases
    assert outcome.error is None and outcome.report_error is None and outcome.capture_failed == []
    assert outcome.report_path is not None and outcome.report_path.is_file()
    b = ml.RunBundle.load(outcome.bundle_path)
    assert len(b.decisions) > 0 and {"action", "request_count"} <= set(b.decisions.columns)
    assert len(b.status) == 1 and len(b.metrics) and b.summary["requests"] == 40
    start, _end = b.window
    # the run's facts come from the session, not from the records: backend and the local clock's period
    assert not b.facts.derived and b.facts.backend == "local"
    assert b.facts.metric_period_s == FAST.local.period_s and b.facts.send_end is not None
    # the fleet's data starts at most one period before the load: the first run and the launch are not in it
    assert (b.metrics["timestamp"] >= start - pd.Timedelta(seconds=FAST.local.period_s)).all()


class _UrlOnlyFleet:
    url = "http://127.0.0.1:1"
    spec = None


def test_path_sends_a_fleet_load_where_its_server_listens() -> None:
    """An LLM fleet is loaded at /v1/chat/completions, not at the model server's /predict."""
    s = ml.RunSession(_UrlOnlyFleet(), ml.load.constant(1, 1), out=None, path="/v1/chat/completions")
    assert s.url == "http://127.0.0.1:1/v1/chat/completions"
    assert ml.RunSession(_UrlOnlyFleet(), ml.load.constant(1, 1), out=None).url.endswith("/predict")
    with pytest.raises(ml.SpecError, match="path"):
        ml.RunSession(_UrlOnlyFleet(), ml.load.constant(1, 1), out=None, path="v1")


def test_a_refused_load_leaves_no_empty_bundle(tmp_path: Path) -> None:
    """A bad load keyword or value is refused before anything is sent, and the bundle made for it is removed."""
    with pytest.raises(TypeError, match="conections"):
        ml.RunSession(
            "http://127.0.0.1:1/predict", ml.load.constant(1, 1), out=tmp_path, conections=4
        ).start()
    with pytest.raises(ml.SpecError, match="connections"):
        ml.RunSession(
            "http://127.0.0.1:1/predict", ml.load.constant(1, 1), out=tmp_path, connections=0
        ).start()
    assert list(tmp_path.iterdir()) == []
