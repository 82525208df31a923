"""Executors: where a run's engines run — a thread, worker processes, Ray shards — registered by name.

The collector (:class:`mlops_lb.load.collector.Collector`) never names an executor's machinery, the way a fleet never
names a backend's: it looks one up by name (``thread`` for one engine, ``process`` for several or when
``executor="process"``, ``ray`` with ``cluster=``) and calls it with itself as the :class:`EngineHost`. An
executor starts its engines, hands their messages to ``host.collect`` (which returns when every engine is done
or lost), and cleans up what it started. It reads and tells the host only through the protocol's members, so a
new executor (a Kubernetes job per shard, say) is one function and one :func:`register_executor` call.

Example::

    from mlops_lb.load.executors import register_executor, executor_names

    def inline(host):                       # every engine on the calling thread, one after another (a toy)
        ...
    register_executor("inline", inline)
    executor_names()                        # ('process', 'ray', 'thread', 'inline') once registered
"""

from __future__ import annotations

import contextlib
import queue as queue_mod
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._engine import run_engine, worker_main

if TYPE_CHECKING:
    import pandas as pd

    from ._engine import EngineConfig
    from ._messages import Message
    from ._profile_base import LoadProfile
    from .settings import LoadSettings

__all__ = [
    "GIL_SWITCH_INTERVAL_S",
    "EngineHost",
    "Executor",
    "executor_names",
    "get_executor",
    "register_executor",
]


class EngineHost(Protocol):
    """What an executor may read from and tell the run (the collector); nothing else of it."""

    settings: LoadSettings
    profile: LoadProfile
    workers: int

    @property
    def late_after_s(self) -> float: ...

    def engine_config(self, worker: int, *, encode: bool) -> EngineConfig:
        """Configuration of engine ``worker`` of :attr:`workers` (``encode``: histograms cross a process)."""
        ...

    def begin(self, workers: int, stop: Any) -> None:
        """Say how many engines run and the stop event (threading, multiprocessing…) they all watch."""
        ...

    def collect(
        self,
        get: Callable[..., Message],
        alive: Callable[[int], bool],
        on_all_ready: Callable[[], None] | None = None,
    ) -> None:
        """Read messages with ``get(timeout=…)`` until every engine is done or lost (the collector's deadline)."""
        ...

    def set_epoch(self, epoch: float) -> None:
        """The wall-clock time of schedule offset 0."""
        ...

    def stop_requested(self) -> bool:
        """True once the run must end."""
        ...

    def given_up(self, worker: int) -> bool:
        """True when the collector reported ``worker`` lost for going silent (kill it: it will not stop)."""
        ...

    def record(
        self,
        *,
        worker_pids: Sequence[int] | None = None,
        shard_sizes: Mapping[int, int] | None = None,
        shard_table: pd.DataFrame | None = None,
    ) -> None:
        """Tell the run its engines' process ids, their share sizes, a per-shard table."""
        ...


Executor = Callable[[EngineHost], None]
_EXECUTORS: dict[str, Executor] = {}


def register_executor(name: str, executor: Executor) -> None:
    """Make ``executor`` available as ``name`` (replacing any of that name)."""
    _EXECUTORS[name] = executor


def get_executor(name: str) -> Executor:
    """The executor registered as ``name``; a LoadTestError naming the registered ones otherwise."""
    try:
        return _EXECUTORS[name]
    except KeyError:
        from ..errors import LoadTestError

        raise LoadTestError(f"no load executor {name!r}; registered: {', '.join(executor_names())}") from None


def executor_names() -> tuple[str, ...]:
    """The registered executor names, sorted."""
    return tuple(sorted(_EXECUTORS))


# --------------------------------------------------------------------------- GIL hand-over
# The engine thread shares the GIL with the collector (interval rows, percentiles, bundle writes, callbacks) and
# any other thread of the process. When it wakes to send, it waits for the GIL up to the switch interval
# (5 ms by default) while another thread runs Python code: that wait is schedule lag. While a threaded run goes,
# the interval is lowered; the last run to end restores it.
GIL_SWITCH_INTERVAL_S = 0.0002
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextlib.contextmanager
def _short_gil_switch() -> Iterator[None]:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, GIL_SWITCH_INTERVAL_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


# --------------------------------------------------------------------------- thread
def thread_executor(host: EngineHost) -> None:
    """One engine on a thread of this process, with its own event loop (works inside Jupyter's loop)."""
    q: queue_mod.Queue[Message] = queue_mod.Queue()
    stop = threading.Event()
    host.begin(1, stop)

    def start_at() -> float:
        epoch = time.time() + 0.01
        host.set_epoch(epoch)
        return epoch

    def target() -> None:
        # a failure is reported through the queue as a Failed message
        with contextlib.suppress(BaseException):
            run_engine(host.engine_config(0, encode=False), q.put, stop, start_at)

    th = threading.Thread(target=target, name="mlops-lb-load-engine", daemon=True)
    with _short_gil_switch():
        th.start()
        host.collect(q.get, alive=lambda w: th.is_alive())
        th.join(timeout=5)


# --------------------------------------------------------------------------- processes
def process_executor(host: EngineHost) -> None:
    """``workers`` spawned processes, each an engine on every ``workers``-th request of the schedule."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    n = host.settings.workers
    q = ctx.Queue()
    stop = ctx.Event()
    host.begin(n, stop)
    go = ctx.Event()
    start_wall = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(
            target=worker_main,
            args=(host.engine_config(w, encode=True), q, stop, go, start_wall),
            name=f"mlops-lb-load-{w}",
            daemon=True,
        )
        for w in range(n)
    ]
    try:
        for p in procs:
            p.start()
        host.record(worker_pids=[int(p.pid or 0) for p in procs])

        def on_all_ready() -> None:
            epoch = time.time() + 0.05
            host.set_epoch(epoch)
            start_wall.value = epoch
            go.set()

        host.collect(q.get, alive=lambda w: procs[w].is_alive(), on_all_ready=on_all_ready)
    finally:
        stop.set()
        go.set()
        for w, p in enumerate(procs):
            if host.given_up(w):
                p.kill()  # stopped or hung: it would not see the stop event (our own child, by handle)
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        q.close()


register_executor("thread", thread_executor)
register_executor("process", process_executor)
