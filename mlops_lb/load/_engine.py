"""The open-loop engine: asyncio Protocols on uvloop, httptools (llhttp) parsing, keep-alive connections.

One engine runs one share of a schedule on one event loop (a thread of ``run_load``, or a worker process).
The hot path only stamps times and codes into preallocated numpy arrays and appends the index of each finished
request to a list; once per interval the new records are folded into HDR histograms (microseconds) and handed
to a *sink* as a message, together with the per-request records of the interval.

Latency is measured from the *intended* send time (coordinated-omission corrected); service time from the
actual send; the difference is schedule lag. Requests whose turn comes while every connection is busy wait and
that wait counts in their latency: the schedule never bends to the server.

Messages to the sink (tuples):

* ``("ready", worker)`` after the connections are open;
* ``("interval", worker, k, counts, hists, records)`` for interval ``k`` (completion time in ``[kI, (k+1)I)``);
* ``("done", worker, records, info)`` once, with the requests never finished (not sent or still in flight);
* ``("error", worker, text)`` if the engine itself failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["ERROR_KINDS", "EngineConfig", "fold", "new_histogram", "run_engine"]

log = logging.getLogger(__name__)

# Error codes stored per request; index = code.
ERROR_KINDS = ("", "timeout", "connect", "reset", "http_4xx", "http_5xx", "other")
E_OK, E_TIMEOUT, E_CONNECT, E_RESET, E_4XX, E_5XX, E_OTHER = range(7)

# HDR histograms in microseconds, 1 µs to 1 hour, 3 significant figures.
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
HIST_SIG_FIGS = 3
_TARGET_HEADER = b"x-target-id"


def new_histogram() -> Any:
    """An empty HdrHistogram in microseconds (the unit every histogram of this package uses)."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIG_FIGS)


def fold(hist: Any, seconds: np.ndarray) -> None:
    """Record an array of durations (s) into ``hist`` (µs) in one vectorised step.

    A pure-Python ``record_value`` costs 1-2 µs, and a once-a-second fold of tens of thousands of values would
    hold the GIL long enough to show up as schedule lag. So the counts-array index of every value is computed
    with numpy (HdrHistogram's own bucket arithmetic) and added to the histogram's counts in place; histograms
    without that layout fall back to ``record_value`` per distinct value.
    """
    if len(seconds) == 0:
        return
    us = np.clip(np.nan_to_num(seconds, nan=0.0) * 1e6, HIST_LOWEST_US, HIST_HIGHEST_US).astype(np.int64)
    try:
        counts = np.ctypeslib.as_array(hist.counts)
        half_mag = int(hist.sub_bucket_half_count_magnitude)
        unit_mag = int(hist.unit_magnitude)
        # bit_length(v | sub_bucket_mask): the smallest power of two containing the value
        pow2ceiling = np.floor(np.log2(us | int(hist.sub_bucket_mask))).astype(np.int64) + 1
        bucket = pow2ceiling - unit_mag - (half_mag + 1)
        sub = us >> (bucket + unit_mag)
        idx = ((bucket + 1) << half_mag) + sub - int(hist.sub_bucket_half_count)
        if counts.dtype.itemsize != 8 or idx.min() < 0 or idx.max() >= len(counts):
            raise ValueError("unexpected histogram layout")
    except (AttributeError, TypeError, ValueError):
        values, n = np.unique(us, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=False):
            hist.record_value(v, c)
        return
    counts += np.bincount(idx, minlength=len(counts)).astype(counts.dtype)
    hist.total_count += len(us)
    hist.min_value = min(hist.min_value, int(us.min()))
    hist.max_value = max(hist.max_value, int(us.max()))


