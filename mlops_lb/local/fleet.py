"""LocalFleet: the Fleet protocol on this machine -- HAProxy as the ALB, worker processes as instances.

(Over 500 lines on purpose: LocalFleet is the one owner of the fleet's state and lock — launch, scale, the
tick, balancer restarts and close all change it; what it drives — HAProxy, the ASG emulator, the autoscaler,
the period sampler — lives in its own module.)

**The clock.** One CloudWatch period (an AWS minute) lasts ``spec.local.period_s`` seconds here, and every
duration in the spec is multiplied by ``time_scale = period_s / 60``: health-check interval and timeout (timeout
never below 500 ms, interval above it), grace period (never below a few real seconds, and 30 s for a worker that
has not yet passed its first check: the time a Python worker needs to boot on a busy machine),
deregistration delay and instance warm-up. Request *rates* are not scaled: the target is
``target_rps_per_target`` requests per second per target, i.e. ``target_rps_per_target x period_s`` requests per
target per local period, just as AWS compares ``x 60`` per minute. MetricFrame timestamps are real wall-clock UTC
times, one datapoint per local period; count metrics are per local period.

**Targets.** Each runs what ``spec.server`` says: our model server (with emulated capacity), our LLM emulator, or
the user's own ``server.command`` (real capacity: every target shares this machine's cores). Its output goes to
``<work_dir>/<target>.log`` (``fleet.logs(target)``); HAProxy adds ``X-Target-Id``. What this backend cannot run
(``server.image``, an ``s3://`` model, a program that is not there) is a SpecError from the constructor, before
any process starts.

**Threads.** One controller thread owns HAProxy, the workers and the emulators: it ticks every 100 ms (health,
replacement, draining, balancer restarts) and once per period samples metrics and runs target tracking. It also
forks every child, because Linux's parent-death signal follows the forking thread. Public methods are safe to
call from any thread.

Example::

    import mlops_lb as ml
    with ml.open_fleet(ml.FleetSpec.example(), backend="local") as fleet:
        fleet.launch(on_output=print)
        fleet.scale(desired=3)
        fleet.status(); fleet.events(); fleet.decisions(); fleet.metrics()
        fleet.logs(fleet.status()["target"].iloc[0], tail=20)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BalancerDown, ProvisionError, SpecError
from ..fleet import Capacity, OnFleetEvent, OnOutput
from ..spec import FleetSpec
from ._proc import (
    free_port,
    kill_group,
    process_start_time,
    register_dir,
    register_pgid,
    unregister_dir,
    unregister_pgid,
)
from .asg import AsgEmulator, Instance, utcnow
from .autoscaler import Autoscaler
from .haproxy import (
    FRONTEND,
    HaproxyProcess,
    RuntimeApi,
    check_timing_ms,
    find_haproxy,
    render_config,
)
from .metrics import PeriodRecord, PeriodSampler, to_metric_frame
from .routing import MAP_FILE, RoutingSwitch, check_policy, policy_backends, reset_prefix_caches, write_map
from .workers import WorkerCommand, find_program, log_excerpt, tail_lines

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from ..spec import ScaleChange

__all__ = ["LocalFleet"]

log = logging.getLogger(__name__)

TICK_S = 0.1
# A balancer that cannot restart (its port taken, a broken binary) is retried with this backoff, not every tick.
RESTART_BACKOFF_S = (0.2, 5.0)
BACKEND = "tg"


@dataclass
class _Resources:
    """What must die with the fleet; held by a weakref finalizer that must not reference the fleet."""

    haproxy: HaproxyProcess | None = None
    asg: AsgEmulator | None = None
    slots: list[AsgEmulator] = field(default_factory=list)  # a rollout's new slot, slots being retired
    owned_dir: Path | None = None
    pgids: set[int] = field(default_factory=set)

    def kill(self) -> None:
        # Only groups whose leader we have not reaped: a reaped id is free for reuse (pid_max is often 32768),
        # and by close() after a long run it may lead an unrelated process group. Reaping already killed the
        # group of every worker that ended (WorkerProcess.reap) and HaproxyProcess.stop waited for its exit.
        for asg in {id(a): a for a in [self.asg, *self.slots] if a is not None}.values():
            for inst in asg.instances:
                if inst.worker.proc.returncode is None:
                    kill_group(inst.worker.pid)
                unregister_pgid(inst.worker.pid)
        hp = self.haproxy
        if hp is not None and hp.pid is not None:
            if hp.proc is not None and hp.proc.returncode is None:
                kill_group(hp.pid)
            unregister_pgid(hp.pid)
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            unregister_dir(self.owned_dir)


class LocalFleet:
    """The local backend of the Fleet protocol. See the module docstring for the clock mapping.

    ``work_dir`` holds the HAProxy config, admin socket and worker logs (a private temp dir, removed on close,
    when not given); ``port`` the frontend port (0: a free one); ``on_event`` receives each event dict as it
    happens; ``worker_command`` replaces ``mlops_lb.serving.worker_command`` (tests).

    Example::

        fleet = LocalFleet(FleetSpec(name="demo"))
        url = fleet.launch(on_output=print)
        fleet.close()
    """

    def __init__(
        self,
        spec: FleetSpec,
        *,
        work_dir: str | Path | None = None,
        port: int = 0,
        on_event: OnFleetEvent | None = None,
        worker_command: WorkerCommand | None = None,
        launch_timeout_s: float = 120.0,
    ) -> None:
        if not isinstance(spec, FleetSpec):
            raise SpecError("spec", f"must be a FleetSpec (got {type(spec).__name__})")
        check_runs_locally(spec)
        self._binary = find_haproxy()
        self.spec = spec
        self._port = port or free_port()
        # Unique per fleet: target ids are i-local-<fleet_id>-0001..., so two fleets' records never mix.
        self.fleet_id = secrets.token_hex(3)
        self._on_event = on_event
        self._on_output: OnOutput | None = None
        self._worker_command = worker_command
        self._launch_timeout_s = launch_timeout_s
        self._lock = threading.RLock()
        self._events: list[dict[str, Any]] = []
        self._records: list[PeriodRecord] = []
        self._capacity = (spec.capacity.min, spec.capacity.desired, spec.capacity.max)
        self._autoscaler = Autoscaler(spec)
        self._state = "new"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._res = _Resources()
        if work_dir is None:
            _sweep_orphaned_work_dirs()
            self._work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX))
            self._res.owned_dir = self._work_dir
            (self._work_dir / OWNER_FILE).write_text(f"{os.getpid()} {process_start_time(os.getpid())}\n")
            register_dir(self._work_dir)  # removed by the reaper if this process is killed
        else:
            self._work_dir = Path(work_dir)
            self._work_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._work_dir, 0o700)  # the admin socket inside grants full control of the balancer
        self._finalizer = weakref.finalize(self, self._res.kill)
        self._api: RuntimeApi | None = None
        self._asg: AsgEmulator | None = None
        # A rollout's second slot and slots being retired: ticked with the serving one, never autoscaled.
        self._slots: list[AsgEmulator] = []
        self._slot_seq = 0
        self._rollout: Any = None  # local.rollout._Run of the last rollout
        self._rollout_lock = threading.Lock()  # one rollout() at a time, whichever thread calls
        self._haproxy: HaproxyProcess | None = None
        self._sampler = PeriodSampler(
            frontend=FRONTEND, backends=(BACKEND, f"{BACKEND}_open", *policy_backends(BACKEND))
        )
        # The routing policy in force (mlops_lb.local.routing): the spec's, until set_routing() switches it.
        self._policy: str = spec.routing.policy
        self._period_start = utcnow()
        self._balancer = "up"  # "up" or "down" (died and could not be restarted yet)
        self._balancer_reason = ""
        self._balancer_down_since = 0.0
        self._restart_after = 0.0
        self._restart_backoff_s = RESTART_BACKOFF_S[0]

    # ------------------------------------------------------------------ protocol
    @property
    def url(self) -> str:
        """The balancer's address (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    @property
    def balancer(self) -> str:
        """``"up"``, or ``"down"`` while HAProxy is dead and its restart keeps failing (``balancer_reason`` says why)."""
        return self._balancer

    @property
    def balancer_reason(self) -> str:
        """Why the balancer is down (empty while it is up)."""
        return self._balancer_reason

    def _check_balancer(self) -> None:
        if self._balancer == "down":
            raise BalancerDown(self._balancer_reason)

    @property
    def capacity(self) -> Capacity:
        """The group's current ``Capacity(min, desired, max)``, as the autoscaler and ``scale()`` left it."""
        return Capacity(*self._capacity)

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run: nothing of this fleet runs any more and ``scale()`` refuses."""
        return self._state == "closed"

    @property
    def metric_period_s(self) -> float:
        """Seconds between two metric datapoints: the sampler's period, ``spec.local.period_s``."""
        return float(self.spec.local.period_s)

    def launch(self, *, on_output: OnOutput | None = None) -> str:
        """Start HAProxy and ``desired`` workers; block until that many targets are healthy. Returns the url.

        Any failure or Ctrl-C closes the fleet, leaving no process behind.
        """
        if self._state == "closed":
            raise ProvisionError("this LocalFleet is closed; open a new one")
        self._check_balancer()
        if self._state == "running":
            return self.url
        self._on_output = on_output
        try:
            self._say(f"{self.clock_mapping()}")
            if self.spec.server.install is not None:
                self._say(
                    "server.install is for AWS instances; locally the server runs from this environment"
                )
            self._state = "launching"
            self._thread = threading.Thread(
                target=self._run, name=f"mlops-lb-fleet-{self.spec.name}", daemon=True
            )
            self._thread.start()
            self._started.wait()
            if self._start_error is not None:
                raise self._start_error
            self._say(f"haproxy listening on {self.url} (pid {self._haproxy.pid if self._haproxy else '?'})")
            deadline = time.monotonic() + self._launch_timeout_s
            while True:
                with self._lock:
                    healthy = len(self._asg.healthy()) if self._asg else 0
                    failed = self._asg.failed_starts if self._asg else 0
                    desired = self._capacity[1]
                if healthy >= desired:
                    break
                if failed and self.spec.server.kind != "model":
                    # The user's own server failing to start is a bug in it or in the spec, not bad luck:
                    # say so at once, with that target's exit code and output.
                    with self._lock:
                        why = self._asg.start_failures[0] if self._asg else ""
                    raise ProvisionError(f"a target did not start{self._keep_logs()}:", stderr=why)
                self._check_balancer()
                if failed >= max(3, 2 * desired):
                    raise ProvisionError(
                        f"{failed} workers exited before passing a health check (the model or "
                        f"the worker command is broken){self._keep_logs()}:",
                        stderr=self._log_tail(),
                    )
                if not (self._thread and self._thread.is_alive()):
                    raise ProvisionError(
                        f"the fleet controller stopped during launch{self._keep_logs()}",
                        stderr=self._log_tail(),
                    )
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        f"only {healthy} of {desired} targets healthy after {self._launch_timeout_s:g} s"
                        f"{self._keep_logs()}",
                        stderr=self._log_tail(),
                    )
                time.sleep(0.05)
            self._state = "running"
            self._say(f"{healthy} target(s) healthy behind {self.url}")
            return self.url
        except BaseException:
            self.close()
            raise
        finally:
            self._on_output = None

    # ------------------------------------------------------------------ routing (optional Fleet members)
    @property
    def routing(self) -> str:
        """The routing policy HAProxy applies now, read back from its map: ``alb`` (``target_group.algorithm``),
        ``round_robin``, ``least_outstanding_requests``, ``weighted_random``, ``consistent_hash`` or
        ``sticky_cookie`` (see :mod:`mlops_lb.local.routing`)."""
        if self._api is None:
            return self._policy
        return RoutingSwitch(self._api, self._work_dir / MAP_FILE, backend=BACKEND).current()

    def set_routing(self, policy: str) -> float:
        """Route new requests with ``policy`` from now on (requests in flight finish where they are); returns the
        seconds the switch took. One Runtime API ``set map``: no reload, no request lost.

        Example::

            fleet.set_routing("consistent_hash")     # ~1 ms
            fleet.routing                            # 'consistent_hash'
        """
        policy = check_policy(policy)
        if policy in ("consistent_hash", "sticky_cookie") and self.spec.server.kind == "model":
            raise SpecError(
                "policy",
                f"{policy} routes on a prompt-prefix or session key, which server.kind model has none of; use "
                "alb, round_robin, least_outstanding_requests or weighted_random",
            )
        if self._api is None or self._state not in ("launching", "running"):
            raise ProvisionError("set_routing needs a launched fleet: call fleet.launch() first")
        self._check_balancer()
        took = RoutingSwitch(self._api, self._work_dir / MAP_FILE, backend=BACKEND).set(policy)
        old, self._policy = self._policy, policy
        self._event("routing", "", f"routing policy {old} -> {policy} (switched in {took * 1000:.1f} ms)")
        return took

    def reset_routing_state(self) -> dict[str, int]:
        """Start the next arm of an A/B cold: forget sticky sessions and empty every target's prefix cache.

        Returns ``{"targets": n, "caches_reset": k}``: a server without ``POST /reset_prefix_cache`` (vLLM offers
        it only with ``VLLM_SERVER_DEV_MODE=1``) keeps its cache, so ``k < n`` says the arms are not cold and
        their order should be randomised (``compare_routing`` does both).
        """
        if self._api is None:
            raise ProvisionError("reset_routing_state needs a launched fleet: call fleet.launch() first")
        RoutingSwitch(self._api, self._work_dir / MAP_FILE, backend=BACKEND).clear_sessions()
        with self._lock:
            addresses = [
                i.address for i in (self._asg.live() if self._asg else []) if i.state == "in_service"
            ]
        return {"targets": len(addresses), "caches_reset": reset_prefix_caches(addresses)}

    def scale(self, **changes: Unpack[ScaleChange]) -> None:
        """Change capacity bounds, desired capacity or the tracking target, through ``FleetSpec.rescaled``
        (validated and clamped like the spec); only what changed is applied.

        Raises ``ProvisionError`` after ``close()`` and ``BalancerDown`` at once while the balancer is down.
        """
        if self._state == "closed":
            raise ProvisionError("this LocalFleet is closed: scale() cannot change it; open a new one")
        self._check_balancer()
        with self._lock:
            cur_min, cur_desired, cur_max = self._capacity
            live = self.spec.replace(
                capacity=dataclasses.replace(
                    self.spec.capacity, min=cur_min, desired=cur_desired, max=cur_max
                )
            )
            new = live.rescaled(**changes)
            new_min, new_desired, new_max = new.capacity.min, new.capacity.desired, new.capacity.max
            if new.scaling != self.spec.scaling:
                self._autoscaler.set_target(new.scaling)
                self._event(
                    "decision",
                    "",
                    f"manual: target set to {new.scaling.target_rps_per_target:g} rps per target "
                    f"({self._autoscaler.policy.target_value:g} requests per target per local period)",
                )
            self.spec = new
            self._capacity = (new_min, new_desired, new_max)
            if new_desired != cur_desired:
                self._autoscaler.note_manual_change()
                kind = "scale_out" if new_desired > cur_desired else "scale_in"
                self._event(
                    kind, "", f"manual: desired {cur_desired} -> {new_desired} (min {new_min}, max {new_max})"
                )
            elif (new_min, new_max) != (cur_min, cur_max):
                self._event("decision", "", f"manual: bounds now min {new_min}, max {new_max}")

    def status(self, *, include_terminated: bool = False) -> pd.DataFrame:
        """One row per target: target, address, state, health, launched_at, pid, weight, sessions, haproxy status."""
        import pandas as pd

        cols = [
            "target",
            "address",
            "state",
            "health",
            "launched_at",
            "pid",
            "weight",
            "sessions",
            "haproxy_status",
            "check_status",
            "slot",
        ]
        with self._lock:
            insts: list[Instance] = list(self._asg.instances) if self._asg else []
            slot_of = {i.id: "serving" for i in insts}
            for other in self._slots:
                slot_of.update({i.id: self._slot_name(other) for i in other.instances})
                insts += other.instances
            rows = [
                {
                    "target": i.id,
                    "address": i.address,
                    "state": i.state,
                    "health": i.health,
                    "launched_at": i.launched_at,
                    "pid": i.worker.pid,
                    "weight": i.weight,
                    "sessions": i.scur,
                    "haproxy_status": i.haproxy_status,
                    "check_status": i.check_status,
                    "slot": slot_of.get(i.id, "serving"),
                }
                for i in insts
                if (include_terminated or i.state != "terminated") and i.state != "warm_pool"
            ]
            pooled = self._asg.pooled() if self._asg else []
        df = pd.DataFrame(rows, columns=cols)
        df["launched_at"] = pd.to_datetime(df["launched_at"], utc=True)
        # The warm pool is not part of the group (AWS lists it with DescribeWarmPool, not in the group).
        df.attrs["warm_pool"] = {i.id: i.pool for i in pooled}
        # capacity.spot: each target's purchase option and instance type (every target on-demand without it).
        df.attrs["lifecycle"] = {i.id: i.lifecycle for i in insts}
        df.attrs["instance_type"] = {i.id: i.instance_type or self.spec.instance.type for i in insts}
        df.attrs["balancer"] = self._balancer
        df.attrs["balancer_reason"] = self._balancer_reason
        df.attrs["rollout"] = self.rollout_status()
        return df

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: float | None = None
    ) -> pd.DataFrame:
        """MetricFrame of the periods in [start, end); ``period_s`` groups whole local periods per datapoint."""
        local = self.spec.local.period_s
        group = 1 if period_s is None else max(1, round(period_s / local))
        with self._lock:
            recs = [
                r
                for r in self._records
                if (start is None or r.start >= _utc(start)) and (end is None or r.start < _utc(end))
            ]
        df = to_metric_frame(recs, group=group, api_calls=0)
        df.attrs["metrics_requested"] = int(df[["metric", "stat", "target"]].drop_duplicates().shape[0])
        df.attrs["period_s"] = local * group
        return df

    def events(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Events frame: launches, registrations, health changes, drains, terminations, scaling with reasons."""
        from ..frames import events_frame

        with self._lock:
            rows = [
                e
                for e in self._events
                if (start is None or e["timestamp"] >= _utc(start))
                and (end is None or e["timestamp"] < _utc(end))
            ]
        return events_frame(rows)

    def logs(self, target: str, *, tail: int = 200) -> str:
        """The last ``tail`` lines of what target ``target`` wrote to stdout and stderr (terminated ones too).

        Example::

            print(fleet.logs(fleet.status()["target"].iloc[0], tail=20))
        """
        if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
            raise SpecError("tail", f"must be an integer >= 0 (got {tail!r})")
        with self._lock:
            known = [i.id for i in self._asg.instances] if self._asg else []
            path = self._asg.log_path(target) if self._asg and target in known else None
        if path is None:
            raise SpecError(
                "target",
                f"is not a target of this fleet (got {target!r}; known: {', '.join(known) or 'none'})",
            )
        return tail_lines(path, tail)

    def rollout(
        self,
        new: Any = None,
        *,
        strategy: Any = None,
        guard: Any = None,
        feed: Any = None,
        on_output: OnOutput | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
        resume: bool = False,
        rollback: bool = False,
    ) -> Any:
        """Shift traffic to a second slot running ``new`` (a FleetSpec, or the parts that change: ``{"model": ...,
        "server": ..., "local": ...}``) by ``strategy`` (:mod:`mlops_lb.rollouts`: ``Canary`` by default), judged
        every ``guard.interval_s`` by ``guard``; blocks until it completes or rolls back. Returns a
        :class:`~mlops_lb.local.rollout.RolloutResult`.

        ``feed``: a :class:`~mlops_lb.rollouts.ClientFeed` that a load run fills (``run_load(...,
        on_records=feed)``): the guard then judges each variant from the client side; without it, from HAProxy's
        per-server counters. Progress goes to ``on_output`` (lines) and ``on_event`` (
        :class:`~mlops_lb.rollouts.RolloutEvent` dicts). Ctrl-C leaves the rollout ``interrupted`` with both
        slots serving at their last weights (``status().attrs["rollout"]``); ``rollout(resume=True)`` goes on
        from that step, ``rollout(rollback=True)`` sends the new slot back to 0 % and retires it (a rollout
        running in another thread is interrupted first, see :meth:`interrupt_rollout`).

        Example::

            res = fleet.rollout({"local": {"min_service_ms": 30}}, strategy=Canary(percent=20, bake_s=10),
                                guard=Guard(p99_s=0.1), feed=feed, on_output=print)
        """
        from .rollout import run_rollout

        if self._state == "closed":
            raise ProvisionError("this LocalFleet is closed: rollout() cannot change it; open a new one")
        if self._state != "running":
            raise ProvisionError("rollout() needs a launched fleet: call fleet.launch() first")
        self._check_balancer()

        def emit(ev: Any) -> None:
            self._event("rollout", "", f"{ev['state']}: {ev['detail']}" if ev["detail"] else ev["state"])
            if on_output is not None:
                try:
                    on_output(f"[rollout {ev['kind']}] {ev['percent']:g} % new: {ev['detail']}")
                except Exception:
                    log.exception("on_output callback failed")
            if on_event is not None:
                try:
                    on_event(dict(ev))
                except Exception:
                    log.exception("on_event callback failed")

        if rollback and not resume and new is None:
            self.interrupt_rollout()  # a rollback request wins over a rollout running in another thread
        if not self._rollout_lock.acquire(blocking=False):
            raise SpecError("rollout", "another rollout is running on this fleet: wait for it to finish")
        try:
            return run_rollout(
                self,
                new,
                strategy=strategy,
                guard=guard,
                feed=feed,
                emit=emit,
                resume=resume,
                rollback=rollback,
                ready_timeout_s=self._launch_timeout_s,
                check_spec=check_runs_locally,  # what this backend cannot run fails before the slot starts
            )
        finally:
            self._rollout_lock.release()

    def rollout_status(self) -> dict[str, Any]:
        """The last rollout in one dict: ``state`` (one of :data:`mlops_lb.rollouts.ROLLOUT_STATES`; ``idle``
        without one), ``step``, ``percent`` on the new slot, ``reason``, ``interrupted_in`` (the state an
        interruption caught, ``""`` otherwise)."""
        run = self._rollout
        if run is None:
            return {"state": "idle", "step": 0, "percent": 0.0, "reason": "", "interrupted_in": ""}
        return {
            "state": run.state,
            "step": run.result.step,
            "percent": run.percent,
            "reason": run.result.reason,
            "interrupted_in": run.interrupted_in if run.state == "interrupted" else "",
        }

    def interrupt_rollout(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop a rollout running in another thread as Ctrl-C would: it becomes ``interrupted`` with both slots
        serving at their current weights (a rollback under way finishes first). Returns :meth:`rollout_status`.

        Example::

            threading.Thread(target=fleet.rollout, args=(new,), kwargs={"strategy": Canary()}).start()
            fleet.interrupt_rollout()["state"]      # 'interrupted'; then rollout(resume=True) or rollback=True
        """
        run = self._rollout
        if run is not None and run.state in ("preparing", "baking"):
            run.stop.set()
            if self._rollout_lock.acquire(timeout=timeout_s):
                self._rollout_lock.release()
        return self.rollout_status()

    # -- rollout slots (local/rollout.py drives these; they keep the lock and the controller-thread rule)
    def _slot_name(self, asg: AsgEmulator) -> str:
        run = self._rollout
        if (
            run is not None
            and asg is run.slot
            and run.state in ("preparing", "baking", "interrupted", "rolling_back")
        ):
            return "new"
        return "retiring"

    def _new_asg(self, spec: FleetSpec, id_suffix: str = "") -> AsgEmulator:
        """A group of this fleet's workers behind its HAProxy; ``id_suffix`` keeps a rollout slot's target ids apart."""
        assert self._api is not None
        return AsgEmulator(
            spec,
            api=self._api,
            emit=self._event,
            work_dir=self._work_dir,
            backend=BACKEND,
            worker_command=self._worker_command,
            id_prefix=f"i-local-{self.fleet_id}{id_suffix}",
        )

    def _add_slot(self, spec: FleetSpec) -> AsgEmulator:
        """A second group for ``spec`` at weight 0 and the current desired capacity; the controller launches it."""
        assert self._api is not None
        with self._lock:
            self._slot_seq += 1
            asg = self._new_asg(spec, f"-r{self._slot_seq}")
            asg.traffic_weight = 0
            asg.server_id_offset = 100_000 * self._slot_seq
            asg.min = asg.max = asg.desired = self._capacity[1]
            self._slots.append(asg)
            self._res.slots.append(asg)
        return asg

    def _retire_slot(self, asg: AsgEmulator) -> None:
        """Scale ``asg`` to 0: its targets drain (in-flight requests finish) and stop; then it is dropped."""
        with self._lock:
            asg.min = asg.desired = 0
            if asg not in self._slots:
                self._slots.append(asg)
                self._res.slots.append(asg)

    def _promote_slot(self, asg: AsgEmulator, spec: FleetSpec) -> None:
        """``asg`` becomes the serving group (weight 1, autoscaled) and ``spec`` the fleet's; the old one retires."""
        with self._lock:
            old = self._asg
            asg.set_traffic_weight(1)
            self._slots.remove(asg)
            asg.min, asg.max = self._capacity[0], self._capacity[2]
            self._asg = self._res.asg = asg
            self.spec = spec.replace(capacity=self.spec.capacity)
            if old is not None:
                self._retire_slot(old)

    def interrupt(self, target: str | None = None) -> None:
        """Interrupt spot target ``target`` (None: the oldest spot target in service) as EC2 would: a rebalance
        recommendation, the two-minute notice on the compressed clock (served on the IMDS emulator its agent
        polls), then SIGKILL. Needs ``capacity.spot``; the interruption shows in ``events()`` and
        :meth:`spot_interruptions`.

        Example::

            fleet.interrupt()                       # the oldest spot target
            fleet.interrupt("i-local-ab12-0003")
        """
        if self._state == "closed":
            raise ProvisionError("this LocalFleet is closed: interrupt() cannot act on it; open a new one")
        if self.spec.capacity.spot is None:
            raise SpecError("capacity.spot", "is not set: this fleet has no spot targets to interrupt")
        if target is not None and not isinstance(target, str):
            raise SpecError("target", f"must be a target id string or None (got {type(target).__name__})")
        with self._lock:
            spot = self._asg.spot if self._asg is not None else None
        if spot is None:
            raise ProvisionError("the fleet is not launched yet: call launch() before interrupt()")
        spot.interrupt(target)

    def spot_interruptions(self) -> pd.DataFrame:
        """One row per spot interruption: cause, times (local seconds since launch) of the recommendation,
        notice, deregistration, termination and the replacement's first healthy check, and their differences.

        Example::

            fleet.spot_interruptions()[["target", "notice_to_deregistered_s", "notice_to_replacement_healthy_s"]]
        """
        import pandas as pd

        with self._lock:
            spot = self._asg.spot if self._asg is not None else None
            rows = spot.rows() if spot is not None else []
            ledger = spot.ledger_rows() if spot is not None else []
            now_s = time.monotonic() - spot.t0 if spot is not None else 0.0
            t0_utc = spot.at(0.0) if spot is not None else None
        df = pd.DataFrame(rows)
        df.attrs["ledger"] = ledger
        df.attrs["now_s"] = now_s  # local seconds since launch: where an open life ends when pricing the run
        df.attrs["time_scale"] = self.spec.local.time_scale
        df.attrs["t0_utc"] = t0_utc  # the wall-clock moment of local second 0 (None before launch)
        return df

    def decisions(self) -> pd.DataFrame:
        """Every target-tracking decision (``none`` included) with the exact inputs given to ``decide``."""
        with self._lock:
            return self._autoscaler.decisions()

    def close(self) -> None:
        """Stop the autoscaler, the workers and HAProxy; idempotent. Logs and temp files go with a temp work_dir."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._stop.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(15.0)
        self._finalizer()  # kills anything still alive (a stuck controller) and removes an owned work_dir

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clock_mapping(self) -> str:
        """The local clock in words: ``1 AWS minute = 2.0 s here; health interval 10 s -> 0.33 s; ...``."""
        s = self.spec
        inter, timeout = check_timing_ms(s)
        target = (
            f"{s.scaling.target_rps_per_target:g} rps/target = {self._autoscaler.policy.target_value:g} "
            f"requests/target per {s.local.period_s:g} s period"
            if s.scaling.metric == "request_count_per_target"
            # An average needs no conversion to the local clock.
            else f"{self._autoscaler.policy.target_value:g} in-flight requests per target (ConcurrencyPerTarget)"
        )
        return (
            f"1 AWS minute = {s.local.period_s:g} s here; health interval {s.health_check.interval_s} s -> "
            f"{inter / 1000:.2f} s, timeout {s.health_check.timeout_s} s -> {timeout / 1000:.2f} s; "
            f"warm-up {s.scaling.warmup_s} s -> {s.scaling.warmup_s * s.local.time_scale:.2f} s; target {target}"
        )

    def __repr__(self) -> str:
        with self._lock:
            insts = self._asg.live() if self._asg else []
            healthy = sum(1 for i in insts if i.health == "healthy")
            pool = len(self._asg.pooled()) if self._asg else 0
            lo, want, hi = self._capacity
        down = f" BALANCER DOWN ({self._balancer_reason})" if self._balancer == "down" else ""
        return (
            f"<LocalFleet {self.spec.name!r} {self._state}{down} url={self.url} targets: {healthy} healthy / "
            f"{len(insts)} live, desired {want} in [{lo}, {hi}]{f', warm pool {pool}' if pool else ''}; "
            f"{self.clock_mapping()}>"
        )

    # ------------------------------------------------------------------ internals
    def _say(self, line: str) -> None:
        log.info("%s", line)
        if self._on_output is not None:
            try:
                self._on_output(line)
            except Exception:  # a broken progress callback must not break the fleet
                log.exception("on_output callback failed")

    def _event(self, kind: str, target: str, detail: str) -> None:
        ev = {"timestamp": utcnow(), "kind": kind, "target": target, "detail": detail}
        with self._lock:
            self._events.append(ev)
        self._say(f"[{kind}] {target + ': ' if target else ''}{detail}")
        if self._on_event is not None:
            try:
                self._on_event(dict(ev))
            except Exception:
                log.exception("on_event callback failed")

    def _log_tail(self) -> str:
        """HAProxy's last lines and, for the first two targets' logs, where each first reports an error."""
        parts = []
        if self._haproxy:
            parts.append(self._haproxy.tail_log(5))
        for p in sorted(self._work_dir.glob("i-local-*.log"))[:2]:
            excerpt = log_excerpt(p)
            if excerpt:
                parts.append(f"{p.name}: " + excerpt)
        return "\n".join(x for x in parts if x)

    def _keep_logs(self) -> str:
        """Copy the targets' and HAProxy's logs out of the work dir that close() removes; `` (logs kept in D)``."""
        logs = [p for p in self._work_dir.glob("*.log") if p.is_file()]
        if (
            not logs or self._res.owned_dir is None
        ):  # a work_dir the caller gave is not removed: logs stay there
            return f" (logs in {self._work_dir})" if logs else ""
        try:
            kept = Path(tempfile.mkdtemp(prefix=f"mlops-lb-logs-{self.spec.name}-"))
            for p in logs:
                shutil.copy2(p, kept / p.name)
        except OSError as exc:
            log.warning("could not keep the logs of the failed launch: %s", exc)
            return ""
        return f" (logs kept in {kept})"

    def _start_haproxy(self) -> None:
        write_map(self._work_dir / MAP_FILE, self._policy, BACKEND)
        cfg = render_config(
            self.spec, port=self._port, socket_path=self._work_dir / "admin.sock", backend=BACKEND
        )
        hp = HaproxyProcess(cfg, self._work_dir, binary=self._binary)
        self._haproxy = self._res.haproxy = hp
        hp.start()
        if hp.pid is not None:
            register_pgid(hp.pid)
        self._api = RuntimeApi(hp.socket_path)

    def _run(self) -> None:
        try:
            self._start_haproxy()
            assert self._api is not None
            self._asg = self._res.asg = self._new_asg(self.spec)
            if self.spec.capacity.spot is not None:
                from .spot import SpotController

                self._asg.spot = SpotController(self.spec, asg=self._asg, api=self._api, emit=self._event)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        self._period_start = utcnow()
        next_period = time.monotonic() + self.spec.local.period_s
        while not self._stop.is_set():
            try:
                self._tick()
                if time.monotonic() >= next_period:
                    self._end_period()
                    next_period += self.spec.local.period_s
                    if next_period < time.monotonic():  # fell behind (machine busy): skip, don't burst
                        next_period = time.monotonic() + self.spec.local.period_s
            except Exception:
                log.exception("local fleet controller tick failed")
            self._stop.wait(TICK_S)
        self._shutdown()

    def _shutdown(self) -> None:
        asg, hp = self._asg, self._haproxy
        if asg is not None and asg.spot is not None:
            asg.spot.close()
        for group in [*self._slots, asg]:
            if group is None:
                continue
            with self._lock:
                pids = [i.id for i in group.live()]
            group.stop_all()
            for iid in pids:
                self._event("terminate", iid, "fleet closed")
        if hp is not None:
            hp.stop()
            if hp.pid is not None:
                unregister_pgid(hp.pid)

    def _restart_haproxy(self) -> None:
        assert self._haproxy is not None and self._asg is not None
        code = self._haproxy.returncode()
        if self._haproxy.pid is not None:
            unregister_pgid(self._haproxy.pid)
        self._haproxy.start()
        if self._haproxy.pid is not None:
            register_pgid(self._haproxy.pid)
        self._sampler.reset_counters()  # the new process counts from zero
        with self._lock:
            n = self._asg.reregister_all()
        self._event(
            "balancer_restart",
            "",
            f"haproxy exited with code {code}; restarted on {self.url} "
            f"(pid {self._haproxy.pid}) and re-registered {n} target(s)",
        )

    def _try_restart_haproxy(self) -> bool:
        """Restart a dead HAProxy; on failure the balancer is down: one event and one warning per change of state,
        retries with exponential backoff. True once it is up again."""
        now = time.monotonic()
        if now < self._restart_after:
            return False
        try:
            self._restart_haproxy()
        except ProvisionError as exc:  # PortInUse, a config HAProxy refuses, a start that timed out
            reason = str(exc).split("\n", 1)[0]
            self._restart_after = now + self._restart_backoff_s
            self._restart_backoff_s = min(2 * self._restart_backoff_s, RESTART_BACKOFF_S[1])
            if self._balancer != "down" or reason != self._balancer_reason:
                first = self._balancer != "down"
                self._balancer, self._balancer_reason = "down", reason
                if first:
                    self._balancer_down_since = now
                log.warning(
                    "balancer down: %s; retrying with backoff up to %g s", reason, RESTART_BACKOFF_S[1]
                )
                self._event("balancer_down", "", f"haproxy could not be restarted: {reason}")
            else:
                log.debug("balancer still down: %s", reason)
            return False
        self._restart_backoff_s, self._restart_after = RESTART_BACKOFF_S[0], 0.0
        if self._balancer == "down":
            took = now - self._balancer_down_since
            self._balancer, self._balancer_reason = "up", ""
            log.warning("balancer up again after %.2f s", took)
            self._event("balancer_up", "", f"haproxy listening on {self.url} again after {took:.2f} s down")
        return True

    def _tick(self) -> None:
        assert self._haproxy is not None and self._asg is not None and self._api is not None
        if not self._haproxy.alive() and not self._try_restart_haproxy():
            return
        try:
            rows = self._api.show_stat()
        except OSError as exc:
            log.debug("show stat failed: %s", exc)
            return
        with self._lock:
            self._sampler.add_stats(rows)
            lo, want, hi = self._capacity
            self._asg.min, self._asg.desired, self._asg.max = lo, want, hi
            self._asg.tick(rows)
            for other in list(self._slots):
                other.tick(rows)
                if other.desired == 0 and not any(i.state != "terminated" for i in other.instances):
                    self._slots.remove(other)

    def _end_period(self) -> None:
        assert self._asg is not None
        end = utcnow()
        with self._lock:
            live = [i for i in self._asg.live() if i.worker.exit_code() is None]
        # Outside the lock: a busy worker may take a moment to answer.
        latency, cpu = self._sampler.scrape(
            [(i.id, i.worker) for i in live], metrics_path=self.spec.server.default_metrics_path
        )
        with self._lock:
            asg = self._asg
            ready, warming = asg.ready_and_warming()
            lo, want, hi = self._capacity
            observed = PeriodRecord(
                start=self._period_start,
                end=end,
                healthy=len(asg.healthy()),
                unhealthy=sum(
                    1 for i in asg.instances if i.state == "in_service" and i.health == "unhealthy"
                ),
                desired=want,
                in_service=sum(1 for i in asg.instances if i.state == "in_service"),
                ready=ready,
                latency=latency,
                cpu=cpu,
            )
            rec = self._sampler.end_period(observed)
            self._records.append(rec)
            self._period_start = end
            decision = self._autoscaler.tick(
                rec.start,
                request_count=rec.request_count,
                concurrency=rec.concurrency,
                ready=ready,
                warming=warming,
                desired=want,
                min=lo,
                max=hi,
            )
            if decision.changed:
                self._capacity = (lo, decision.desired, hi)
        if decision.changed:
            self._event(
                decision.action,
                "",
                f"target tracking: desired {want} -> {decision.desired}: {decision.reason}",
            )


def check_runs_locally(spec: FleetSpec) -> None:
    """SpecError for what the local backend cannot run, before any process starts.

    Example::

        check_runs_locally(FleetSpec.from_dict({"name": "x", "server": {"image": "vllm/vllm-openai:v0.6.3"}}))
        # SpecError: server.image cannot run on the local backend: ...
    """
    server = spec.server
    if server.image is not None:
        raise SpecError(
            "server.image",
            f"cannot run on the local backend: it starts processes directly and has no container engine "
            f"(got {server.image!r}); run the server with server.command instead (the command the image would "
            f"run, e.g. ['python', '-m', 'vllm.entrypoints.openai.api_server', '--port', '{{port}}']), or use "
            f"backend='aws'",
        )
    for name, ref in server.secrets.items():
        if "env" not in ref:
            raise SpecError(
                f"server.secrets.{name}",
                f"cannot be fetched by the local backend (got {ref}): it reads no AWS parameter or secret, so "
                f"a local run needs no credentials; give it as {{env: VAR}} with the value in this process's "
                f"environment (export VAR=...), or use backend='aws', where each instance fetches it at boot",
            )
        if ref["env"] not in os.environ:
            raise SpecError(
                f"server.secrets.{name}.env",
                f"names {ref['env']}, which is not set in this process's environment: export {ref['env']}=... "
                f"before launching (its value is handed to each target as {name} and never stored)",
            )
    if spec.model.source.startswith("s3://"):
        raise SpecError(
            "model.source",
            f"cannot be read by the local backend (got {spec.model.source!r}): only AWS instances download "
            f"s3:// models (with their role); download it and give the local path",
        )
    source = spec.model.source
    if source not in ("demo", "demo.onnx") and "://" not in source and not Path(source).expanduser().exists():
        # Found slow: a worker that cannot load its model exits, is replaced, exits again, and launch reported it
        # after 91 s with the cause last. A local path is checked here, before any process starts.
        raise SpecError(
            "model.source",
            f"is not a file on this machine (got {source!r}, looked in {Path.cwd()}); give the path of the model "
            f"file, relative to where the fleet is launched, or 'demo'",
        )
    if server.kind == "model" and spec.model.source.endswith((".onnx", ".skops")):
        from ..serving.model import check_model

        # An .onnx ONNX Runtime cannot load, or a .skops file naming untrusted types, fails here, not in every
        # worker (neither check builds anything from the file).
        check_model(
            spec.model.source, trusted_types=spec.model.trusted_types, allow_pickle=spec.model.allow_pickle
        )
    fixed = {n: p for n, p in server.ports.items() if p}
    if fixed and spec.capacity.max > 1:
        name, port = next(iter(fixed.items()))
        raise SpecError(
            f"server.ports.{name}",
            f"is the fixed port {port}, but up to {spec.capacity.max} targets share this machine and only one can "
            f"bind it; use 0 (a free port per target, given as {{port_{name}}} and PORT_{name.upper()})",
        )
    if server.kind == "command" and find_program(spec) is None:
        argv0 = (server.command or ("",))[0]
        raise SpecError(
            "server.command",
            f"starts {argv0!r}, which is not an executable file or on PATH (the fleet's Python bin directory "
            f"comes first); give its full path or install it",
        )


WORK_DIR_PREFIX = "mlops-lb-"
OWNER_FILE = "owner"


def _sweep_orphaned_work_dirs() -> None:
    """Remove temp work dirs whose owner process is gone (its reaper was killed too, or a power cut).

    Only dirs of this user that carry an ``owner`` file (``pid start-time``) naming a process that no longer
    exists, or whose pid now belongs to a process started at another time.
    """
    root = Path(tempfile.gettempdir())
    try:
        candidates = list(root.glob(WORK_DIR_PREFIX + "*"))
    except OSError:
        return
    for d in candidates:
        try:
            if d.is_symlink() or d.stat().st_uid != os.getuid():
                continue
            pid_text, _, started = (d / OWNER_FILE).read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if process_start_time(pid) != started:
            log.info("removing %s: its owner (pid %d) is gone", d, pid)
            shutil.rmtree(d, ignore_errors=True)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
