"""Run facts written once: the session records start, end, send end, metric period and backend in ``run.json``;
the window, the report and the replay read them; an older bundle derives them once on load."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb import bundle as bundle_mod
from mlops_lb import session as session_mod
from mlops_lb.bundle import RunBundle, RunFacts
from mlops_lb.session import RunSession, metric_period_s


class _Result:
    def __init__(self, started_at: datetime, duration_s: float) -> None:
        self.started_at = started_at
        self.duration_s = duration_s

    def summary(self) -> dict[str, Any]:
        return {"requests": 3, "valid": True}


class _Run:
    """A load handle that sends nothing: it ends when stopped (or after ``run_s``)."""

    def __init__(self, run_s: float) -> None:
        self.started_at = datetime.now(timezone.utc)
        self._stop = threading.Event()
        self._run_s = run_s

    @property
    def done(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def result(self, timeout: float | None = None) -> _Result:
        self._stop.wait(self._run_s)
        return _Result(self.started_at, 1.5)


class _FakeFleet:
    """A fleet of a backend this test registers nowhere, with a metric period of its own (AWS's 60 s)."""

    url = "http://127.0.0.1:1"
    backend = "aws"
    metric_period_s = 60.0
    spec = ml.FleetSpec.example("demo")  # its local.period_s (2 s) must NOT become this run's period

    def __init__(self) -> None:
        self.reads: list[datetime | None] = []

    def metrics(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        self.reads.append(start)
        return pd.DataFrame(
            {
                "timestamp": [pd.Timestamp.now(tz="UTC")],
                "metric": ["RequestCount"],
                "stat": ["Sum"],
                "value": [1.0],
                "unit": ["Count"],
                "target": [""],
            }
        )

    def events(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        return pd.DataFrame(columns=["timestamp", "kind", "target", "detail"])

    def status(self) -> pd.DataFrame:
        return pd.DataFrame({"target": ["i-1"], "state": ["in_service"]})

    def decisions(self) -> pd.DataFrame:
        return pd.DataFrame()


def _session(fleet: Any, tmp_path: Path, run_s: float = 0.0) -> RunSession:
    return RunSession(
        fleet,
        ml.load.constant(1, 1),
        out=tmp_path,
        start_load=lambda *a, **k: _Run(run_s),
        write_report=lambda path: Path(path) / "report.html",
    )


def test_the_session_writes_the_facts_with_the_fleets_own_metric_period(tmp_path: Path) -> None:
    """An AWS fleet's run records 60 s and backend aws (not spec.local.period_s); the fleet data it saves starts
    one such period before the load; the loaded bundle's window is the recorded one, not re-derived."""
    fleet = _FakeFleet()
    outcome = _session(fleet, tmp_path).start().finish()
    assert outcome.bundle_path is not None
    facts = RunBundle.load(outcome.bundle_path).facts
    assert facts.backend == "aws" and facts.metric_period_s == 60.0 and not facts.derived
    assert facts.start is not None and facts.send_end == facts.start + pd.Timedelta(seconds=1.5)
    assert facts.end is not None and facts.end >= facts.start
    final_read = fleet.reads[-1]
    assert final_read is not None and abs((facts.start - final_read).total_seconds() - 60.0) < 1e-6


def test_metric_period_falls_back_to_the_local_clock_only_for_the_local_backend() -> None:
    """Before a fleet has metric_period_s: local -> spec.local.period_s, aws -> 60, anything else unknown."""

    class Old:
        spec = ml.FleetSpec.example("demo")

    assert metric_period_s(Old(), "local") == ml.FleetSpec.example("demo").local.period_s
    assert metric_period_s(Old(), "aws") == 60.0
    assert metric_period_s(Old(), "k8s") is None
    assert metric_period_s(None) is None


def test_fleet_tables_are_in_the_bundle_while_the_run_goes(tmp_path: Path, monkeypatch) -> None:
    """metrics.parquet and events.parquet land during the run, so a session killed mid-run keeps them."""
    monkeypatch.setattr(session_mod, "CAPTURE_EVERY_S", 0.1)
    fleet = _FakeFleet()
    fleet.metric_period_s = 0.1  # type: ignore[misc]
    s = _session(fleet, tmp_path, run_s=30.0).start()
    try:
        deadline = time.monotonic() + 10
        path = s.bundle.path
        tables = [path / "metrics.parquet", path / "events.parquet"]
        while time.monotonic() < deadline and not all(t.exists() for t in tables):
            time.sleep(0.05)
        assert (path / "metrics.parquet").exists() and (path / "events.parquet").exists()
        assert not (path / "status.parquet").exists()  # the end-of-run tables come at the end
    finally:
        s.stop()
        s.finish()
    assert (path / "status.parquet").exists()


def _old_bundle(tmp_path: Path) -> Path:
    """A bundle as an older version wrote it: records, no run.json."""
    b = RunBundle.create(root=tmp_path, name="old")
    (b.path / "run.json").unlink()
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    intended = [t0 + pd.Timedelta(seconds=i) for i in range(10)]
    b.append_requests(
        pd.DataFrame(
            {
                "intended_at": intended,
                "sent_at": intended,
                "done_at": [t + pd.Timedelta(seconds=0.5) for t in intended],
                "latency_s": [0.5] * 10,
                "service_s": [0.5] * 10,
                "status": [200] * 10,
                "error": [None] * 10,
                "target": ["i-1"] * 10,
            }
        )
    )
    b.finalize()
    return b.path


def test_an_old_bundle_derives_its_facts_once(tmp_path: Path, monkeypatch) -> None:
    """Without run.json the facts come from the records, parsed once however often window, in_window and the
    report read them."""
    calls: list[int] = []
    real = bundle_mod.derive_facts

    def counting(*a: Any) -> RunFacts:
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(bundle_mod, "derive_facts", counting)
    b = RunBundle.load(_old_bundle(tmp_path))
    assert b.window == (pd.Timestamp("2026-01-01T00:00:00Z"), pd.Timestamp("2026-01-01T00:00:09.5Z"))
    assert b.facts.derived and b.facts.send_end == pd.Timestamp("2026-01-01T00:00:09Z")
    from mlops_lb.report import render_report_html

    render_report_html(b)
    assert len(calls) == 1


def test_a_complete_run_json_is_not_rederived(tmp_path: Path, monkeypatch) -> None:
    """With every fact recorded, loading and rendering never parse the records for the window."""
    path = _old_bundle(tmp_path)
    RunBundle(path).write_facts(
        RunFacts(
            start=pd.Timestamp("2026-01-01T00:00:00Z"),
            end=pd.Timestamp("2026-01-01T00:00:12Z"),
            send_end=pd.Timestamp("2026-01-01T00:00:09Z"),
            metric_period_s=2.0,
            backend="local",
        )
    )

    def refuse(*a: Any) -> RunFacts:
        raise AssertionError("derived although run.json is complete")

    monkeypatch.setattr(bundle_mod, "derive_facts", refuse)
    b = RunBundle.load(path)
    assert b.window == (pd.Timestamp("2026-01-01T00:00:00Z"), pd.Timestamp("2026-01-01T00:00:12Z"))
    from mlops_lb.report import render_report_html

    assert "t+12.0 s" in render_report_html(b)


def test_run_json_with_garbage_fields_is_read_as_unknown() -> None:
    """A hand-edited run.json never raises: unparseable fields are unknown and derived instead."""
    f = RunFacts.from_dict({"start": "yesterday", "metric_period_s": -3, "backend": 7, "end": None})
    assert f == RunFacts()
    assert RunFacts.from_dict(["not", "a", "dict"]) == RunFacts()
    good = RunFacts(start=pd.Timestamp("2026-01-01T00:00:00Z"), metric_period_s=60.0, backend="aws")
    assert RunFacts.from_dict(good.to_dict()) == good


def test_replay_of_a_bundle_uses_its_recorded_period(tmp_path: Path) -> None:
    """replay(bundle) turns rps targets into per-period targets with the run's own period (60 s on AWS)."""
    path = _old_bundle(tmp_path)
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    metrics = pd.DataFrame(
        {
            "timestamp": [t0, t0 + timedelta(seconds=60)],
            "metric": ["RequestCount"] * 2,
            "stat": ["Sum"] * 2,
            "value": [600.0, 600.0],
            "unit": ["Count"] * 2,
            "target": ["", ""],
        }
    )
    b = RunBundle(path)
    b.write_metrics(metrics)
    b.write_facts(RunFacts(start=t0, end=t0 + timedelta(seconds=90), metric_period_s=60.0, backend="aws"))
    policy = ml.ScalingPolicySpec(target_rps_per_target=5)
    r = ml.analysis.replay(RunBundle.load(path), policy=policy, min=1, max=4)
    assert r.period_s == 60.0
    # the same trace read with the local clock's 2 s would have called 600 requests per period 60 rps: max out
    assert ml.analysis.replay(metrics, policy=policy, min=1, max=4, period_s=2.0).period_s == 2.0


@pytest.mark.parametrize("label", ["x" * 300, "é" * 200 + "/../" + "y" * 100])
def test_a_long_run_label_is_shortened_not_a_failure(tmp_path: Path, label: str) -> None:
    """A label past the file system's 255-byte name limit gives a bundle with a shortened, distinct name."""
    a = RunBundle.create(root=tmp_path, name=label)
    b = RunBundle.create(root=tmp_path, name=label[:-1] + "z")
    assert a.path.is_dir() and b.path.is_dir() and a.path.name != b.path.name
    assert len(a.path.name.encode()) < 255 and a.path.parent == tmp_path


_KILLED_SESSION = """
import sys, threading, time
sys.path.insert(0, sys.argv[2])
from test_run_facts import _FakeFleet, _session
from pathlib import Path
import mlops_lb.session as s
s.CAPTURE_EVERY_S = 0.1
fleet = _FakeFleet()
fleet.metric_period_s = 0.1
session = _session(fleet, Path(sys.argv[1]), run_s=600.0).start()
print(session.bundle.path, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_session_keeps_its_fleet_tables_and_facts(tmp_path: Path) -> None:
    """SIGKILL mid-run (no finally, no finish()): the bundle still holds the fleet's metrics and events saved
    while the run went, and run.json with the start, backend and metric period."""
    import os
    import signal
    import subprocess
    import sys

    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SESSION, str(tmp_path), here],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(here).parent), here])},
    )
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (path / "events.parquet").exists():
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    b = RunBundle.load(path)
    assert len(b.metrics) == 1 and (path / "events.parquet").exists()
    assert b.facts.backend == "aws" and b.facts.metric_period_s == 0.1 and b.facts.start is not None
