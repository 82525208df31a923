"""The Auto Scaling group and target-group emulator: instances are worker processes, the ALB is HAProxy.

(Just over 500 lines on purpose: the rules below — launch, health, replacement, scale-in, warm pool — act on
one table of instances under one lock.)

Rules it keeps (AWS's, on the local clock ``time_scale = period_s / 60``):

* Launch: a worker on a free 127.0.0.1 port, registered at once at weight 0 with health checks on; it gets
  traffic (weight 1, and a place in the fail-open and routing-policy backends) after **one** passing check
  (``check_status`` L7OK).
* Health: HAProxy's ``fall``/``rise`` are the ALB's unhealthy/healthy thresholds; ``show stat`` status strings are
  matched exactly (``UP 1/2`` is still up, failing; ``DOWN 1/2`` is still down, passing).
* Replacement (ELB health-check type): a target unhealthy after the grace period, or a process that exits, is
  deregistered and terminated, and a new instance is launched to keep ``desired``.
* Scale-in: victims are unhealthy, then not-yet-in-service, then the newest instances; each is drained
  (``state drain``) until it has no session left or the deregistration delay passes, then ``maint``,
  ``del server``, SIGTERM, and SIGKILL if the server has not exited after ``server.drain_timeout_s``.
* ``min <= desired <= max`` always.
* Warm pool (``capacity.warm_pool``): instances booted ahead of need and held *out* of the target group. The
  pool keeps ``max(min_size, (max_group_prepared_capacity or max) - desired)`` instances (AWS PutWarmPool:
  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html). One is *prepared* once its
  server answers the health check directly (the bootstrap's lifecycle action); in state ``stopped`` or
  ``hibernated`` it is then SIGSTOPped (no CPU, memory kept), in ``running`` it keeps running. A scale-out takes
  prepared instances first (SIGCONT), registers them at weight 0 and admits them after one passing check, like a
  new launch but without the boot; with ``reuse_on_scale_in`` a drained instance goes back to the pool.

Not thread-safe: the fleet's controller thread is its only caller (it also forks every worker, see ``_proc``).

Example::

    asg = AsgEmulator(spec, api=RuntimeApi(sock), emit=print, work_dir=Path("/tmp/fleet"))
    asg.desired = 2
    while True: asg.tick(stat_rows=api.show_stat())
"""

from __future__ import annotations

import http.client
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..haproxy_runtime import RuntimeApi, RuntimeApiError, StatRow
from ._proc import free_port, kill_group
from .haproxy import check_timing_ms
from .routing import POLICY_WEIGHT, policy_backends
from .workers import (
    WorkerCommand,
    WorkerProcess,
    log_excerpt,
    worker_argv,
    worker_cwd,
    worker_env,
    worker_ports,
)

if TYPE_CHECKING:
    from ..spec import FleetSpec
    from .spot import SpotController

__all__ = ["BOOT_GRACE_S", "MIN_GRACE_S", "AsgEmulator", "Instance"]

log = logging.getLogger(__name__)

# A Python model server needs a couple of real seconds to import and load its model whatever the clock scale;
# a grace period shorter than that would replace every new instance before it could ever pass a check.
MIN_GRACE_S = 8.0
# A new worker that has never passed a check is booting: importing scikit-learn and FastAPI and loading the model
# takes 3 s on a quiet machine and over 10 s on a busy one (measured in the demo at load average 6). EC2 boots in
# about a minute against a 300 s default grace; this keeps that proportion instead of replacing boots in a loop.
BOOT_GRACE_S = 30.0
STOP_TIMEOUT_S = 5.0  # close(): the fleet is going away, so a server gets at most this long to exit

