"""Open-loop shards on Ray: ``run_load(..., cluster="ray", shards=N)``.

Ray is only a second *transport* for the engine's messages. Each shard is a Ray actor (one CPU) that runs the
same engine as ``workers=N`` (:func:`mlops_lb.load._engine.run_engine`) on its share of the schedule, and the
driver runs the same collector (through the :class:`~mlops_lb.load.executors.EngineHost` protocol: this module
never imports the runner, and is registered as the ``ray`` executor) that merges interval HDR histograms (sent encoded) and
record parts exactly: the merged p99 is the p99 of every request, never an average of per-shard p99s.

* **Schedule.** Shard ``k`` of ``N`` is :class:`mlops_lb.load.profiles.ScheduleShare`: Poisson arrivals are
  thinned at random (each shard is Poisson at rate/N), uniform ones interleaved. Every actor draws its share
  lazily, a chunk at a time (nothing large crosses the network or sits in memory), and reports its share's
  size, which the driver checks against its own count.
* **Start.** Actors connect first; when every shard is ready the driver picks one wall-clock epoch a little in
  the future and sends it to all (node clocks must agree: NTP/chrony, as on EC2).
* **Messages.** The engine's sink is a local ``queue.Queue``: no Ray call happens on the engine's loop. The
  driver long-polls each actor (``poll``), so a dead actor shows up as ``RayActorError`` on its poll; its
  unreported share is counted in ``LoadResult.lost_workers`` and the run is invalid, the shard named once
  (``generator_lost``); a shard that goes silent (a stopped process, a lost node) is given up at the collector's
  deadline, last intended send + ``timeout_s`` + a grace. Stop, Ctrl-C and a broken
  sweep bound are forwarded to every actor (``stop``); each keeps and sends what it measured.
* **Lag.** ``LoadResult.shards`` has one row per shard: node, pid, scheduled, received, sent, ``late`` (sent
  more than ``late_after_s`` after their intended time, 5 ms when it is automatic; k6's "dropped iterations" for an open loop that never
  drops) and the shard's lag p99, so a generator that fell behind is named.

Example::

    import ray
    ray.init(address="auto")                       # or cluster="ray://head:10001", or a local Ray
    r = run_load("http://10.0.1.5/predict", constant(20_000, 60, arrival="poisson"), cluster="ray", shards="auto")
    r.summary()["p99_s"], r.shards[["node", "sent", "late", "lag_p99_s"]]
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_mod
import socket
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailable, LoadTestError, SpecError
from ._ray_options import PLACEMENTS, check_options, client_address
from .executors import register_executor
from .sharding import ScheduleShare

if TYPE_CHECKING:
    from .executors import EngineHost

__all__ = ["PLACEMENTS", "RAY_INSTALL", "check_options", "execute_shards"]

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install 'mlops_lb[ray]'"
# Time from the driver's "go" to schedule offset 0: the go message must reach every node first.
START_LEAD_S = 0.25
STARTUP_TIMEOUT_S = 180.0
CONNECT_TIMEOUT_S = 5.0
FREE_WAIT_S = 10.0
# The object store of a Ray this module starts itself: interval messages are small and freed at once.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def import_ray() -> Any:
    """``import ray``, or BackendUnavailable naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(
            "ray", RAY_INSTALL, "the Python package, needed for run_load(cluster=...)"
        ) from exc
    return ray


