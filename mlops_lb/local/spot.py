"""Spot capacity on the local fleet: purchase options, an IMDS emulator, the spot agent, and interruptions.

What happens to a spot target, on the compressed clock (``time_scale = period_s / 60``), as on AWS:

1. **Launch.** Each new instance is on-demand while fewer than ``on_demand_base`` are, then on-demand for
   ``on_demand_percent`` % of the capacity above the base, else spot. Spot instances take the listed types in
   turn; on-demand ones the first (AWS's default on-demand strategy, ``prioritized``). Every spot instance starts
   the **same** :class:`~mlops_lb.serving.spot_agent.SpotAgent` an EC2 instance runs, polling this fleet's IMDS
   emulator (IMDSv2 tokens, 404 until an item exists) every 2 AWS seconds (at least 0.1 s here).
2. **Interruption** (``local_interrupt_at_s``, ``local_interruptions_per_hour`` or ``fleet.interrupt()``): the
   emulator serves ``events/recommendations/rebalance``; with ``capacity_rebalance`` the group launches a
   replacement at once (the at-risk instance stops counting toward desired but keeps serving). After
   ``local_rebalance_lead_s`` it serves ``spot/instance-action`` (the two-minute notice).
3. **The agent** sees the notice on its next poll and POSTs to the emulator's control endpoint, which sets the
   target to ``drain`` in HAProxy at once (the ``DeregisterTargets`` call): no new requests; in-flight ones finish
   within the deregistration delay (<= 90 s, required with spot).
4. **Two minutes after the notice** EC2 reclaims the instance: SIGKILL, no grace. A target still registered (no
   agent) gets requests until its health checks fail. Without rebalancing, the group launches the replacement only
   now (an interrupted instance counts toward desired until it is gone).

Each interruption is one :class:`Interruption` record (times of recommendation, notice, deregistration,
termination, replacement healthy) and the events ``spot_rebalance``, ``spot_notice``, ``spot_agent`` (the
agent's own record) and ``spot_interrupted``.

Example::

    spec = ml.FleetSpec(name="s", target_group={"deregistration_delay_s": 60},
                        capacity={"min": 2, "desired": 2, "max": 4, "spot": {"local_interrupt_at_s": [60]}})
    with ml.open_fleet(spec, backend="local") as fleet:
        fleet.launch(); fleet.interrupt()            # or wait for the scheduled one
        fleet.spot_interruptions()                   # one row per interruption
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import re
import secrets
import signal
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .._aws_rules import SPOT_NOTICE_S
from ..errors import SpecError
from ..serving.spot_agent import Imds, SpotAgent, http_deregister
from ._proc import kill_group

if TYPE_CHECKING:
    from ..haproxy_runtime import RuntimeApi
    from ..spec import FleetSpec

# The ASG emulator imports this module (asg -> spot); these stand for its types so the import graph stays acyclic.
AsgEmulator = Any
Instance = Any
Emit = Any

__all__ = ["AGENT_POLL_AWS_S", "ImdsEmulator", "Interruption", "SpotController"]

log = logging.getLogger(__name__)

AGENT_POLL_AWS_S = (
    2.0  # as the instance's unit (SpotAgentUnit.poll_s); AWS recommends <= 5 s (rule spot-notice)
)
_PATH_RE = re.compile(r"^/t/(?P<target>[\w.-]+)(?P<path>/latest/.*)$")


class ImdsEmulator:
    """IMDSv2 for every local target on one 127.0.0.1 port: ``/t/<target>/latest/...``; plus the control
    endpoint ``POST /control/deregister`` (``{"target": id}``) that stands in for the ELB API.

    Items answer 404 until :meth:`set_item` sets them; a GET without a valid token answers 401, as IMDSv2 does
    with ``HttpTokens: required``.

    Example::

        imds = ImdsEmulator(on_deregister=print)
        imds.set_item("i-1", "spot/instance-action", '{"action": "terminate", "time": "..."}')
        Imds(imds.base_url("i-1")).get("/latest/meta-data/spot/instance-action")
        imds.close()
    """

    def __init__(self, on_deregister: Any) -> None:
        self._items: dict[str, dict[str, str]] = {}
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.on_deregister = on_deregister
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                m = _PATH_RE.match(self.path)
                if m is None or m["path"] != "/latest/api/token":
                    return self._send(404)
                if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._send(400, "missing X-aws-ec2-metadata-token-ttl-seconds")
                token = secrets.token_urlsafe(24)
                with emulator._lock:
                    emulator._tokens.add(token)
                self._send(200, token)

            def do_GET(self) -> None:
                m = _PATH_RE.match(self.path)
                if m is None:
                    return self._send(404)
                with emulator._lock:
                    if self.headers.get("X-aws-ec2-metadata-token") not in emulator._tokens:
                        return self._send(401)
                    items = emulator._items.get(m["target"], {})
                    key = m["path"].removeprefix("/latest/meta-data/")
                    body = items.get(key)
                if key == "instance-id":
                    body = m["target"]
                self._send(200, body) if body is not None else self._send(404)

            def do_POST(self) -> None:
                if self.path != "/control/deregister":
                    return self._send(404)
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    target = str(json.loads(self.rfile.read(n))["target"])
                except (ValueError, KeyError, TypeError):
                    return self._send(400, 'body must be {"target": id}')
                try:
                    emulator.on_deregister(target)
                except Exception as exc:
                    return self._send(400, f"{type(exc).__name__}: {exc}")
                self._send(200, "{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="imds-emulator", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def base_url(self, target: str) -> str:
        """What the target's agent uses as ``http://169.254.169.254``."""
        return f"http://127.0.0.1:{self.port}/t/{target}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/control/deregister"

    def set_item(self, target: str, item: str, body: str) -> None:
        """Serve ``/latest/meta-data/<item>`` for ``target`` from now on."""
        with self._lock:
            self._items.setdefault(target, {})[item] = body

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