Emit = Callable[[str, str, str], None]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Instance:
    """One emulated EC2 instance and its target registration."""

    id: str
    server_id: int
    worker: WorkerProcess
    launched_at: datetime
    launched_mono: float
    state: str = "pending"  # pending, in_service, draining, terminated
    health: str = "initial"  # initial, healthy, unhealthy, draining, unused
    weight: int = 0
    registered: bool = False
    in_open: bool = False
    haproxy_status: str = ""
    check_status: str = ""
    scur: int = 0
    unhealthy_since: float | None = None
    exited_seen: float | None = None
    drain_started: float | None = None
    stopping_since: float | None = None
    terminated_at: datetime | None = None
    pool: str = ""  # warm pool only: "warming" (booting), "ready" (prepared), "" once in the group
    detail: str = field(default="")
    # capacity.spot (local/spot.py): purchase option and type; an interrupted spot instance is held (counts toward
    # desired, as on AWS, until EC2 reclaims it) unless released early by capacity rebalancing.
    lifecycle: str = "on-demand"
    instance_type: str = ""
    # capacity units it counts toward desired: its type's weight (WeightedCapacity) when the types have weights
    units: int = 1
    spot_hold: bool = False
    spot_released: bool = False
    spot_drained: bool = False

    @property
    def address(self) -> str:
        return self.worker.address