# --------------------------------------------------------------------------- the actor
class _Shard:
    """One shard: runs the engine on a thread of a Ray actor; ``poll`` hands its messages to the driver.

    Threaded actor (``max_concurrency``): ``run`` blocks in the engine while ``poll``/``go``/``stop`` come in
    on other threads. The engine only ever touches local objects (its queue, two events).
    """

    def __init__(self) -> None:
        self._out: queue_mod.Queue[tuple] = queue_mod.Queue()
        self._stop = threading.Event()
        self._go = threading.Event()
        self._epoch = 0.0
        self._cfg: Any = None

    def setup(self, cfg: Any) -> dict[str, Any]:
        # The engine draws its share lazily; counting it here checks this node draws what the driver drew.
        size = cfg.share.sizes()[cfg.share.k]
        self._cfg = cfg
        import ray

        ctx = ray.get_runtime_context()
        return {
            "size": size,
            "pid": os.getpid(),
            "node": ctx.get_node_id(),
            "host": socket.gethostname(),
        }

    def run(self) -> None:
        from ._engine import run_engine
        from .executors import GIL_SWITCH_INTERVAL_S

        # This process is ours alone: poll threads (serialising batches) must not hold the engine off the GIL
        # for the default 5 ms switch interval, which would be schedule lag.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

        def start_at() -> float:
            self._go.wait(STARTUP_TIMEOUT_S)
            return self._epoch

        with contextlib.suppress(BaseException):  # reported as a Failed message by run_engine
            run_engine(self._cfg, self._out.put, self._stop, start_at)

    def poll(self, timeout: float) -> list[Any]:
        try:
            msgs = [self._out.get(timeout=timeout)]
        except queue_mod.Empty:
            return []
        while len(msgs) < 256:
            try:
                msgs.append(self._out.get_nowait())
            except queue_mod.Empty:
                break
        return msgs

    def go(self, epoch: float) -> None:
        self._epoch = epoch
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        if not self._go.is_set():  # not started yet: start at once, see the stop, report an empty share
            self._epoch = time.time()
            self._go.set()


# --------------------------------------------------------------------------- the driver side
class _Transport:
    """The collector's ``get``/``alive``/``on_all_ready`` over Ray: long polls, one per live shard."""

    POLL_S = 1.0

    def __init__(self, ray: Any, host: EngineHost, actors: list[Any], max_lag_s: float) -> None:
        from ._hdr import new_histogram

        self.ray = ray
        self.host = host
        self.actors = actors
        self.buf: deque[Any] = deque()
        self.polls: dict[Any, int] = {a.poll.remote(self.POLL_S): k for k, a in enumerate(actors)}
        self.dead: set[int] = set()
        self.finished: set[int] = set()
        self.stop_sent = False
        self.max_lag_s = max_lag_s
        n = len(actors)
        self.received = [0] * n
        self.sent = [0] * n
        self.late = [0] * n
        self.lag = [new_histogram() for _ in range(n)]
        self.state = ["running"] * n

    def get(self, timeout: float) -> Any:
        if self.buf:
            return self.buf.popleft()
        self._forward_stop()
        refs = list(self.polls)
        if refs:
            ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
            if ready and rest:
                more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref in ready:
                self._take(ref)
        else:
            time.sleep(timeout)
        if self.buf:
            return self.buf.popleft()
        raise queue_mod.Empty

    def _take(self, ref: Any) -> None:
        k = self.polls.pop(ref)
        try:
            msgs = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            log.warning(
                "load shard %d died: %s", k, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )
            self.dead.add(k)
            self.state[k] = "died"
            return
        except Exception:  # a failure of the transport itself: that shard's unreported share is lost
            log.exception("load shard %d: its messages could not be fetched", k)
            self.dead.add(k)
            self.state[k] = "failed"
            return
        from ._messages import Done, Failed

        last = False
        for m in msgs:
            self._account(k, m)
            if isinstance(m, Failed):
                last = True
                self.state[k] = "failed"
            elif isinstance(m, Done):
                last = True
                self.state[k] = "stopped" if m.info.get("stopped") else "done"
        self.buf.extend(msgs)
        if last:
            self.finished.add(k)
        else:
            self.polls[self.actors[k].poll.remote(self.POLL_S)] = k

    def _account(self, k: int, msg: Any) -> None:
        from ._hdr import fold

        part = getattr(msg, "records", None)  # Interval, Records and Done carry records
        if not isinstance(part, dict) or not len(part["index"]):
            return
        lag = np.asarray(part["sent"], dtype=float) - np.asarray(part["intended"], dtype=float)
        lag = lag[np.isfinite(lag)]
        self.received[k] += len(part["index"])
        self.sent[k] += len(lag)
        self.late[k] += int(np.count_nonzero(lag > self.max_lag_s))
        fold(self.lag[k], np.maximum(lag, 0.0))

    def _forward_stop(self) -> None:
        if self.host.stop_requested() and not self.stop_sent:
            self.stop_sent = True
            for k, a in enumerate(self.actors):
                if k not in self.dead and k not in self.finished:
                    a.stop.remote()

    def alive(self, k: int) -> bool:
        return k not in self.dead

    def go(self) -> None:
        epoch = time.time() + START_LEAD_S
        self.host.set_epoch(epoch)
        for k, a in enumerate(self.actors):
            if k not in self.dead:
                a.go.remote(epoch)


