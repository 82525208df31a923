"""Weighted capacity on the local fleet: with ``weight`` on the spot types, the ASG emulator counts desired capacity
(and the on-demand base) in units, as an Auto Scaling group with WeightedCapacity does.

AWS's rules (read 2026-12-07):

* LaunchTemplateOverrides, WeightedCapacity
  (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_LaunchTemplateOverrides.html): the units of each
  launched instance count toward the desired capacity; Auto Scaling launches instances until the desired capacity
  is totally fulfilled, even if this results in an overage (two units missing, a weight-5 type: three units over).
  MinSize, MaxSize and DesiredCapacity are then in the same units.
* Configure an Auto Scaling group to use instance weights
  (https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-weighting.html): by default every instance
  counts the same toward desired capacity; with weights each counts its units.

No process starts: the workers are stand-ins (the launch path, the purchase-option choice and the counting are
the emulator's own code); the agents are off and the IMDS emulator is a stub.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

import mlops_lb as ml
from mlops_lb.local import asg as asg_mod
from mlops_lb.local import spot as spot_mod
from mlops_lb.local.asg import AsgEmulator
from mlops_lb.local.spot import SpotController

_pids = itertools.count(100_000)


class FakeWorker:
    def __init__(self, port: int) -> None:
        self.pid = next(_pids)
        self.port = port
        self.address = f"127.0.0.1:{port}"


class FakeApi:
    def __getattr__(self, name: str) -> Any:  # add_server, set_state, set_weight...
        return lambda *a, **k: None


class StubImds:
    def __init__(self, on_deregister: Any) -> None:
        self.control_url = "http://127.0.0.1:9/control/deregister"

    def close(self) -> None:
        pass


def _asg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, desired: int, **spot: Any) -> AsgEmulator:
    monkeypatch.setattr(
        asg_mod.WorkerProcess, "start", staticmethod(lambda argv, port, **_: FakeWorker(port))
    )
    monkeypatch.setattr(spot_mod, "ImdsEmulator", StubImds)
    monkeypatch.setattr(SpotController, "run_agents", False)
    spec = ml.FleetSpec(
        name="w",
        target_group={"deregistration_delay_s": 60},
        capacity={"min": 1, "desired": desired, "max": 20, "spot": spot},
    )
    asg = AsgEmulator(spec, api=FakeApi(), emit=lambda *e: None, work_dir=tmp_path)  # type: ignore[arg-type]
    asg.spot = SpotController(spec, asg=asg, api=FakeApi(), emit=lambda *e: None)  # type: ignore[arg-type]
    return asg


def _types(asg: AsgEmulator) -> list[tuple[str, str, int]]:
    return [(i.lifecycle, i.instance_type, i.units) for i in asg.active()]


def test_desired_counts_units_and_may_overshoot_by_less_than_the_largest_weight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # desired 4 units, all spot, types taken in turn: c7i.large (2 units), then c7i.xlarge (3): 5 >= 4, stop.
    asg = _asg(tmp_path, monkeypatch, 4, on_demand_base=0,
               instance_types=[{"type": "c7i.large", "weight": 2}, {"type": "c7i.xlarge", "weight": 3}])  # fmt: skip
    asg._reconcile(time.monotonic())
    assert _types(asg) == [("spot", "c7i.large", 2), ("spot", "c7i.xlarge", 3)]
    assert asg.active_units() == 5 and 0 <= asg.active_units() - 4 <= 3 - 1
    # counted per instance (the old behaviour) it would have launched four
    assert len(asg.active()) == 2
    # a ledger row says what each instance counts
    assert [r["units"] for r in asg.spot.ledger.values()] == [2, 3]  # type: ignore[union-attr]
    # scale-in to 3 units: only an instance whose removal leaves >= 3 units may go (the 2-unit one: 3 left)
    asg.desired = 3
    asg._reconcile(time.monotonic())
    assert _types(asg) == [("spot", "c7i.xlarge", 3)]
    asg.spot.close()  # type: ignore[union-attr]


def test_the_on_demand_base_counts_units_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # base 2 units: one on-demand instance of the first type (weight 2) fills it; the rest is spot
    asg = _asg(tmp_path, monkeypatch, 6, on_demand_base=2, on_demand_percent=0,
               instance_types=[{"type": "c7i.large", "weight": 2}, {"type": "c7i.xlarge", "weight": 4}])  # fmt: skip
    asg._reconcile(time.monotonic())
    od = [t for t in _types(asg) if t[0] == "on-demand"]
    assert od == [("on-demand", "c7i.large", 2)]
    assert asg.active_units() >= 6 and asg.active_units() - 6 <= 4 - 1
    asg.spot.close()  # type: ignore[union-attr]


def test_without_weights_every_instance_is_one_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asg = _asg(tmp_path, monkeypatch, 3, on_demand_base=1, instance_types=["c7i.large", "c7i.xlarge"])
    asg._reconcile(time.monotonic())
    assert [u for *_, u in _types(asg)] == [1, 1, 1] and len(asg.active()) == 3
    asg.spot.close()  # type: ignore[union-attr]
