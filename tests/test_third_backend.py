"""A third backend, registered in a test only: open_fleet, the Fleet protocol and the CLI take it unchanged."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb import fleet as fleet_mod
from mlops_lb.cli import main
from mlops_lb.fleet import Capacity, Fleet, OnOutput, open_fleet, register_backend
from mlops_lb.frames import decisions_frame, empty_metric_frame, events_frame


class MemoryFleet:
    """Targets that live in a dict: what a new backend (k8s, another cloud) has to provide, and no more."""

    launched: ClassVar[dict[str, Capacity]] = {}  # by spec name: what "the cloud" keeps between CLI calls

    def __init__(self, spec: ml.FleetSpec) -> None:
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
        return pd.DataFrame(rows, columns=list(ml.frames.STATUS_COLUMNS))

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


@pytest.fixture
def mem_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_mod, "_REGISTRY", dict(fleet_mod._REGISTRY))  # registered for this test only
    monkeypatch.setattr(MemoryFleet, "launched", {})
    register_backend("mem", f"{__name__}:MemoryFleet", in_process=False, description="targets in a dict")


def test_open_fleet_gives_a_fleet(mem_backend: None) -> None:
    """open_fleet builds it by name; it satisfies the Fleet protocol; scale() clamps like the built-in ones."""
    with open_fleet({"name": "demo", "capacity": {"min": 1, "desired": 2, "max": 4}}, backend="mem") as fleet:
        assert isinstance(fleet, Fleet) and fleet.launch() == "http://mem/demo"
        fleet.scale(max=1)
        assert fleet.capacity == (1, 1, 1) and len(fleet.status()) == 1
        with pytest.raises(ml.SpecError, match="did you mean 'desired'"):
            fleet.scale(desird=3)  # type: ignore[call-arg]


def test_a_backend_without_a_required_member_is_not_a_fleet() -> None:
    """The protocol check is real: MemoryFleet passes it, the same class without metric_period_s does not."""

    skip = {"metric_period_s", "__dict__", "__weakref__"}
    NoPeriod = type("NoPeriod", (), {k: v for k, v in vars(MemoryFleet).items() if k not in skip})
    spec = ml.FleetSpec(name="demo")
    assert isinstance(MemoryFleet(spec), Fleet) and MemoryFleet(spec).metric_period_s == 60.0
    assert not isinstance(NoPeriod(spec), Fleet)


def test_the_local_fleet_reports_its_sampler_period_before_launch() -> None:
    """LocalFleet.metric_period_s is spec.local.period_s (what the report and replay read); no process starts."""
    spec = ml.FleetSpec(name="demo").replace(local=ml.LocalSpec(period_s=0.5))
    fleet = open_fleet(spec, backend="local")
    try:
        assert isinstance(fleet, Fleet) and fleet.metric_period_s == 0.5
    finally:
        fleet.close()


def test_the_cli_drives_it_without_naming_it(
    mem_backend: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """up, scale and status reach the new backend through --backend alone (no branch on its name)."""
    spec = tmp_path / "fleet.yaml"
    ml.FleetSpec(name="cli", capacity=ml.CapacitySpec(min=1, desired=1, max=3)).to_yaml(spec)
    assert main(["up", str(spec), "--backend", "mem"]) == 0
    assert main(["scale", str(spec), "--backend", "mem", "--desired", "3"]) == 0
    capsys.readouterr()
    assert main(["status", str(spec), "--backend", "mem"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("http://mem/cli") and {"m-0", "m-1", "m-2"} <= set(out.split())
    assert main(["scale", str(spec), "--backend", "mem", "--desired", "9"]) == 2  # above max: a SpecError
