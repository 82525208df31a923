"""The router tier's sync agent: what each router instance runs to keep its HAProxy's model slots current.

The model instances sit behind no target group (the ALB's target group holds the routers; a target group no load
balancer uses reports its targets ``unused``, ``Target.NotInUse``, API_TargetHealth), so each router finds them
itself: every ``interval`` seconds it asks Auto Scaling for the model group's ``InService`` instances
(DescribeAutoScalingGroups) and EC2 for their private addresses (DescribeInstances), then moves HAProxy's
pre-declared slots (``server-template m 1-N``) with the Runtime API: a new instance takes the lowest free slot
(``set server addr`` + ``state ready``; HAProxy's own health checks decide when it gets traffic), a departed one
is drained, then put back in maintenance on the next round. Slots, not ``add server``: HAProxy 2.4 (what
AL2023-era RPM distributions ship) has no stable dynamic ``add server``, and a fixed slot keeps a server's id,
which consistent hashing places on the ring, for the instance's whole life.

This module runs on the router with the standard library, :mod:`mlops_lb.haproxy_runtime` and
:mod:`mlops_lb.errors` only (the router's user data unpacks those three files from the wheel): it must never
import anything else of the package. The decision (:func:`plan`) is a pure function of HAProxy's slots and the
group's instances; a failed AWS call changes nothing (an API error must not empty the backend).

Example (on a router; the user data writes this into a systemd unit)::

    python -m mlops_lb.aws._router_agent --group llm-asg-1a2b3c --region us-east-1 --port 8080 \\
        --socket /opt/mlops_lb/router/admin.sock --interval 5
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..haproxy_runtime import RuntimeApi, RuntimeApiError, ServerState

__all__ = ["BACKEND", "SLOT_PREFIX", "Action", "discover", "main", "plan"]

log = logging.getLogger("mlops_lb.router")

BACKEND = "models"
SLOT_PREFIX = "m"
# srv_admin_state bits (HAProxy's server.h): 0x01 forced maintenance (the config's `disabled` and `set server
# state maint`), 0x08 forced drain. `state ready` clears 0x01 but leaves 0x04 (config maintenance) reported on a
# running server (seen on HAProxy 2.6), so only 0x01 says "slot free".
_FMAINT = 0x01
_FDRAIN = 0x08

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Action:
    """One Runtime API step for one slot: ``addr`` (with ``address``), ``enter`` (out of maintenance, health
    down until its checks pass), or the state ``ready``, ``drain`` or ``maint``."""

    slot: str
    op: str
    address: str = ""

    def __str__(self) -> str:
        return f"{self.op} {self.slot}" + (f" {self.address}" if self.address else "")


def plan(slots: Iterable[ServerState], wanted: Mapping[str, str]) -> list[Action]:
    """The steps that make HAProxy's ``slots`` serve exactly the private addresses in ``wanted`` (id -> address).

    A slot already holding a wanted address keeps it (a draining one is made ready again); a wanted address
    without a slot takes a free slot, preferring one that held that address before, else the lowest id; a
    serving slot whose address is no longer wanted is drained, and a drained one put in maintenance. When slots
    run out the extra instances wait (logged) rather than displace a serving one.

    Example::

        plan([ServerState("models", 1, "m1", "192.0.2.1", 8080, 0, 5, 1, 0, 0)], {"i-1": "10.0.1.5"})
        # [Action("m1", "addr", "10.0.1.5"), Action("m1", "enter")]
    """
    ordered = sorted(slots, key=lambda s: s.server_id)
    want = set(wanted.values())
    out: list[Action] = []
    held: set[str] = set()
    for s in ordered:
        free = bool(s.admin_state & _FMAINT)
        if free:
            continue
        if s.address in want and s.address not in held:
            held.add(s.address)
            if s.admin_state & _FDRAIN:  # it came back (or a drain was premature): serve again
                out.append(Action(s.name, "ready"))
        elif s.admin_state & _FDRAIN:
            out.append(Action(s.name, "maint"))
        else:
            out.append(Action(s.name, "drain"))
    free_slots = [s for s in ordered if s.admin_state & _FMAINT]
    for address in sorted(want - held):
        if not free_slots:
            log.warning("router: no free slot for %s (all %d slots used)", address, len(ordered))
            continue
        reuse = [s for s in free_slots if s.address == address]
        slot = (reuse or free_slots)[0]
        free_slots.remove(slot)
        if slot.address != address:
            out.append(Action(slot.name, "addr", address))
        # Ready but down: an InService model instance may still be booting (its group uses EC2 health checks), so
        # it gets a request only after `rise` passing checks.
        out.append(Action(slot.name, "enter"))
    return out


def _aws(run: Run, argv: Sequence[str]) -> dict[str, object] | None:
    proc = run(["aws", *argv, "--output", "json"])
    if proc.returncode != 0:
        log.warning(
            "router: aws %s failed (rc %s): %s", " ".join(argv[:2]), proc.returncode, proc.stderr[-300:]
        )
        return None
    try:
        answer = json.loads(proc.stdout or "{}")
    except ValueError:
        log.warning("router: aws %s answered no JSON", " ".join(argv[:2]))
        return None
    return answer if isinstance(answer, dict) else None


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def discover(group: str, region: str, *, run: Run = _run) -> dict[str, str] | None:
    """``{instance id: private IPv4}`` of the group's InService instances; None when either call failed.

    Shapes are the APIs' (API_DescribeAutoScalingGroups: ``AutoScalingGroups[].Instances[].{InstanceId,
    LifecycleState}``; API_DescribeInstances: ``Reservations[].Instances[].{InstanceId, PrivateIpAddress}``).
    """
    asg = _aws(
        run,
        [
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            group,
            "--region",
            region,
        ],
    )
    if asg is None:
        return None
    groups = asg.get("AutoScalingGroups") or []
    if not isinstance(groups, list) or not groups:
        log.warning("router: group %s not found", group)
        return None
    ids = [
        str(i["InstanceId"])
        for i in groups[0].get("Instances") or []
        if isinstance(i, dict) and i.get("LifecycleState") == "InService" and i.get("InstanceId")
    ]
    if not ids:
        return {}
    ec2 = _aws(run, ["ec2", "describe-instances", "--instance-ids", *ids, "--region", region])
    if ec2 is None:
        return None
    out: dict[str, str] = {}
    reservations: Any = ec2.get("Reservations") or []
    for res in reservations:
        for inst in res.get("Instances") or []:
            if inst.get("InstanceId") in ids and inst.get("PrivateIpAddress"):
                out[str(inst["InstanceId"])] = str(inst["PrivateIpAddress"])
    return out


def apply(api: RuntimeApi, actions: Iterable[Action], *, port: int) -> None:
    """Send ``actions`` to HAProxy in order (each one logged)."""
    for a in actions:
        log.info("router: %s", a)
        if a.op == "addr":
            api.set_addr(BACKEND, a.slot, a.address, port)
        elif a.op == "enter":
            api.ready_down(BACKEND, a.slot)
        else:
            api.set_state(BACKEND, a.slot, a.op)


def sync_once(api: RuntimeApi, group: str, region: str, *, port: int, run: Run = _run) -> list[Action] | None:
    """One round: discover, plan, apply. None (and nothing changed) when discovery failed."""
    wanted = discover(group, region, run=run)
    if wanted is None:
        return None
    slots = [s for s in api.show_servers_state(BACKEND) if s.name.startswith(SLOT_PREFIX)]
    actions = plan(slots, wanted)
    apply(api, actions, port=port)
    return actions


def main(argv: Sequence[str] | None = None) -> int:
    """The agent's loop (the router's ``mlops-lb-router-sync`` unit runs it until stopped)."""
    ap = argparse.ArgumentParser(prog="mlops_lb.aws._router_agent")
    ap.add_argument("--group", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    api = RuntimeApi(args.socket)
    while True:
        try:
            sync_once(api, args.group, args.region, port=args.port)
        except (OSError, RuntimeApiError) as exc:  # HAProxy restarting: its socket is back in a moment
            log.warning("router: runtime API unavailable: %s", exc)
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
