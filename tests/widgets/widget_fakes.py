"""Fakes at the panels' seams: a fleet, a synchronous executor, a scripted start_load and a bundle."""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future
from typing import Any

import pandas as pd

from mlops_lb.frames import empty_metric_frame, events_frame
from mlops_lb.spec import CapacitySpec, FleetSpec


class InlineExecutor(Executor):
    """Runs each task at once on the caller's thread, so a click's outcome is visible right after .click()."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            f.set_exception(exc)
        return f


class FakeFleet:
    """A fleet whose capacity is whatever scale() last set; status() shows that many healthy targets."""

    def __init__(self, spec: FleetSpec | None = None) -> None:
        self.spec = spec or FleetSpec.example("demo")
        self.desired = self.spec.capacity.desired
        self.scale_calls: list[dict[str, Any]] = []
        self.status_calls = 0
        self.scale_error: Exception | None = None
        self.status_error: Exception | None = None
        self.closed = False
        self.url = "http://127.0.0.1:9"
        self.lock = threading.Lock()

    def scale(self, **kwargs: Any) -> None:
        self.scale_calls.append(kwargs)
        if self.scale_error is not None:
            raise self.scale_error
        cap = self.spec.capacity
        new = {"min": cap.min, "desired": self.desired, "max": cap.max}
        new.update({k: v for k, v in kwargs.items() if k in new})
        if (
            "desired" not in kwargs
        ):  # like LocalFleet.scale and AWS: the current desired is clamped into the bounds
            new["desired"] = min(max(new["desired"], new["min"]), new["max"])
        self.spec = self.spec.replace(capacity=CapacitySpec(**new))  # raises SpecError like a real fleet
        self.desired = new["desired"]

    def status(self) -> pd.DataFrame:
        with self.lock:
            self.status_calls += 1
        if self.status_error is not None:
            raise self.status_error
        rows = [
            {
                "target": f"t{i}",
                "address": f"127.0.0.1:{8000 + i}",
                "state": "in_service",
                "health": "healthy",
                "launched_at": pd.Timestamp("2025-01-01", tz="UTC"),
                "pid": 100 + i,
            }
            for i in range(self.desired)
        ]
        rows.append(
            {
                "target": "old",
                "address": "127.0.0.1:7999",
                "state": "terminated",
                "health": "unused",
                "launched_at": pd.Timestamp("2025-01-01", tz="UTC"),
                "pid": 99,
            }
        )
        return pd.DataFrame(rows)

    def metrics(self, *a: Any, **k: Any) -> pd.DataFrame:
        return empty_metric_frame()

    def events(self, *a: Any, **k: Any) -> pd.DataFrame:
        return events_frame([])

    def decisions(self) -> pd.DataFrame:
        return pd.DataFrame(columns=["timestamp", "action", "desired_before", "desired_after", "reason"])

    @property
    def capacity(self) -> tuple[int, int, int]:
        cap = self.spec.capacity
        return cap.min, self.desired, cap.max

    def close(self) -> None:
        self.closed = True


class FakeAwsFleet(FakeFleet):
    """A fleet with destroy(confirm=), as the AWS backend has."""

    stack_name = "mlops-lb-demo-dev"

    def __init__(self) -> None:
        super().__init__()
        self.destroyed_with: str | None = None

    def destroy(self, *, confirm: str) -> None:
        self.destroyed_with = confirm


class FakeResult:
    def __init__(self, n: int) -> None:
        self.n = n

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.n,
            "errors": 0,
            "offered_rps": 10.0,
            "achieved_rps": 10.0,
            "p50_s": 0.01,
            "p99_s": 0.05,
            "max_s": 0.09,
        }


class FakeRun:
    """A load that emits ``intervals`` rows, then either ends or (``block=True``) waits for stop()."""

    def __init__(self, on_interval: Any, intervals: int, block: bool, fail: Exception | None) -> None:
        self.stopped = threading.Event()
        self.stop_calls = 0
        self.intervals = intervals
        self.fail = fail
        self.block = block
        t0 = pd.Timestamp("2025-01-01", tz="UTC")
        for i in range(intervals):
            on_interval(
                {
                    "interval_start": t0 + pd.Timedelta(seconds=i),
                    "offered_rps": 10.0 + i,
                    "achieved_rps": 10.0 + i,
                    "ok": 10,
                    "errors": 0,
                    "p50_s": 0.01,
                    "p90_s": 0.02,
                    "p99_s": 0.03 + i / 100,
                    "p999_s": 0.04,
                    "max_s": 0.05,
                }
            )

    def stop(self) -> None:
        self.stop_calls += 1
        self.stopped.set()

    def result(self, timeout: float | None = None) -> FakeResult:
        if self.block:
            assert self.stopped.wait(10), "the panel never stopped the load"
        if self.fail is not None:
            raise self.fail
        return FakeResult(self.intervals * 10)


class FakeStartLoad:
    """Records each call and returns a FakeRun."""

    def __init__(
        self,
        intervals: int = 3,
        block: bool = False,
        fail: Exception | None = None,
        start_error: Exception | None = None,
    ) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.runs: list[FakeRun] = []
        self.intervals, self.block, self.fail, self.start_error = intervals, block, fail, start_error

    def __call__(self, url: str, profile: Any, payloads: Any = None, **kwargs: Any) -> FakeRun:
        self.calls.append((url, profile, kwargs))
        if self.start_error is not None:
            raise self.start_error
        run = FakeRun(kwargs["on_interval"], self.intervals, self.block, self.fail)
        self.runs.append(run)
        return run


class FakeBundle:
    def __init__(self, path: Any) -> None:
        self.path = path
        self.written: dict[str, Any] = {}
        self.finalized = False
        self.captured: list[Any] = []

    def capture(self, fleet: Any, **window: Any) -> list[str]:
        self.captured.append(fleet)
        self.write_metrics(fleet.metrics(**window))
        self.write_events(fleet.events(**window))
        return []

    def write_json(self, name: str, data: Any) -> None:
        self.written[name] = data

    def write_metrics(self, df: Any) -> None:
        self.written["metrics"] = df

    def write_events(self, df: Any) -> None:
        self.written["events"] = df

    def finalize(self) -> None:
        self.finalized = True


__all__ = ["FakeAwsFleet", "FakeBundle", "FakeFleet", "FakeStartLoad", "InlineExecutor"]
