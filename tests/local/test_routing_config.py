"""The routing policies' HAProxy config, checked by HAProxy 2.6 itself (``haproxy -c``), and the ASG's mirroring.

Each policy's lines encode HAProxy 2.6's documented keywords (Configuration Manual, section 4,
https://docs.haproxy.org/2.6/configuration.html, also /usr/share/doc/haproxy/configuration.txt.gz):

| policy                     | rule                                                                          |
|----------------------------|-------------------------------------------------------------------------------|
| round_robin                | ``balance roundrobin``                                                        |
| least_outstanding_requests | ``balance leastconn``                                                         |
| weighted_random            | ``balance random(1)``: one draw; plain ``random`` draws 2 (power of two)      |
| consistent_hash            | ``balance hdr(<name>)`` + ``hash-type consistent`` + ``hash-balance-factor``  |
|                            | (0 disables bounded load, so the line is left out)                            |
| sticky_cookie              | ``stick-table type string ... expire <s>`` + ``stick on req.cook(<name>)``    |
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import mlops_lb as ml
from mlops_lb.errors import SpecError
from mlops_lb.local.asg import AsgEmulator
from mlops_lb.local.haproxy import render_config
from mlops_lb.local.routing import POLICIES, backend_for, check_policy, policy_backends, write_map


def _spec(**routing: Any) -> ml.FleetSpec:
    return ml.FleetSpec(name="r", server={"kind": "llm-emulator"}, routing=routing)


def _backend(cfg: str, name: str) -> str:
    return cfg.split(f"\nbackend {name}\n", 1)[1].split("\nbackend ", 1)[0]


def test_each_policy_has_its_backend_and_the_frontend_reads_the_map(tmp_path: Path) -> None:
    cfg = render_config(
        _spec(key_header="X-Session", hash_balance_factor=150, cookie_name="sid", cookie_duration_s=600),
        port=8000,
        socket_path=tmp_path / "admin.sock",
    )
    assert f"use_backend %[str(policy),map({tmp_path / 'routing.map'},tg)]" in cfg
    # Fail open stays first: a rule after it would route around the fail-open backend.
    assert cfg.index("use_backend tg_open") < cfg.index("use_backend %[")
    assert "balance roundrobin" in _backend(cfg, "tg_rr")
    assert "balance leastconn" in _backend(cfg, "tg_lor")
    assert "balance random(1)" in _backend(cfg, "tg_wr")
    h = _backend(cfg, "tg_hash")
    assert "balance hdr(X-Session)" in h and "hash-type consistent" in h and "hash-balance-factor 150" in h
    s = _backend(cfg, "tg_sticky")
    assert "stick on req.cook(sid)" in s and "expire 600s" in s and "balance roundrobin" in s
    for be in policy_backends("tg"):
        assert "X-Target-Id %[srv_name]" in _backend(cfg, be)
        assert "check" not in _backend(cfg, be)  # health is mirrored from tg, not checked six times


def test_unbounded_hash_and_sticky_first_placement_follow_the_spec(tmp_path: Path) -> None:
    spec = _spec(hash_balance_factor=0).replace(
        target_group=ml.TargetGroupSpec(algorithm="least_outstanding_requests")
    )
    cfg = render_config(spec, port=8000, socket_path=tmp_path / "admin.sock")
    assert "hash-balance-factor" not in cfg
    # The ALB places a session's first request with the target group's algorithm.
    assert "balance leastconn" in _backend(cfg, "tg_sticky")


@pytest.mark.parametrize("policy", POLICIES)
def test_map_file_names_the_policy_backend(tmp_path: Path, policy: str) -> None:
    write_map(tmp_path / "routing.map", policy)
    assert (tmp_path / "routing.map").read_text() == f"policy {backend_for(policy)}\n"


@pytest.mark.fleet  # runs the haproxy binary
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_2_6_accepts_the_config(tmp_path: Path) -> None:
    write_map(tmp_path / "routing.map", "consistent_hash")
    (tmp_path / "h.cfg").write_text(render_config(_spec(), port=18000, socket_path=tmp_path / "admin.sock"))
    res = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "h.cfg")], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("bad", ["least_conn", "", None, 3, "ALB"])
def test_unknown_policy_is_refused_naming_the_choices(bad: Any) -> None:
    with pytest.raises(SpecError, match="must be one of alb, round_robin") as err:
        check_policy(bad)
    assert err.value.field == "policy"


def test_switch_names_back_to_policy() -> None:
    assert backend_for("alb") == "tg" and backend_for("consistent_hash", "x") == "x_hash"
    assert len({backend_for(p) for p in POLICIES}) == len(POLICIES)


class _Api:
    def __init__(self) -> None:
        self.cmds: list[str] = []

    def add_server(self, backend: str, name: str, *_: Any, **__: Any) -> None:
        self.cmds.append(f"add {backend}/{name}")

    def set_state(self, backend: str, name: str, state: str) -> None:
        self.cmds.append(f"state {backend}/{name} {state}")

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: self.cmds.append(f"{name} {a}")


def test_asg_mirrors_every_target_and_its_health_into_each_policy_backend(tmp_path: Path) -> None:
    """One place (AsgEmulator.mirrors) puts a target in the fail-open and every policy backend, drains and
    removes it there, and mirrors DOWN/UP as maint/ready into the policy backends only (fail-open keeps it)."""
    from datetime import datetime, timezone

    from mlops_lb.haproxy_runtime import StatRow  # noqa: F401 - the shape tick() reads
    from mlops_lb.local.asg import Instance

    api = _Api()
    asg = AsgEmulator(_spec(), api=api, emit=lambda *a: None, work_dir=tmp_path)  # type: ignore[arg-type]
    worker: Any = type("W", (), {"address": "127.0.0.1:9", "terminate": lambda self: None})()
    inst = Instance(
        id="i-1", server_id=1, worker=worker, launched_at=datetime.now(timezone.utc), launched_mono=0.0
    )
    asg._add_open(inst)
    assert [c for c in api.cmds if c.startswith("add")] == [
        f"add {b}/i-1" for b in ("tg_open", *policy_backends())
    ]
    api.cmds.clear()
    inst.health, inst.state = "healthy", "in_service"
    asg._mirror_health(inst, "maint")
    assert api.cmds == [f"state {b}/i-1 maint" for b in policy_backends()]
    api.cmds.clear()
    asg.begin_drain(inst, "scale-in")
    assert {c for c in api.cmds if c.startswith("state")} == {
        f"state {b}/i-1 drain" for b in ("tg_open", *policy_backends())
    }
    api.cmds.clear()
    inst.registered = True
    asg.deregister(inst)
    for b in ("tg", "tg_open", *policy_backends()):
        assert any(c.startswith("del_server") and f"'{b}', 'i-1'" in c for c in api.cmds), b
