"""The open-loop engine: asyncio Protocols on uvloop, httptools (llhttp) parsing, keep-alive connections.

One engine runs one share of a schedule on one event loop (a thread of ``run_load``, or a worker process).
The hot path only stamps times and codes into preallocated arrays and appends the index of each finished
request to a list; every few milliseconds the new records are folded into the current interval's HDR
histograms (microseconds), and once per interval these are handed to a *sink* as a message, together with the
per-request records of the interval. The loop must never stall for more than a fraction of a millisecond:
any stall is schedule lag.

Latency is measured from the *intended* send time (coordinated-omission corrected); service time from the
actual send; the difference is schedule lag. Requests whose turn comes while every connection is busy wait and
that wait counts in their latency: the schedule never bends to the server.

Messages to the sink (tuples):

* ``("ready", worker)`` after the connections are open;
* ``("interval", worker, k, counts, hists, records)`` for interval ``k`` (completion time in ``[kI, (k+1)I)``);
  ``records["target"]`` holds codes into ``records["target_names"]`` (-1: no X-Target-Id);
* ``("done", worker, records, info)`` once, with the requests never finished (not sent or still in flight);
* ``("error", worker, text)`` if the engine itself failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import traceback
from array import array
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
    # fmax maps NaN to the lowest value (nan_to_num costs more than the rest of a small fold)
    us = np.minimum(np.fmax(seconds * 1e6, HIST_LOWEST_US), HIST_HIGHEST_US).astype(np.int64)
    try:
        counts = np.ctypeslib.as_array(hist.counts)
        half_mag = int(hist.sub_bucket_half_count_magnitude)
        unit_mag = int(hist.unit_magnitude)
        # bit_length(v | sub_bucket_mask), the smallest power of two containing the value, is frexp's exponent
        # (exact: values stay far below 2**53)
        pow2ceiling = np.frexp((us | int(hist.sub_bucket_mask)).astype(np.float64))[1].astype(np.int64)
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
    if len(idx) < 4096:
        # a slice folded every few milliseconds: a full-length bincount would cost more than the values
        where, n = np.unique(idx, return_counts=True)
        counts[where] += n.astype(counts.dtype)
    else:
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
    """One keep-alive connection. A dead connection is replaced by a fresh object, never revived.

    Only ``on_message_complete`` is a parser callback: per-header callbacks cost a Python call per header line
    (six or more per response), so the X-Target-Id header is found by a byte search of the first chunk instead.
    """

    __slots__ = ("_eng", "dead", "nbytes", "parser", "req", "target", "transport")

    def __init__(self, eng: _Engine) -> None:
        self._eng = eng
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.req = -1
        self.dead = False
        self.nbytes = 0
        self.target = -1
        eng.conns.add(self)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if self.req < 0:
            return  # bytes after a timeout or an unsolicited message: the connection is being dropped
        eng = self._eng
        # One clock read per read event: it stamps this response's completion and any send it triggers.
        eng.now = eng.perf() - eng.t0
        if not self.nbytes:
            self.target = eng.find_target(data)
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
        eng.conns.discard(self)
        if self.req >= 0:
            eng.finish(self.req, 0, E_RESET, self.nbytes, -1)
            self.req = -1
        eng.release(_Conn(eng), eng.clock())

    # -- httptools callback
    def on_message_complete(self) -> None:
        eng = self._eng
        i = self.req
        if i < 0:
            return  # an unsolicited second response in the same chunk
        status = self.parser.get_status_code()
        eng.done[i] = eng.now
        eng.status[i] = status
        if status >= 400:
            eng.err[i] = E_4XX if status < 500 else E_5XX
        eng.nbytes[i] = self.nbytes
        if self.target >= 0:
            eng.target[i] = self.target
        eng.completed.append(i)
        self.req = -1
        self.nbytes = 0
        if self.parser.should_keep_alive():
            eng.release(self, eng.now)
        else:
            self.dead = True
            eng.conns.discard(self)
            if self.transport is not None:
                self.transport.close()
            eng.release(_Conn(eng), eng.now)

    def _fail(self, code: int) -> None:
        """Record the in-flight request as failed and drop the connection."""
        eng = self._eng
        if self.req >= 0:
            eng.finish(self.req, 0, code, self.nbytes, -1)
            self.req = -1
        if not self.dead:
            self.dead = True
            eng.conns.discard(self)
            if self.transport is not None:
                self.transport.abort()
            eng.release(_Conn(eng), eng.clock())


class _Interval:
    """Accumulators of the interval being measured; filled a slice at a time (see ``_Engine.absorb``)."""

    def __init__(self) -> None:
        self.hists = (new_histogram(), new_histogram(), new_histogram())  # corrected, uncorrected, lag
        self.sent = 0
        self.responses = 0
        self.ok = 0
        self.err = np.zeros(len(ERROR_KINDS), dtype=np.int64)
        self.chunks: list[dict[str, np.ndarray]] = []


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
        # The hot path writes into array.array (a store costs a third of a numpy scalar store); the interval
        # work reads the same memory through zero-copy numpy views.
        self.sent = array("d", [math.nan]) * n
        self.done = array("d", [math.nan]) * n
        self.status = array("h", [0]) * n
        self.err = array("b", [0]) * n
        self.nbytes = array("q", [0]) * n
        self.target = array("i", [-1]) * n
        self.np_sent = np.frombuffer(self.sent, dtype=np.float64) if n else np.zeros(0)
        self.np_done = np.frombuffer(self.done, dtype=np.float64) if n else np.zeros(0)
        self.np_status = np.frombuffer(self.status, dtype=np.int16) if n else np.zeros(0, np.int16)
        self.np_err = np.frombuffer(self.err, dtype=np.int8) if n else np.zeros(0, np.int8)
        self.np_nbytes = np.frombuffer(self.nbytes, dtype=np.int64) if n else np.zeros(0, np.int64)
        self.np_target = np.frombuffer(self.target, dtype=np.int32) if n else np.zeros(0, np.int32)
        self.targets: dict[bytes, int] = {}
        self.target_names: list[str] = []
        self.completed: list[int] = []
        self.next = 0
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.stopping = False
        self.t0 = 0.0
        self.now = 0.0
        self.send_end = float("nan")
        self.perf = time.perf_counter
        self.reqs = list(cfg.requests) if cfg.requests is not None else None
        self.nreqs = len(self.reqs) if self.reqs else 0
        # the common case, one body for every request, skips the payload lookup in the hot path
        self.fixed: bytes | None = self.reqs[0] if self.reqs is not None and self.nreqs == 1 else None
        self.loop: asyncio.AbstractEventLoop | None = None
        # interval bookkeeping
        self.k = 0
        self.cur = _Interval()
        self.absorbed_completed = 0
        self.absorbed_sent = 0

    def clock(self) -> float:
        """Seconds since schedule offset 0."""
        return self.perf() - self.t0

    # ---------------------------------------------------------------- hot path
    def find_target(self, data: bytes) -> int:
        """Code of the X-Target-Id value in a response's first chunk (-1 if absent)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = len(data)
        i = data.find(b"\r\nX-Target-Id:", 0, end)
        if i < 0:
            i = data[:end].lower().find(b"\r\n" + _TARGET_HEADER + b":")
            if i < 0:
                return -1
        i += len(_TARGET_HEADER) + 3
        j = data.find(b"\r\n", i, end + 2)
        value = data[i : j if j >= 0 else end].strip()
        code = self.targets.get(value)
        if code is None:
            code = self.targets[value] = len(self.target_names)
            self.target_names.append(value.decode("latin-1"))
        return code

    def finish(self, i: int, status: int, err: int, nbytes: int, target: int) -> None:
        """Record a request that ended other than by a parsed response (errors); not on the hot path."""
        self.done[i] = self.clock()
        self.status[i] = status
        self.err[i] = err
        self.nbytes[i] = nbytes
        self.target[i] = target
        self.completed.append(i)

    def payload(self, j: int) -> bytes:
        gi = self.cfg.index_offset + j * self.cfg.index_stride
        if self.reqs is not None:
            return self.reqs[gi % self.nreqs]
        assert self.cfg.request_fn is not None
        return self.cfg.request_fn(gi)

    def release(self, conn: _Conn, now: float) -> None:
        """A connection became free at ``now``: give it the next due request at once, or park it."""
        j = self.next
        if j < self.n and not self.stopping and self.sched_list[j] <= now:
            self.next = j + 1
            tr = conn.transport
            fixed = self.fixed
            if tr is not None and fixed is not None:
                conn.req = j
                self.sent[j] = now
                tr.write(fixed)
            else:
                self.send(conn, j, now)
        else:
            self.idle.append(conn)

    def send(self, conn: _Conn, j: int, now: float) -> None:
        conn.req = j
        self.sent[j] = now
        tr = conn.transport
        if tr is not None:
            tr.write(self.payload(j))
        else:
            assert self.loop is not None
            self.loop.create_task(self.connect_and_send(conn, j))

    def tick(self) -> None:
        """Send every request that is due and has a free connection, then sleep until the next one is due."""
        if self.stopping:
            return
        perf = self.perf
        t0 = self.t0
        sched = self.sched_list
        n = self.n
        idle = self.idle
        sent = self.sent
        fixed = self.fixed
        j = self.next
        now = perf() - t0
        while j < n and idle and sched[j] <= now:
            self.next = j + 1
            conn = idle.pop()
            tr = conn.transport
            if tr is not None and fixed is not None:
                conn.req = j
                sent[j] = now
                tr.write(fixed)
            else:
                self.send(conn, j, now)
            j += 1
            now = perf() - t0  # each stamp is the moment its bytes go to the transport
        if j >= n:
            return
        assert self.loop is not None
        # While all connections are busy, completions send due requests and the tick only needs to come back for
        # idle connections. uvloop timers have millisecond resolution and a shorter delay spins the loop at
        # 100 % CPU, so wake at least 1 ms later: requests due within that millisecond go out together.
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
            self.release(conn, self.clock())

    def in_flight(self) -> bool:
        return any(c.req >= 0 for c in self.conns)

    def sweep_timeouts(self) -> None:
        now = self.clock()
        limit = self.cfg.timeout_s
        for conn in list(self.conns):
            if conn.req >= 0 and conn.transport is not None and now - self.sent[conn.req] > limit:
                conn._fail(E_TIMEOUT)

    # ---------------------------------------------------------------- intervals
    def records(self, idx: np.ndarray) -> dict[str, Any]:
        """Per-request arrays of ``idx``; targets as codes into ``target_names`` (named by the collector)."""
        w = self.cfg
        return {
            "index": w.index_offset + idx.astype(np.int64) * w.index_stride,
            "intended": self.sched[idx],
            "sent": self.np_sent[idx],
            "done": self.np_done[idx],
            "status": self.np_status[idx],
            "err": self.np_err[idx],
            "bytes": self.np_nbytes[idx],
            "target": self.np_target[idx],
            "worker": np.full(len(idx), w.worker, dtype=np.int16),
        }

    def absorb(self, upto: float, final: bool = False) -> None:
        """Fold what completed (and was sent) before offset ``upto`` into the current interval's accumulators.

        Called every few milliseconds so each fold is a small numpy step (about 0.1 ms at 50k rps); folding a
        whole second at once stalled the loop for 5-15 ms, which showed as schedule lag.
        """
        cur = self.cur
        start = self.absorbed_completed
        comp = self.completed
        if len(comp) > start:
            idx = np.array(comp[start:], dtype=np.int64)
            if not final:
                # completions are appended in time order, so a prefix belongs before ``upto``
                idx = idx[: int(np.searchsorted(self.np_done[idx], upto, side="left"))]
            if len(idx):
                self.absorbed_completed = start + len(idx)
                err = self.np_err[idx]
                responded = idx[self.np_status[idx] > 0]
                done = self.np_done[responded]
                fold(cur.hists[0], done - self.sched[responded])
                fold(cur.hists[1], done - self.np_sent[responded])
                cur.responses += len(responded)
                cur.err += np.bincount(err, minlength=len(ERROR_KINDS))
                cur.chunks.append(self.records(idx))
        s0 = self.absorbed_sent
        s1 = self.next
        if not final and s1 > s0:
            s1 = s0 + int(np.searchsorted(self.np_sent[s0:s1], upto, side="left"))
        if s1 > s0:
            self.absorbed_sent = s1
            fold(cur.hists[2], self.np_sent[s0:s1] - self.sched[s0:s1])
            cur.sent += s1 - s0

    def emit_interval(self, upto: float) -> None:
        """Send interval ``self.k`` (everything absorbed so far, ending at offset ``upto``) to the sink."""
        cur = self.cur
        lo = self.k * self.cfg.interval_s
        offered = int(
            np.searchsorted(self.sched, upto, side="left") - np.searchsorted(self.sched, lo, side="left")
        )
        counts = {
            "offered": offered,
            "sent": cur.sent,
            "responses": cur.responses,
            "ok": int(cur.err[E_OK]),
            "err": cur.err.tolist(),
        }
        hists: tuple[Any, ...] = cur.hists
        if self.cfg.encode_hists:
            hists = tuple(h.encode() for h in hists)
        rec: dict[str, Any]
        if cur.chunks:
            rec = {key: np.concatenate([c[key] for c in cur.chunks]) for key in cur.chunks[0]}
        else:
            rec = self.records(np.zeros(0, dtype=np.int64))
        rec["target_names"] = list(self.target_names)
        self.sink(("interval", self.cfg.worker, self.k, counts, hists, rec))
        self.k += 1
        self.cur = _Interval()

    # ---------------------------------------------------------------- main
    async def prepare(self) -> None:
        self.loop = asyncio.get_running_loop()
        conns = [_Conn(self) for _ in range(self.cfg.connections)]
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
            now = self.clock()
            boundary = (self.k + 1) * interval
            if now >= boundary:
                self.absorb(boundary)
                self.emit_interval(boundary)
                continue
            self.absorb(now)
            if now >= next_sweep:
                self.sweep_timeouts()
                next_sweep = now + sweep_every
            if not self.stopping and self.stop_flag.is_set():
                self.stopping = True
            sending_over = self.stopping or self.next >= self.n
            if sending_over:
                if self.send_end != self.send_end:  # NaN: first time here
                    self.send_end = now
                if drain_deadline == float("inf"):
                    grace = min(self.cfg.timeout_s, 1.0) if self.stopping else self.cfg.timeout_s + 0.1
                    drain_deadline = now + grace
                if not self.in_flight() or now >= drain_deadline:
                    break
            # Wake often: each wake folds a small slice of records (see absorb).
            await asyncio.sleep(min(max(min(boundary, next_sweep) - now, 0.0), 0.01))
        end = self.clock()
        self.absorb(end, final=True)
        self.emit_interval(end)
        unfinished = np.setdiff1d(
            np.arange(self.n), np.asarray(self.completed, dtype=np.int64), assume_unique=True
        )
        for conn in list(self.conns):
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
        rec = self.records(unfinished)
        rec["target_names"] = list(self.target_names)
        self.sink(("done", self.cfg.worker, rec, info))


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