@dataclass
class Interruption:
    """One spot interruption, times in seconds since the fleet's spot controller started (local clock)."""

    target: str
    cause: str
    triggered_s: float
    rebalance_s: float | None = None
    notice_s: float | None = None
    deregistered_s: float | None = None  # the agent's call reached the balancer (target set to drain)
    terminated_s: float | None = None
    released_s: float | None = None  # stopped counting toward desired: a replacement may launch
    replacement: str = ""
    replacement_healthy_s: float | None = None
    in_flight_at_notice: int = 0


@dataclass
class _Agent:
    thread: threading.Thread
    stop: threading.Event


class SpotController:
    """Drives spot targets of one :class:`~mlops_lb.local.asg.AsgEmulator`; called from its controller thread,
    except :meth:`interrupt` and the control endpoint, which only queue work for it (the ASG is not
    thread-safe).

    ``run_agents = False`` launches spot instances without their agent (what a user data without the unit does):
    the notice then goes unanswered and EC2's SIGKILL meets live traffic. Tests use it to show what the agent
    prevents."""

    run_agents: bool = True

    def __init__(self, spec: FleetSpec, *, asg: AsgEmulator, api: RuntimeApi, emit: Emit) -> None:
        spot = spec.capacity.spot
        if spot is None:
            raise SpecError("capacity.spot", "is needed for a SpotController")
        self.spec, self.spot, self.asg, self.api, self.emit = spec, spot, asg, api, emit
        self.scale = spec.local.time_scale
        self.notice_s = SPOT_NOTICE_S * self.scale
        self.poll_s = max(AGENT_POLL_AWS_S * self.scale, 0.1)
        self.lead_s = spot.local_rebalance_lead_s * self.scale
        self.types = spot.types_for(spec.instance.type)
        # with weights (AWS WeightedCapacity), desired and the on-demand base count units, not instances
        self.weighted = any(t.weight is not None for t in self.types)
        self.t0 = time.monotonic()
        # the same moment on the wall clock: load records and events are UTC, the records here local seconds
        self.t0_wall = time.time()
        self._rng = random.Random(spot.local_seed)
        self._schedule = [t * self.scale for t in spot.local_interrupt_at_s]
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._deregs: queue.Queue[tuple[str, float]] = queue.Queue()
        self._records: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._agents: dict[str, _Agent] = {}
        self._spot_seq = 0
        self._last_tick = self.t0
        self.interruptions: list[Interruption] = []
        self._by_target: dict[str, Interruption] = {}
        self.ledger: dict[str, dict[str, Any]] = {}  # target -> lifecycle, type, launched_s, ended_s
        self.imds = ImdsEmulator(on_deregister=self._on_deregister)

    # ------------------------------------------------------------------ called by the ASG
    def on_launch(self, inst: Instance) -> None:
        """Pick the purchase option and type of a new instance; a spot one starts its agent."""
        live = [i for i in self.asg.instances if i is not inst and i.state not in ("terminated",)]
        live = [i for i in live if i.stopping_since is None and i.state != "warm_pool"]
        # units: one per instance, or its type's weight (the base and the percentage count units on AWS too)
        on_demand = sum(i.units for i in live if i.lifecycle == "on-demand")
        base = self.spot.on_demand_base
        above = sum(i.units for i in live) - min(on_demand, base)
        od_above = max(0, on_demand - base)
        if on_demand < base or (
            self.spot.on_demand_percent
            and od_above < math.ceil((above + 1) * self.spot.on_demand_percent / 100)
        ):
            lifecycle = "on-demand"
        else:
            lifecycle = "spot"
        if lifecycle == "spot":
            chosen = self.types[self._spot_seq % len(self.types)]
            self._spot_seq += 1
        else:
            chosen = self.types[0]
        itype = chosen.type
        inst.lifecycle, inst.instance_type, inst.units = lifecycle, itype, chosen.weight or 1
        self.ledger[inst.id] = {
            "target": inst.id,
            "lifecycle": lifecycle,
            "instance_type": itype,
            "units": inst.units,
            "launched_s": time.monotonic() - self.t0,
            "ended_s": None,
        }
        if lifecycle == "spot" and self.run_agents:
            self._start_agent(inst.id)

    def _start_agent(self, target: str) -> None:
        stop = threading.Event()
        control = self.imds.control_url

        def record(ev: dict[str, Any]) -> None:
            self._records.put((target, ev))

        agent = SpotAgent(
            Imds(self.imds.base_url(target)),
            deregister=lambda: http_deregister(control, target),
            record=record,
            poll_s=self.poll_s,
        )
        th = threading.Thread(target=agent.run, args=(stop,), name=f"spot-agent-{target}", daemon=True)
        self._agents[target] = _Agent(th, stop)
        th.start()

    def _on_deregister(self, target: str) -> None:
        """The control endpoint (the agent's DeregisterTargets): drain in HAProxy now, bookkeeping on the tick."""
        known = {i.id for i in self.asg.instances}
        if target not in known:
            raise KeyError(f"no target {target!r} in this fleet")
        for backend in (self.asg.backend, self.asg.open_backend):
            try:
                self.api.set_state(backend, target, "drain")
            except Exception as exc:  # not in that backend (yet or any more): nothing to drain there
                log.debug("drain %s/%s: %s", backend, target, exc)
        self._deregs.put((target, time.monotonic()))

    def interrupt(self, target: str | None = None) -> None:
        """Queue an interruption of ``target`` (None: the oldest spot target in service); thread-safe."""
        self._requests.put(target)

    def tick(self, now: float) -> None:
        """Triggers, notices, deregistrations, terminations and replacement bookkeeping for one ASG pass."""
        dt, self._last_tick = now - self._last_tick, now
        rel = now - self.t0
        while self._schedule and self._schedule[0] <= rel:
            self._schedule.pop(0)
            self._trigger(None, "scheduled (capacity.spot.local_interrupt_at_s)", now)
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                break
            self._trigger(req, "on demand (fleet.interrupt)", now)
        rate = self.spot.local_interruptions_per_hour
        if rate > 0 and dt > 0:
            p = 1.0 - math.exp(-rate / 3600.0 / self.scale * dt)
            for inst in self._candidates():
                if self._rng.random() < p:
                    self._trigger(inst.id, f"random ({rate:g} per spot instance-hour)", now)
        self._drain_records()
        while True:
            try:
                target, at = self._deregs.get_nowait()
            except queue.Empty:
                break
            self._deregistered(target, at)
        for rec in self.interruptions:
            self._advance(rec, now)
        for target, agent in list(self._agents.items()):
            owner = self._inst(target)
            if owner is None or owner.state == "terminated":
                agent.stop.set()
                del self._agents[target]
                if target in self.ledger and self.ledger[target]["ended_s"] is None:
                    self.ledger[target]["ended_s"] = now - self.t0
        for inst in self.asg.instances:
            row = self.ledger.get(inst.id)
            if row is not None and row["ended_s"] is None and inst.state == "terminated":
                row["ended_s"] = now - self.t0

    # ------------------------------------------------------------------ internals
    def _inst(self, target: str) -> Instance | None:
        return next((i for i in self.asg.instances if i.id == target), None)

    def _candidates(self) -> list[Instance]:
        return [
            i
            for i in self.asg.instances
            if i.lifecycle == "spot" and i.state == "in_service" and i.id not in self._by_target
        ]

    def _trigger(self, target: str | None, cause: str, now: float) -> None:
        if target is None:
            cands = sorted(self._candidates(), key=lambda i: i.launched_mono)
            if not cands:
                self.emit("spot_notice", "", f"{cause}: no spot target in service to interrupt; skipped")
                return
            inst: Instance | None = cands[0]
        else:
            inst = self._inst(target)
        if inst is None or inst.lifecycle != "spot" or inst.state not in ("pending", "in_service"):
            what = "not a spot target in service" if inst is not None else "not a target of this fleet"
            self.emit("spot_notice", target or "", f"{cause}: {what}; skipped")
            return
        if inst.id in self._by_target:
            return
        rec = Interruption(target=inst.id, cause=cause, triggered_s=now - self.t0)
        self.interruptions.append(rec)
        self._by_target[inst.id] = rec
        inst.spot_hold = True
        wall = datetime.now(timezone.utc)
        self.imds.set_item(
            inst.id, "events/recommendations/rebalance", json.dumps({"noticeTime": _iso(wall)})
        )
        rec.rebalance_s = now - self.t0
        if self.spot.capacity_rebalance:
            inst.spot_released = (
                True  # the group launches a replacement now; this one serves until its notice
            )
            rec.released_s = rec.rebalance_s
            self.emit(
                "spot_rebalance",
                inst.id,
                f"{cause}: rebalance recommendation served; capacity rebalancing launches a replacement now",
            )
        else:
            self.emit(
                "spot_rebalance", inst.id, f"{cause}: rebalance recommendation served (rebalancing off)"
            )
        if self.lead_s <= 0:
            self._notice(rec, inst, now)

    def _notice(self, rec: Interruption, inst: Instance, now: float) -> None:
        ends = datetime.now(timezone.utc) + timedelta(seconds=self.notice_s)
        self.imds.set_item(
            inst.id, "spot/instance-action", json.dumps({"action": "terminate", "time": _iso(ends)})
        )
        rec.notice_s = now - self.t0
        rec.in_flight_at_notice = inst.scur
        self.emit(
            "spot_notice",
            inst.id,
            f"two-minute interruption notice served ({self.notice_s:.2f} s here); {inst.scur} in flight",
        )

    def _deregistered(self, target: str, at: float) -> None:
        rec = self._by_target.get(target)
        inst = self._inst(target)
        if rec is None or inst is None:
            return
        rec.deregistered_s = at - self.t0
        since = rec.deregistered_s - (rec.notice_s if rec.notice_s is not None else rec.deregistered_s)
        if inst.state in ("pending", "in_service"):
            self.asg.begin_drain(
                inst, f"spot interruption notice: the agent deregistered it {since:.2f} s after"
            )

    def _advance(self, rec: Interruption, now: float) -> None:
        inst = self._inst(rec.target)
        rel = now - self.t0
        if inst is not None and rec.notice_s is None and rel >= (rec.triggered_s + self.lead_s):
            self._notice(rec, inst, now)
        due = rec.notice_s is not None and rec.terminated_s is None and rel >= rec.notice_s + self.notice_s
        if inst is not None and rec.notice_s is not None and due:
            rec.terminated_s = rel
            if rec.released_s is None:
                rec.released_s = rel
            inst.spot_released = True
            if inst.stopping_since is None and inst.state != "terminated":
                # EC2 reclaims it: no grace. Nothing deregisters it here: a target still registered (no agent)
                # keeps getting requests until the health checks mark it down, as behind an ALB; the ASG then
                # replaces the dead process (AsgEmulator._replace_dead).
                kill_group(inst.worker.pid, signal.SIGKILL)
            self.emit(
                "spot_interrupted",
                rec.target,
                f"EC2 reclaimed the instance {rel - rec.notice_s:.2f} s after the notice ({rec.cause})",
            )
        if rec.released_s is not None and not rec.replacement:
            claimed = {r.replacement for r in self.interruptions}
            later = [
                i
                for i in self.asg.instances
                if i.launched_mono - self.t0 >= rec.released_s - 1e-6
                and i.id != rec.target
                and i.id not in claimed
                and i.id not in self._by_target
            ]
            if later:
                rec.replacement = min(later, key=lambda i: i.launched_mono).id
        if rec.replacement and rec.replacement_healthy_s is None:
            rep = self._inst(rec.replacement)
            if rep is not None and rep.state == "in_service" and rep.health == "healthy":
                rec.replacement_healthy_s = rel

    def _drain_records(self) -> None:
        while True:
            try:
                target, ev = self._records.get_nowait()
            except queue.Empty:
                return
            self.emit("spot_agent", target, f"agent: {ev.get('event')}: {ev.get('detail')}")

    def at(self, rel_s: float | None) -> datetime | None:
        """UTC wall-clock time of ``rel_s`` local seconds since this controller started (None stays None)."""
        return None if rel_s is None else datetime.fromtimestamp(self.t0_wall + rel_s, timezone.utc)

    def ledger_rows(self) -> list[dict[str, Any]]:
        """The ledger (every instance's purchase option, type and life), with UTC ``launched_at``/``ended_at``."""
        return [
            {**row, "launched_at": self.at(row["launched_s"]), "ended_at": self.at(row["ended_s"])}
            for row in self.ledger.values()
        ]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per interruption, with derived durations in local seconds and each moment in UTC
        (``<moment>_at``), so a run's load records can be matched to it."""
        out = []
        for rec in self.interruptions:
            row = asdict(rec)
            for key in _MOMENTS:
                row[f"{key}_at"] = self.at(getattr(rec, f"{key}_s"))
            n = rec.notice_s
            row["notice_to_deregistered_s"] = (
                None if n is None or rec.deregistered_s is None else rec.deregistered_s - n
            )
            row["notice_to_replacement_healthy_s"] = (
                None if n is None or rec.replacement_healthy_s is None else rec.replacement_healthy_s - n
            )
            out.append(row)
        return out

    def close(self) -> None:
        for agent in self._agents.values():
            agent.stop.set()
        for agent in self._agents.values():
            agent.thread.join(timeout=2)
        self._agents.clear()
        self.imds.close()


_MOMENTS = ("triggered", "rebalance", "notice", "deregistered", "terminated", "replacement_healthy")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