class AsgEmulator:
    """Keeps ``desired`` healthy targets registered in HAProxy's backend ``backend``."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        api: RuntimeApi,
        emit: Emit,
        work_dir: Path,
        backend: str = "tg",
        worker_command: WorkerCommand | None = None,
        id_prefix: str = "i-local",
    ) -> None:
        self.spec = spec
        # Target ids are "<id_prefix>-0001"...: the fleet passes a prefix unique to it, so the records of two
        # fleets (one bundle, one plot) never share a target id.
        self.id_prefix = id_prefix
        self.api = api
        self.emit = emit
        self.work_dir = work_dir
        self.backend = backend
        self.open_backend = f"{backend}_open"
        # Every backend that mirrors the checked one: the fail-open twin and one per routing policy
        # (mlops_lb.local.routing). Each gets a target at its first passing check, and loses it with the group.
        self.policy_backends = policy_backends(backend)
        self.mirrors = (self.open_backend, *self.policy_backends)
        self.worker_command = worker_command
        scale = spec.local.time_scale
        self.inter_ms, self.timeout_ms = check_timing_ms(spec)
        self.grace_s = max(spec.health_check.grace_period_s * scale, MIN_GRACE_S)
        self.dereg_s = spec.target_group.deregistration_delay_s * scale
        # Target-group slow start (0 = off), on the local clock; HAProxy ramps the weight from the first pass.
        self.slowstart_ms = round(spec.target_group.slow_start_s * scale * 1000)
        self.warmup_s = spec.scaling.warmup_s * scale
        # Boot and drain are the server process's own real times, not periods: not scaled.
        self.boot_grace_s = (
            float(spec.server.startup_timeout_s)
            if spec.server.startup_timeout_s is not None
            else max(self.grace_s, BOOT_GRACE_S)
        )
        self.drain_timeout_s = float(spec.server.drain_timeout_s)
        self.min = spec.capacity.min
        self.max = spec.capacity.max
        self.desired = spec.capacity.desired
        self.instances: list[Instance] = []
        self.failed_starts = 0  # processes that exited before ever passing a check (a broken model/command)
        self.warm_pool = spec.capacity.warm_pool
        self.start_failures: list[str] = []  # why each of them failed, with its exit code and last log lines
        self._seq = 0
        # The weight an admitted target serves at: 1 normally; a rollout's slot (local/rollout.py) sets it, so a
        # target admitted or replaced mid-rollout joins at its slot's share, not at a full one.
        self.traffic_weight = 1
        # HAProxy server ids are unique per backend: a second group in the same backend (a rollout's slot)
        # numbers its servers from here.
        self.server_id_offset = 0
        self.spot: SpotController | None = None  # set by the fleet when capacity.spot is on

    # ------------------------------------------------------------------ views
    def live(self) -> list[Instance]:
        """Instances of the group that are not terminated (the warm pool is not part of the group)."""
        return [i for i in self.instances if i.state not in ("terminated", "warm_pool")]

    def pooled(self) -> list[Instance]:
        """The warm pool: instances booting or prepared, outside the target group."""
        return [i for i in self.instances if i.state == "warm_pool" and i.stopping_since is None]

    def pool_target(self) -> int:
        """How many instances the warm pool should hold now (0 without one)."""
        wp = self.warm_pool
        if wp is None:
            return 0
        ceiling = self.max if wp.max_group_prepared_capacity is None else wp.max_group_prepared_capacity
        return max(wp.min_size, ceiling - self.desired)

    def active(self) -> list[Instance]:
        """Instances that count toward desired capacity (not draining, not terminated).

        A spot instance after its interruption notice still counts until EC2 reclaims it, unless capacity
        rebalancing already launched its replacement."""
        return [
            i
            for i in self.instances
            if (i.state in ("pending", "in_service") or (i.spot_hold and i.state == "draining"))
            and not i.spot_released
            and i.stopping_since is None
        ]

    def active_units(self) -> int:
        """Capacity units of :meth:`active` (= how many instances, unless the spot types carry weights)."""
        return sum(i.units for i in self.active())

    def healthy(self) -> list[Instance]:
        return [i for i in self.instances if i.state == "in_service" and i.health == "healthy"]

    def ready_and_warming(self, now: float | None = None) -> tuple[int, int]:
        """(healthy targets past warm-up, active instances still warming up)."""
        now = time.monotonic() if now is None else now
        ready = sum(1 for i in self.healthy() if now - i.launched_mono >= self.warmup_s)
        warming = sum(1 for i in self.active() if now - i.launched_mono < self.warmup_s)
        return ready, warming

    # ------------------------------------------------------------------ actions
    def launch_one(self, reason: str, *, into_pool: bool = False) -> Instance:
        self._seq += 1
        iid = f"{self.id_prefix}-{self._seq:04d}"
        port = free_port()
        ports = worker_ports(self.spec)  # server.ports: this target's other ports ({port_grpc}, PORT_GRPC)
        argv = worker_argv(self.spec, port=port, target_id=iid, command=self.worker_command, ports=ports)
        worker = WorkerProcess.start(
            argv,
            port=port,
            target_id=iid,
            log_path=self.log_path(iid),
            env=worker_env(self.spec, port=port, target_id=iid, ports=ports),
            cwd=worker_cwd(self.spec, port=port, target_id=iid, ports=ports),
        )
        inst = Instance(
            id=iid,
            server_id=self.server_id_offset + self._seq,
            worker=worker,
            launched_at=utcnow(),
            launched_mono=time.monotonic(),
        )
        self.instances.append(inst)
        if into_pool:
            inst.state, inst.health, inst.pool = "warm_pool", "unused", "warming"
            self.emit("warm_pool_launch", iid, f"{reason}; pid {worker.pid} on {worker.address}")
            return inst
        if self.spot is not None:
            self.spot.on_launch(inst)
            reason = f"{reason}; {inst.lifecycle} {inst.instance_type}"
        self.emit("launch", iid, f"{reason}; pid {worker.pid} on {worker.address}")
        self.register(inst)
        return inst

    def _from_pool(self, inst: Instance, reason: str) -> None:
        """Move a pool instance into the group: resume it, register at weight 0, admit after one passing check."""
        kill_group(inst.worker.pid, signal.SIGCONT)
        prepared = inst.pool == "ready"
        inst.state, inst.health, inst.pool = "pending", "initial", ""
        # Warm-up and the boot grace count from joining the group, as an instance leaving the pool is InService
        # only from then.
        inst.launched_at, inst.launched_mono = utcnow(), time.monotonic()
        self.emit(
            "launch",
            inst.id,
            f"{reason}; from the warm pool ({'prepared' if prepared else 'still booting'}), pid {inst.worker.pid}",
        )
        self.register(inst)

    def _pool_ready(self, inst: Instance, now: float) -> None:
        """A booting pool instance whose server answers its health check is prepared (and stopped, if asked)."""
        hc = self.spec.health_check
        if _answers(inst.worker.port, hc.path, hc.matcher_codes()):
            inst.pool = "ready"
            state = self.warm_pool.state if self.warm_pool is not None else "running"
            if state != "running":
                kill_group(inst.worker.pid, signal.SIGSTOP)
            self.emit(
                "warm_pool_ready",
                inst.id,
                f"prepared after {now - inst.launched_mono:.2f} s; held {state} in the warm pool",
            )

    def log_path(self, iid: str) -> Path:
        """The file that holds target ``iid``'s stdout and stderr."""
        return self.work_dir / f"{iid}.log"

    def _start_failed(self, inst: Instance, why: str) -> None:
        self.failed_starts += 1
        excerpt = log_excerpt(self.log_path(inst.id))
        argv = inst.worker.proc.args
        cmd = " ".join(map(str, argv)) if isinstance(argv, (list, tuple)) else str(argv)
        self.start_failures.append(f"{inst.id} ({cmd}) {why}; {excerpt or '(no output)'}")

    def register(self, inst: Instance, *, weight: int = 0) -> None:
        """Add to the checked backend (weight 0 until the first passing check, DESIGN §5 pitfall 2)."""
        hc = self.spec.health_check
        self.api.add_server(
            self.backend,
            inst.id,
            inst.address,
            server_id=inst.server_id,
            weight=weight,
            check=True,
            inter_ms=self.inter_ms,
            rise=hc.healthy_threshold,
            fall=hc.unhealthy_threshold,
            slowstart_ms=self.slowstart_ms,
        )
        if not weight:
            # A new target is "initial" until it passes a check: DOWN here, not the UP ("UP 1/2") HAProxy gives a
            # server leaving maintenance. Else a server already listening at its first check was never "seen as
            # failed" and HAProxy skipped its slowstart ("It only applies when a server has been previously seen
            # as failed", configuration.txt, slowstart): a fast boot lost the target group's slow start.
            # _update_health forces it UP at its first passing check, as it admits it.
            self.api.command(f"set server {self.backend}/{inst.id} health down")
        inst.registered, inst.weight = True, weight
        if weight:
            self._add_open(inst)
        self.emit("registered", inst.id, f"registered {inst.address} with the target group (weight {weight})")

    def _add_open(self, inst: Instance) -> None:
        """Put ``inst`` in every mirror backend: fail-open at weight 1, routing policies at ``POLICY_WEIGHT``."""
        for be in self.mirrors:
            try:
                weight = 1 if be == self.open_backend else self._policy_weight()
                self.api.add_server(be, inst.id, inst.address, server_id=inst.server_id, weight=weight)
            except RuntimeApiError as exc:  # a retry after a partial failure: already there is fine
                if "already exists" not in str(exc).lower():
                    raise
        inst.in_open = True
        if inst.health == "unhealthy":
            self._mirror_health(inst, "maint")

    def _mirror_health(self, inst: Instance, state: str) -> None:
        """The policy backends run no checks: they follow the checked backend (``maint`` while it is DOWN)."""
        for be in self.policy_backends:
            try:
                self.api.set_state(be, inst.id, state)
            except (RuntimeApiError, OSError) as exc:
                log.debug("mirror health %s/%s -> %s: %s", be, inst.id, state, exc)

    def _remove(self, backend: str, name: str) -> None:
        for step in (
            lambda: self.api.set_state(backend, name, "maint"),
            lambda: self.api.shutdown_sessions(backend, name),
            lambda: self.api.del_server(backend, name),
        ):
            try:
                step()
            except (RuntimeApiError, OSError) as exc:
                log.debug("removing %s/%s: %s", backend, name, exc)

    def deregister(self, inst: Instance) -> None:
        if inst.in_open:
            for be in self.mirrors:
                self._remove(be, inst.id)
            inst.in_open = False
        if inst.registered:
            self._remove(self.backend, inst.id)
            inst.registered = False

    def begin_drain(self, inst: Instance, reason: str) -> None:
        """Stop new requests to ``inst``; it is deleted once idle or after the deregistration delay."""
        inst.state, inst.health, inst.drain_started = "draining", "draining", time.monotonic()
        for be, present in ((self.backend, inst.registered), *((m, inst.in_open) for m in self.mirrors)):
            if present:
                try:
                    self.api.set_state(be, inst.id, "drain")
                except (RuntimeApiError, OSError) as exc:
                    log.debug("drain %s/%s: %s", be, inst.id, exc)
        self.emit("draining", inst.id, f"{reason}; deregistration delay {self.dereg_s:.2f} s")

    def terminate(self, inst: Instance, reason: str) -> None:
        """Deregister now and stop the process (SIGTERM, SIGKILL after a timeout)."""
        if inst.registered or inst.in_open:
            self.deregister(inst)
            self.emit("deregistered", inst.id, reason)
        inst.state = "draining" if inst.state != "terminated" else inst.state
        inst.health = "draining"
        inst.detail = reason
        if inst.stopping_since is None:
            inst.stopping_since = time.monotonic()
            inst.worker.terminate()

    def set_traffic_weight(self, weight: int) -> None:
        """Serve every admitted target of this group at ``weight`` (0-256, HAProxy's range) from now on, at run
        time (``set server ... weight``: no reload, in-flight requests untouched)."""
        self.traffic_weight = weight
        for inst in self.instances:
            if inst.registered and inst.state == "in_service" and inst.weight != weight:
                self.api.set_weight(self.backend, inst.id, weight)
                inst.weight = weight
                if inst.in_open:  # the routing policies' backends carry the same share (local/routing.py)
                    for be in self.policy_backends:
                        self.api.set_weight(be, inst.id, self._policy_weight())

    def _policy_weight(self) -> int:
        """A target's weight in the routing policies' backends: ``POLICY_WEIGHT`` (a smooth consistent-hash
        ring) outside a rollout; during one, the slot's own 0-256 weight, so every policy keeps the slot's share."""
        return POLICY_WEIGHT if self.traffic_weight == 1 else self.traffic_weight

    # ------------------------------------------------------------------ the loop body
    def tick(self, stat_rows: Sequence[StatRow]) -> None:
        """One pass: read health from ``stat_rows``, replace, drain, stop, and keep ``desired`` active."""
        now = time.monotonic()
        rows = {(r.proxy, r.server): r for r in stat_rows if r.is_server}
        for inst in self.instances:
            if inst.state == "terminated":
                continue
            if inst.stopping_since is not None:
                self._progress_stop(inst, now)
                continue
            code = inst.worker.exit_code()
            if inst.state == "warm_pool":
                if code is not None:
                    if inst.pool == "warming":
                        self._start_failed(
                            inst, f"exited with code {code} in the warm pool before its first check"
                        )
                    self.terminate(inst, f"warm pool instance exited with code {code}; replacing")
                elif inst.pool == "warming":
                    self._pool_ready(inst, now)
                continue
            if code is not None and self._replace_dead(inst, code, now):
                self._progress_stop(inst, now)
                continue
            row = rows.get((self.backend, inst.id))
            # In flight through any backend: a drain must wait for the routing policies' requests too.
            inst.scur = sum(r.scur for be in (self.backend, *self.mirrors) if (r := rows.get((be, inst.id))))
            if inst.state == "draining":
                if not inst.spot_drained:
                    self._progress_drain(inst, now)
            elif row is not None:
                self._update_health(inst, row, now)
        if self.spot is not None:
            self.spot.tick(now)
        self._reconcile(now)

    def _replace_dead(self, inst: Instance, code: int, now: float) -> bool:
        """A dead model server on a live "instance": the ALB notices through failed checks, then it is replaced.

        Returns True once it was terminated. A process that dies before its first passing check (a broken model
        or command) is replaced at once; otherwise replacement waits for HAProxy to mark it DOWN, at most
        ``fall x inter + timeout`` plus a second, so the health transition shows in the events as it would on AWS.
        """
        if inst.exited_seen is None:
            inst.exited_seen = now
        hc = self.spec.health_check
        limit = (hc.unhealthy_threshold * self.inter_ms + self.timeout_ms) / 1000 + 1.0
        if inst.state == "pending" or inst.state == "draining":
            if inst.state == "pending":
                self._start_failed(inst, f"exited with code {code} before passing a health check")
        elif inst.health != "unhealthy" and now - inst.exited_seen < limit:
            return False
        self.terminate(inst, f"process exited with code {code}; replacing")
        return True

    def _update_health(self, inst: Instance, row: StatRow, now: float) -> None:
        status, inst.check_status = row.status, row.check_status
        inst.haproxy_status = status
        if inst.state == "pending":
            if row.check_status == "L7OK":
                # The ALB admits a new target after one passing check; HAProxy would want `rise` of them.
                if status.startswith("DOWN"):
                    self.api.command(f"set server {self.backend}/{inst.id} health up")
                self.api.set_weight(self.backend, inst.id, self.traffic_weight)
                inst.weight = self.traffic_weight
                self._add_open(inst)
                inst.state, inst.health = "in_service", "healthy"
                self.emit(
                    "healthy",
                    inst.id,
                    f"passed its first health check after {now - inst.launched_mono:.2f} s; "
                    "now receiving traffic",
                )
            elif status == "DOWN" and now - inst.launched_mono >= self.boot_grace_s:
                why = (
                    f"never passed a health check (last: {row.check_status or 'none'}) within the boot grace "
                    f"period {self.boot_grace_s:.1f} s (server.startup_timeout_s)"
                )
                self._start_failed(inst, f"{why}; exit code: none, still running (stopped now)")
                self.terminate(inst, f"{why}; replacing")
            return
        # A flip of a target in service: (new health, unhealthy since, state of its mirror in the open backend, why)
        flip: tuple[str, float | None, str, str] | None = None
        if inst.health == "healthy" and status == "DOWN":
            why = (
                f"failed {self.spec.health_check.unhealthy_threshold} consecutive "
                f"health checks (last: {row.check_status or 'none'})"
            )
            flip = ("unhealthy", now, "maint", why)
        elif inst.health == "unhealthy" and status == "UP":
            flip = (
                "healthy",
                None,
                "ready",
                f"passed {self.spec.health_check.healthy_threshold} consecutive health checks",
            )
        if flip is not None:
            inst.health, inst.unhealthy_since, mirror, why = flip
            if inst.in_open:
                self._mirror_health(inst, mirror)
            self.emit(inst.health, inst.id, why)
        if inst.health == "unhealthy" and now - inst.launched_mono >= self.grace_s:
            self.terminate(inst, "ELB health check: unhealthy after the grace period; replacing")

    def _progress_drain(self, inst: Instance, now: float) -> None:
        elapsed = now - (inst.drain_started or now)
        if inst.scur == 0 or elapsed >= self.dereg_s:
            why = (
                "no in-flight requests left"
                if inst.scur == 0
                else f"deregistration delay {self.dereg_s:.2f} s passed"
            )
            self.deregister(inst)
            self.emit("deregistered", inst.id, f"{why} after {elapsed:.2f} s of draining")
            if inst.spot_hold:  # an interrupted spot instance idles until EC2 reclaims it (local/spot.py)
                inst.spot_drained, inst.health = True, "unused"
                return
            wp = self.warm_pool
            if wp is not None and wp.reuse_on_scale_in and inst.worker.exit_code() is None:
                inst.state, inst.health, inst.pool = "warm_pool", "unused", "ready"
                if wp.state != "running":
                    kill_group(inst.worker.pid, signal.SIGSTOP)
                self.emit("warm_pool_return", inst.id, f"scale-in: back to the warm pool, held {wp.state}")
                return
            inst.stopping_since = now
            inst.worker.terminate()

    def _progress_stop(self, inst: Instance, now: float) -> None:
        # SIGTERM was sent at stopping_since: the server may finish in-flight requests for server.drain_timeout_s.
        force = now - (inst.stopping_since or now) > self.drain_timeout_s
        if inst.worker.reap(force=force):
            inst.state, inst.health, inst.terminated_at = "terminated", "unused", utcnow()
            self.emit(
                "terminate",
                inst.id,
                f"process {inst.worker.pid} exited with code {inst.worker.exit_code()}"
                + (f" ({inst.detail})" if inst.detail else ""),
            )

    def _reconcile(self, now: float) -> None:
        active = self.active()
        # Desired counts capacity units: one per instance, or its type's weight (capacity.spot with weights).
        # As AWS does, launch until desired is fulfilled even if the last instance overshoots it (by at most the
        # largest weight - 1): WeightedCapacity in
        # https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_LaunchTemplateOverrides.html
        have = sum(i.units for i in active)
        unit = "unit(s)" if self.spot is not None and self.spot.weighted else "active"
        # Prepared pool instances first, then booting ones (oldest first), then fresh launches.
        pool = sorted(self.pooled(), key=lambda i: (i.pool != "ready", i.launched_mono))
        while have < self.desired:
            why = f"keeping desired capacity {self.desired} ({have} {unit})"
            if pool:
                inst = pool.pop(0)
                self._from_pool(inst, why)
            else:
                inst = self.launch_one(why)
            have += inst.units
        if self.warm_pool is not None:
            self._refill_pool()
        if have > self.desired:
            # Scale in only while what stays still fills desired (with weights an exact fit may not exist).
            order = {"unhealthy": 0, "initial": 1, "healthy": 2}
            pickable = [i for i in active if not i.spot_hold]
            for v in sorted(pickable, key=lambda i: (order.get(i.health, 1), -i.launched_mono)):
                if have - v.units < self.desired:
                    continue
                have -= v.units
                self.begin_drain(v, f"scale-in to desired {self.desired}")

    def _refill_pool(self) -> None:
        pool = self.pooled()
        want = self.pool_target()
        for _ in range(want - len(pool)):
            self.launch_one(f"filling the warm pool to {want}", into_pool=True)
        # Too many (a larger desired, a lower max): let go of booting ones first, then the newest.
        extra = sorted(pool, key=lambda i: (i.pool == "ready", -i.launched_mono))[: max(0, len(pool) - want)]
        for inst in extra:
            kill_group(inst.worker.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.terminate(inst, f"warm pool above its size {want}")

    def reregister_all(self) -> int:
        """After a balancer restart: put every live target back with its weight. Returns how many."""
        # The new process knows no server: mark all unregistered first, so a failure part-way leaves no
        # instance believed registered that is not.
        for inst in self.instances:
            inst.registered = inst.in_open = False
        n = 0
        hc = self.spec.health_check
        for inst in self.instances:
            if inst.state not in ("pending", "in_service") or inst.stopping_since is not None:
                continue
            try:
                self.api.add_server(
                    self.backend,
                    inst.id,
                    inst.address,
                    server_id=inst.server_id,
                    weight=inst.weight,
                    check=True,
                    inter_ms=self.inter_ms,
                    rise=hc.healthy_threshold,
                    fall=hc.unhealthy_threshold,
                    slowstart_ms=self.slowstart_ms,
                )
                inst.registered = True
                if inst.weight:
                    self._add_open(inst)
            except Exception as exc:  # an instance the balancer will not take is replaced, as the ASG would
                log.warning("could not re-register %s after the balancer restart: %s", inst.id, exc)
                self.terminate(inst, f"could not re-register with the restarted balancer ({exc}); replacing")
                continue
            n += 1
        return n

    def stop_all(self, timeout_s: float | None = None) -> None:
        """SIGTERM every worker at once, then wait (SIGKILL stragglers after ``timeout_s``, default
        ``min(STOP_TIMEOUT_S, server.drain_timeout_s)``)."""
        if timeout_s is None:
            timeout_s = min(STOP_TIMEOUT_S, self.drain_timeout_s)
        live = [i for i in self.instances if i.state != "terminated"]
        for inst in live:
            if inst.pool:
                kill_group(inst.worker.pid, signal.SIGCONT)  # a stopped pool worker cannot act on SIGTERM
            inst.worker.terminate()
        deadline = time.monotonic() + timeout_s
        for inst in live:
            while not inst.worker.reap() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not inst.worker.reap():
                inst.worker.stop(0.1)
            inst.state, inst.health, inst.terminated_at = "terminated", "unused", utcnow()


def _answers(port: int, path: str, codes: Sequence[int], timeout_s: float = 0.3) -> bool:
    """GET ``path`` straight from the worker (not through HAProxy): does it answer with a matching code?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status in codes
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