class EngineConfig:
    """Everything one engine needs; picklable so a worker process can receive it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        schedule: np.ndarray,
        requests: Sequence[bytes] | None,
        request_fn: Callable[[int], bytes] | None,
        index_offset: int,
        index_stride: int,
        connections: int,
        timeout_s: float,
        interval_s: float,
        worker: int,
        encode_hists: bool,
    ) -> None:
        self.host = host
        self.port = port
        self.schedule = schedule
        self.requests = requests
        self.request_fn = request_fn
        self.index_offset = index_offset
        self.index_stride = index_stride
        self.connections = connections
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.worker = worker
        self.encode_hists = encode_hists


class _Conn(asyncio.Protocol):
    """One keep-alive connection. A dead connection is replaced by a fresh object, never revived."""

    __slots__ = ("_eng", "dead", "nbytes", "parser", "req", "status", "target", "transport")

    def __init__(self, eng: _Engine) -> None:
        self._eng = eng
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.req = -1
        self.dead = False
        self.status = 0
        self.nbytes = 0
        self.target = -1

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if self.req < 0:
            return  # bytes after a timeout or an unsolicited message: the connection is being dropped
        self.nbytes += len(data)
        try:
            self.parser.feed_data(data)
        except Exception:  # httptools.HttpParserError and friends: a malformed response
            self._fail(E_OTHER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.dead:
            return
        self.dead = True
        eng = self._eng
        eng.busy.discard(self)
        if self.req >= 0:
            eng.finish(self.req, 0, E_RESET, self.nbytes, -1)
            self.req = -1
        eng.release(_Conn(eng))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == _TARGET_HEADER:
            self.target = self._eng.target_code(value)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        eng = self._eng
        status = self.status
        err = E_OK if status < 400 else (E_4XX if status < 500 else E_5XX)
        eng.finish(self.req, status, err, self.nbytes, self.target)
        self.req = -1
        self.status = 0
        self.nbytes = 0
        self.target = -1
        if self.parser.should_keep_alive():
            eng.release(self)
        else:
            self.dead = True
            eng.busy.discard(self)
            if self.transport is not None:
                self.transport.close()
            eng.release(_Conn(eng))

    def _fail(self, code: int) -> None:
        """Record the in-flight request as failed and drop the connection."""
        if self.req >= 0:
            self._eng.finish(self.req, 0, code, self.nbytes, -1)
            self.req = -1
        if not self.dead:
            self.dead = True
            self._eng.busy.discard(self)
            if self.transport is not None:
                self.transport.abort()
            self._eng.release(_Conn(self._eng))


class _Engine:
    def __init__(self, cfg: EngineConfig, sink: Callable[[tuple], None], stop: Any) -> None:
        self.cfg = cfg
        self.sink = sink
        self.stop_flag = stop
        sched = np.asarray(cfg.schedule, dtype=float)
        n = len(sched)
        self.n = n
        self.sched = sched
        self.sched_list: list[float] = sched.tolist()
        self.sent = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=np.int16)
        self.err = np.zeros(n, dtype=np.int8)
        self.nbytes = np.zeros(n, dtype=np.int64)
        self.target = np.full(n, -1, dtype=np.int32)
        self.targets: dict[bytes, int] = {}
        self.target_names: list[str] = []
        self.completed: list[int] = []
        self.next = 0
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.stopping = False
        self.t0 = 0.0
        self.send_end = float("nan")
        self.perf = time.perf_counter
        self.reqs = list(cfg.requests) if cfg.requests is not None else None
        self.nreqs = len(self.reqs) if self.reqs else 0
        self.loop: asyncio.AbstractEventLoop | None = None
        # interval bookkeeping
        self.k = 0
        self.emitted_completed = 0
        self.emitted_sent = 0

    # ---------------------------------------------------------------- hot path
    def target_code(self, value: bytes) -> int:
        code = self.targets.get(value)
        if code is None:
            code = self.targets[value] = len(self.target_names)
            self.target_names.append(value.decode("latin-1"))
        return code

    def finish(self, i: int, status: int, err: int, nbytes: int, target: int) -> None:
        self.done[i] = self.perf() - self.t0
        self.status[i] = status
        self.err[i] = err
        self.nbytes[i] = nbytes
        self.target[i] = target
        self.completed.append(i)

    def release(self, conn: _Conn) -> None:
        """A connection became free: give it the next due request at once, or park it."""
        self.busy.discard(conn)
        j = self.next
        if not self.stopping and j < self.n and self.sched_list[j] <= self.perf() - self.t0:
            self.next = j + 1
            self.send(conn, j)
        else:
            self.idle.append(conn)

    def payload(self, j: int) -> bytes:
        gi = self.cfg.index_offset + j * self.cfg.index_stride
        if self.reqs is not None:
            return self.reqs[gi % self.nreqs]
        assert self.cfg.request_fn is not None
        return self.cfg.request_fn(gi)

    def send(self, conn: _Conn, j: int) -> None:
        self.busy.add(conn)
        conn.req = j
        self.sent[j] = self.perf() - self.t0
        if conn.transport is not None:
            conn.transport.write(self.payload(j))
        else:
            assert self.loop is not None
            self.loop.create_task(self.connect_and_send(conn, j))

    def tick(self) -> None:
        now = self.perf() - self.t0
        sched = self.sched_list
        n = self.n
        idle = self.idle
        j = self.next
        if self.stop_flag.is_set():
            self.stopping = True
        if not self.stopping:
            while j < n and idle and sched[j] <= now:
                self.next = j + 1
                self.send(idle.pop(), j)
                j += 1
        if self.stopping or j >= n:
            if self.send_end != self.send_end:  # NaN: first time here
                self.send_end = now
            return
        assert self.loop is not None
        # Wake for the next due request; while all connections are busy, completions send due requests and the
        # tick only needs to come back for the stop flag and idle connections.
        # uvloop timers have millisecond resolution and a shorter delay spins the loop at 100 % CPU, so wake at
        # least 1 ms later: requests due within that millisecond go out together, under 1 ms late.
        delay = sched[j] - now if idle else 0.001
        self.loop.call_later(min(max(delay, 0.001), 0.05), self.tick)

    # ---------------------------------------------------------------- connections
    async def open_conn(self, conn: _Conn) -> bool:
        assert self.loop is not None
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, self.cfg.host, self.cfg.port),
                timeout=self.cfg.timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("connect to %s:%s failed: %r", self.cfg.host, self.cfg.port, exc)
            return False
        return True

    async def connect_and_send(self, conn: _Conn, j: int) -> None:
        ok = await self.open_conn(conn)
        if conn.req != j:
            return  # stopped or already accounted for
        if ok and conn.transport is not None:
            conn.transport.write(self.payload(j))
            return
        conn.req = -1
        self.finish(j, 0, E_CONNECT, 0, -1)
        if not ok:
            self.release(conn)

    def sweep_timeouts(self) -> None:
        now = self.perf() - self.t0
        limit = self.cfg.timeout_s
        for conn in list(self.busy):
            if conn.req >= 0 and conn.transport is not None and now - self.sent[conn.req] > limit:
                conn._fail(E_TIMEOUT)

    # ---------------------------------------------------------------- intervals
    def records(self, idx: np.ndarray) -> dict[str, Any]:
        names = np.array([*self.target_names, ""], dtype=object)
        w = self.cfg
        return {
            "index": w.index_offset + idx.astype(np.int64) * w.index_stride,
            "intended": self.sched[idx],
            "sent": self.sent[idx],
            "done": self.done[idx],
            "status": self.status[idx],
            "err": self.err[idx],
            "bytes": self.nbytes[idx],
            "target": names[self.target[idx]],  # -1 picks the trailing ""
            "worker": np.full(len(idx), w.worker, dtype=np.int16),
        }

    def emit_interval(self, upto: float, final: bool = False) -> None:
        """Fold everything that completed (or was sent) before offset ``upto`` into interval ``self.k``."""
        comp = self.completed
        start = self.emitted_completed
        idx = np.asarray(comp[start:], dtype=np.int64)
        if len(idx) and not final:
            cut = int(np.searchsorted(self.done[idx], upto, side="left"))
            # done times are appended in order, so a prefix belongs to this interval
            idx = idx[:cut]
        self.emitted_completed = start + len(idx)
        s0 = self.emitted_sent
        s1 = self.next
        if not final:
            s1 = s0 + int(np.searchsorted(self.sent[s0:s1], upto, side="left"))
        self.emitted_sent = s1
        lo = self.k * self.cfg.interval_s
        offered = int(
            np.searchsorted(self.sched, upto, side="left") - np.searchsorted(self.sched, lo, side="left")
        )
        err = self.err[idx]
        status = self.status[idx]
        responded = idx[status > 0]
        corr, unc, lag = new_histogram(), new_histogram(), new_histogram()
        fold(corr, self.done[responded] - self.sched[responded])
        fold(unc, self.done[responded] - self.sent[responded])
        fold(lag, self.sent[s0:s1] - self.sched[s0:s1])
        counts = {
            "offered": offered,
            "sent": s1 - s0,
            "responses": len(responded),
            "ok": int(np.count_nonzero(err == E_OK)),
            "err": np.bincount(err, minlength=len(ERROR_KINDS)).tolist(),
        }
        hists: tuple[Any, ...] = (corr, unc, lag)
        if self.cfg.encode_hists:
            hists = tuple(h.encode() for h in hists)
        self.sink(("interval", self.cfg.worker, self.k, counts, hists, self.records(idx)))
        self.k += 1

    # ---------------------------------------------------------------- main
    async def prepare(self) -> None:
        self.loop = asyncio.get_running_loop()
        n_conn = self.cfg.connections
        conns = [_Conn(self) for _ in range(n_conn)]
        # Connect up front so the first requests do not pay the handshake as schedule lag.
        await asyncio.gather(*(self.open_conn(c) for c in conns))
        self.idle.extend(conns)

    async def run(self, t0: float) -> None:
        """Send the schedule starting at perf_counter time ``t0``; return after the drain."""
        loop = self.loop
        assert loop is not None
        self.t0 = t0
        interval = self.cfg.interval_s
        delay = t0 - self.perf()
        if delay > 0:
            await asyncio.sleep(delay)
        self.tick()
        drain_deadline = float("inf")
        sweep_every = min(0.05, self.cfg.timeout_s / 4)
        next_sweep = sweep_every
        while True:
            now = self.perf() - t0
            boundary = (self.k + 1) * interval
            if now >= boundary:
                self.emit_interval(boundary)
                continue
            if now >= next_sweep:
                self.sweep_timeouts()
                next_sweep = now + sweep_every
            if self.stop_flag.is_set() and not self.stopping:
                self.stopping = True
            sending_over = self.stopping or self.next >= self.n
            if sending_over:
                if self.send_end != self.send_end:
                    self.send_end = now
                if drain_deadline == float("inf"):
                    grace = min(self.cfg.timeout_s, 1.0) if self.stopping else self.cfg.timeout_s + 0.1
                    drain_deadline = now + grace
                if not self.busy or now >= drain_deadline:
                    break
            await asyncio.sleep(min(max(min(boundary, next_sweep) - now, 0.0), 0.02))
        end = self.perf() - t0
        self.emit_interval(end, final=True)
        unfinished = np.setdiff1d(
            np.arange(self.n), np.asarray(self.completed, dtype=np.int64), assume_unique=True
        )
        for conn in list(self.busy) + self.idle:
            if conn.transport is not None:
                conn.dead = True
                conn.transport.abort()
        info = {
            "sent": int(self.next),
            "scheduled": int(self.n),
            "send_end": float(self.send_end if self.send_end == self.send_end else end),
            "end": float(end),
            "stopped": bool(self.stopping),
            "last_k": self.k - 1,
        }
        self.sink(("done", self.cfg.worker, self.records(unfinished), info))


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where available (about 3x the asyncio default for this client), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        log.info("uvloop not available; the load engine uses the default asyncio loop (about 3x slower)")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_engine(
    cfg: EngineConfig,
    sink: Callable[[tuple], None],
    stop: Any,
    start_at: Callable[[], float],
) -> None:
    """Run one engine on a new event loop in the current thread.

    ``start_at()`` is called after the connections are open (and ``("ready", worker)`` was sent); it returns the
    wall-clock time (``time.time()``) at which offset 0 of the schedule falls.
    """
    loop = new_loop()
    try:
        eng = _Engine(cfg, sink, stop)
        loop.run_until_complete(eng.prepare())
        sink(("ready", cfg.worker))
        wall0 = start_at()
        t0 = time.perf_counter() + (wall0 - time.time())
        loop.run_until_complete(eng.run(t0))
    except BaseException:
        sink(("error", cfg.worker, traceback.format_exc()))
        raise
    finally:
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def worker_main(cfg: EngineConfig, queue: Any, stop: Any, go: Any, start_wall: Any) -> None:
    """Entry point of a worker process (multiprocessing spawn): run the engine, report through ``queue``."""
    import signal

    # Ctrl-C reaches the whole process group; the parent decides how the run ends and tells us via ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def start_at() -> float:
        go.wait(120)
        return float(start_wall.value)

    try:
        with contextlib.suppress(BaseException):  # already reported as an ("error", ...) message
            run_engine(cfg, queue.put, stop, start_at)
    finally:
        queue.close()
        queue.join_thread()
