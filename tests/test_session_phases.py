"""The session's draining phase comes from the run's own send end (``LoadRun.send_end_s``), not the wall clock.

A fake run stands in for the load: it says when its engines have sent their last request, and the tests check
both directions: a run that lags past its schedule is still ``sending``, a stopped run is ``draining`` at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import mlops_lb as ml
from mlops_lb.session import RunSession


class _Run:
    """A LoadRun double: ``send_end_s`` is None until the test (or stop()) says sending is over."""

    def __init__(self) -> None:
        self.send_end_s: float | None = None
        self.finished = threading.Event()

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def stop(self) -> None:
        self.send_end_s = 0.1  # the engines stop sending at once; responses are still due
        self.finished.set()

    def result(self, timeout: float | None = None) -> Any:
        self.finished.wait(timeout)
        return None


def _session(profile: Any, phases: list[str]) -> tuple[RunSession, _Run]:
    run = _Run()
    s = RunSession(
        "http://127.0.0.1:9/predict",
        profile,
        out=None,
        on_phase=phases.append,
        start_load=lambda *a, **k: run,
    )
    return s.start(), run


def _wait(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_a_run_still_sending_past_its_schedule_is_not_draining() -> None:
    """The schedule's 0.2 s are long over but the engines have not said they are done: still sending; the
    moment the run reports its send end, the phase is draining (one change, heard by on_phase)."""
    phases: list[str] = []
    s, run = _session(ml.load.constant(10, 0.2), phases)
    time.sleep(0.6)  # three times the schedule: a wall-clock guess would say draining by now
    assert s.phase == "sending" and phases == ["sending"]
    run.send_end_s = 0.65
    assert _wait(lambda: s.phase == "draining"), s.phase
    run.finished.set()
    s.finish()
    assert phases == ["sending", "draining", "writing report", "done"]


def test_a_stopped_run_drains_long_before_its_schedule_ends() -> None:
    """Stopped 10 minutes early: the engines' send end comes at once, so draining does too."""
    phases: list[str] = []
    s, _run = _session(ml.load.constant(10, 600), phases)
    s.stop()
    assert _wait(lambda: "draining" in phases), phases
    s.finish()
    assert phases == ["sending", "draining", "writing report", "done"]


def test_reading_the_phase_fires_no_callback() -> None:
    """``phase`` is a plain read: only the run's own events move it (and call on_phase)."""
    phases: list[str] = []
    s, run = _session(ml.load.constant(10, 0.01), phases)
    time.sleep(0.1)
    for _ in range(5):
        assert s.phase == "sending"
    assert phases == ["sending"]
    run.stop()
    s.finish()
