"""ASG emulator logic that needs no processes: re-registration after a balancer restart."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_lb.local.asg import AsgEmulator, Instance
from mlops_lb.local.haproxy import RuntimeApiError
from mlops_lb.spec import FleetSpec


class FakeWorker:
    def __init__(self, port: int) -> None:
        self.address = f"127.0.0.1:{port}"
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class FakeApi:
    """Records admin commands; refuses to add the servers named in ``refuse``."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.added: list[tuple[str, str]] = []

    def add_server(self, backend: str, name: str, *_: Any, **__: Any) -> None:
        if name in self.refuse:
            raise RuntimeApiError(f"add server {backend}/{name}: refused")
        self.added.append((backend, name))

    def __getattr__(self, name: str) -> Any:  # set_weight, set_state, command, del_server...
        return lambda *a, **k: None


def test_reregister_after_restart_replaces_what_the_new_balancer_refuses(tmp_path: Path) -> None:
    """A target the restarted HAProxy refuses is not left believed-registered: it is replaced; the others are back."""
    api = FakeApi(refuse={"i-local0002"})
    events: list[tuple[str, str, str]] = []
    asg = AsgEmulator(FleetSpec(name="t"), api=api, emit=lambda *e: events.append(e), work_dir=tmp_path)  # type: ignore[arg-type]
    now = datetime.now(timezone.utc)
    for n in (1, 2, 3):
        asg.instances.append(
            Instance(
                id=f"i-local000{n}",
                server_id=n,
                worker=FakeWorker(9000 + n),
                launched_at=now,  # type: ignore[arg-type]
                launched_mono=time.monotonic(),
                state="in_service",
                health="healthy",
                weight=1,
                registered=True,
            )
        )
    assert asg.reregister_all() == 2
    by_id = {i.id: i for i in asg.instances}
    assert by_id["i-local0001"].registered and by_id["i-local0003"].registered
    refused = by_id["i-local0002"]
    assert not refused.registered and refused.worker.terminated and refused.state == "draining"  # type: ignore[attr-defined]
    assert ("tg", "i-local0002") not in api.added


class WeightApi(FakeApi):
    """Records ``set weight`` per backend and server."""

    def __init__(self) -> None:
        super().__init__(refuse=set())
        self.weights: dict[tuple[str, str], int] = {}

    def set_weight(self, backend: str, name: str, weight: int) -> None:
        self.weights[(backend, name)] = weight


def test_a_rollout_weight_reaches_the_routing_policies_backends_too(tmp_path: Path) -> None:
    """A rollout's slot share (set_traffic_weight) holds under every routing policy: the policy backends get the same
    0-256 weight as the checked one, and go back to the smooth-ring weight when the rollout ends (weight 1)."""
    from mlops_lb.local.routing import POLICY_WEIGHT

    api = WeightApi()
    asg = AsgEmulator(FleetSpec(name="t"), api=api, emit=lambda *e: None, work_dir=tmp_path)  # type: ignore[arg-type]
    assert asg.policy_backends, "the routing policies' backends exist on every local fleet"
    asg.instances.append(
        Instance(
            id="i-local0001",
            server_id=1,
            worker=FakeWorker(9001),  # type: ignore[arg-type]
            launched_at=datetime.now(timezone.utc),
            launched_mono=time.monotonic(),
            state="in_service",
            health="healthy",
            weight=1,
            registered=True,
            in_open=True,
        )
    )
    asg.set_traffic_weight(28)
    assert {
        be: api.weights[(be, "i-local0001")] for be in (asg.backend, *asg.policy_backends)
    } == dict.fromkeys((asg.backend, *asg.policy_backends), 28)
    asg.set_traffic_weight(1)
    assert all(api.weights[(be, "i-local0001")] == POLICY_WEIGHT for be in asg.policy_backends)
