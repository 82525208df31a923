"""THROWAWAY: a built-in backend whose targets live in a dict (what adding a backend touches).

Example::

    ml.open_fleet({"name": "demo"}, backend="memory").launch()
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import pandas as pd

from .fleet import Capacity, OnOutput
from .frames import STATUS_COLUMNS, decisions_frame, empty_metric_frame, events_frame
from .spec import FleetSpec


def check_spec(spec: FleetSpec) -> None:
    """No rules of its own."""


class MemoryFleet:
    """Targets that live in a dict: what a new backend (k8s, another cloud) has to provide, and no more."""

    launched: ClassVar[dict[str, Capacity]] = {}  # by spec name: what "the cloud" keeps between CLI calls

    def __init__(self, spec: FleetSpec) -> None:
        self.spec, self.closed = spec, False

    @property
    def url(self) -> str:
        return f"http://mem/{self.spec.name}"

    @property
    def capacity(self) -> Capacity:
        return self.launched.get(self.spec.name, Capacity(0, 0, 0))

    @property
    def metric_period_s(self) -> float:
        return 60.0

    def launch(self, *, on_output: OnOutput | None = None) -> str:
        c = self.spec.capacity
        self.launched.setdefault(self.spec.name, Capacity(c.min, c.desired, c.max))
        return self.url

    def scale(self, **changes: Any) -> None:
        lo, want, hi = self.capacity
        live = self.spec.replace(capacity={"min": lo, "desired": want, "max": hi})
        cap = live.rescaled(**changes).capacity  # the one place scale() keywords are checked and clamped
        self.launched[self.spec.name] = Capacity(cap.min, cap.desired, cap.max)

    def status(self) -> pd.DataFrame:
        rows = [
            {
                "target": f"m-{i}",
                "address": "mem",
                "state": "in_service",
                "health": "healthy",
                "launched_at": None,
            }
            for i in range(self.capacity.desired)
        ]
        return pd.DataFrame(rows, columns=list(STATUS_COLUMNS))

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: float | None = None
    ) -> pd.DataFrame:
        return empty_metric_frame(api_calls=0, metrics_requested=0)

    def events(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        return events_frame([])

    def decisions(self) -> pd.DataFrame:
        return decisions_frame([])

    def logs(self, target: str, *, tail: int = 200) -> str:
        return ""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> MemoryFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