def _connect(ray: Any, cluster: str) -> bool:
    """Connect to the cluster ``run_load`` was given; True when this run owns the connection (and ends it)."""
    if cluster == "ray":
        if ray.is_initialized():
            return False
        address = os.environ.get("RAY_ADDRESS")
        try:
            if address:
                # ray.init() without an address connects to the cluster RAY_ADDRESS names (ray.init's docstring,
                # "Args: address", 2.), as on a cluster's own nodes; a local Ray's sizing arguments would make
                # it refuse ("When connecting to an existing cluster, object_store_memory must not be provided").
                ray.init(log_to_driver=False, configure_logging=False)
            else:
                ray.init(
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    log_to_driver=False,
                    configure_logging=False,
                )
        except Exception as exc:
            what = f"could not connect to RAY_ADDRESS={address}" if address else "could not start a local Ray"
            raise LoadTestError(f"cluster='ray': {what} ({exc})") from exc
        return True
    if ray.is_initialized():
        raise LoadTestError(
            f"cluster={cluster!r}: this process is already connected to Ray; call ray.shutdown() first, or pass "
            "cluster='ray' to use that connection"
        )
    host, port = client_address(cluster)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise LoadTestError(
            f"cluster={cluster!r}: cannot reach the Ray Client server at {host}:{port} ({exc}); start the head "
            "with `ray start --head --ray-client-server-port=10001` and allow that port from this machine"
        ) from exc
    try:
        ray.init(address=cluster, log_to_driver=False)
    except Exception as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise LoadTestError(f"cluster={cluster!r}: Ray Client could not connect ({exc})") from exc
    return True


def _shard_count(ray: Any, shards: int | str | None) -> int:
    total = int(ray.cluster_resources().get("CPU", 0))
    free = int(ray.available_resources().get("CPU", 0))
    # The actors of a run that just ended release their CPUs asynchronously: give them a moment.
    deadline = time.monotonic() + FREE_WAIT_S
    want = total if shards in (None, "auto") else min(int(shards), total)  # type: ignore[call-overload]
    while free < want and time.monotonic() < deadline:
        time.sleep(0.2)
        free = int(ray.available_resources().get("CPU", 0))
    if shards in (None, "auto"):
        if free < 1:
            raise SpecError(
                "shards", f"'auto' found no free CPU in the Ray cluster ({total} CPUs, all in use)"
            )
        return free
    assert isinstance(shards, int)
    if shards > free:
        raise SpecError(
            "shards",
            f"must be <= the {free} CPUs free in the Ray cluster ({total} in all), one per shard (got {shards}); "
            "add nodes or use shards='auto'",
        )
    return shards


def _check_picklable(ray: Any, host: EngineHost) -> None:
    for name, obj in (("payloads", host.engine_config(0, encode=True).request_fn), ("profile", host.profile)):
        if obj is None:
            continue
        try:
            ray.cloudpickle.dumps(obj)
        except Exception as exc:
            raise LoadTestError(
                f"{name} cannot be pickled to send to Ray shards ({type(exc).__name__}: {exc}); use a "
                "module-level function without open files, locks or sockets, or a list of payloads"
            ) from exc


def execute_shards(host: EngineHost) -> None:
    """The ``ray`` executor: run the host's schedule as Ray shards and feed their messages to its collector (see
    the module doc and :mod:`mlops_lb.load.executors`)."""
    ray = import_ray()
    _check_picklable(ray, host)
    opts = host.settings
    owned = _connect(ray, str(opts.cluster))
    actors: list[Any] = []
    pg: Any = None
    try:
        n = _shard_count(ray, opts.shards)
        stop = threading.Event()
        host.begin(n, stop)
        remote = ray.remote(num_cpus=1, max_concurrency=4, max_restarts=0)(_Shard)
        if opts.placement == "strict_spread":
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg = placement_group([{"CPU": 1}] * n, strategy="STRICT_SPREAD")
            try:
                ray.get(pg.ready(), timeout=60)
            except Exception as exc:
                nodes = sum(1 for x in ray.nodes() if x.get("Alive"))
                raise SpecError(
                    "placement",
                    f"'strict_spread' needs one node with a free CPU per shard ({n} shards, {nodes} nodes alive); "
                    "use placement='spread' or fewer shards",
                ) from exc
            strategies: list[Any] = [
                PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=k)
                for k in range(n)
            ]
        else:
            strategies = ["SPREAD" if opts.placement == "spread" else "DEFAULT"] * n
        actors = [remote.options(scheduling_strategy=s).remote() for s in strategies]  # type: ignore[attr-defined]
        expected = ScheduleShare(host.profile, 0, n).sizes()
        try:
            infos = ray.get(
                [a.setup.remote(host.engine_config(k, encode=True)) for k, a in enumerate(actors)],
                timeout=STARTUP_TIMEOUT_S,
            )
        except ray.exceptions.GetTimeoutError as exc:
            raise LoadTestError(f"{n} Ray shards did not start within {STARTUP_TIMEOUT_S:g} s") from exc
        except ray.exceptions.RayError as exc:  # e.g. mlops_lb missing or another version on a node
            raise LoadTestError(
                f"a Ray shard failed to start (is mlops_lb[ray] installed on every node?): {exc}"
            ) from exc
        for k, info in enumerate(infos):
            if info["size"] != expected[k]:
                raise LoadTestError(
                    f"shard {k} drew {info['size']} requests where the driver drew {expected[k]}: the nodes run "
                    "another numpy version than this process; install the same versions everywhere"
                )
        host.record(shard_sizes=dict(enumerate(expected)), worker_pids=[int(i["pid"]) for i in infos])
        transport = _Transport(ray, host, actors, host.late_after_s)
        runs = [a.run.remote() for a in actors]
        try:
            host.collect(transport.get, alive=transport.alive, on_all_ready=transport.go)
        finally:
            stop.set()
            transport._forward_stop()
            for k, a in enumerate(actors):
                if k not in transport.finished and k not in transport.dead:
                    a.go.remote(time.time())  # a shard still waiting to start must not wait for its timeout
            with contextlib.suppress(Exception):
                ray.wait(runs, num_returns=len(runs), timeout=10)
        rows = _rows(infos, transport, expected)
        _log_lag(rows, host.late_after_s)
        import pandas as pd

        host.record(shard_table=pd.DataFrame(rows))
    finally:
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        if pg is not None:
            with contextlib.suppress(Exception):
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(pg)
        if owned:
            with contextlib.suppress(Exception):
                ray.shutdown()


def _rows(infos: list[dict[str, Any]], t: _Transport, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for k, info in enumerate(infos):
        h = t.lag[k]
        rows.append(
            {
                "shard": k,
                "node": info["node"],
                "host": info["host"],
                "pid": info["pid"],
                "state": t.state[k],
                "scheduled": sizes[k],
                "received": t.received[k],
                "lost": sizes[k] - t.received[k] if k in t.dead else 0,
                "sent": t.sent[k],
                "late": t.late[k],
                "lag_p99_s": h.get_value_at_percentile(99.0) / 1e6 if h.get_total_count() else float("nan"),
            }
        )
    return rows


def _log_lag(rows: list[dict[str, Any]], bound_s: float) -> None:
    for r in rows:
        lag = r["lag_p99_s"]
        if lag == lag and lag > bound_s:
            log.warning(
                "load shard %d on %s fell behind its schedule: %d of %d requests sent more than %.1f ms late "
                "(lag p99 %.1f ms)", r["shard"], r["host"], r["late"], r["sent"], bound_s * 1e3, lag * 1e3,
            )  # fmt: skip


register_executor("ray", execute_shards)
