"""The open-loop engine: asyncio Protocols on uvloop, httptools (llhttp) parsing, keep-alive connections.

(Over 500 lines on purpose: the hot path — protocol callbacks, the stream parser, the send loop — shares
preallocated arrays and module-level constants; splitting it across modules would add lookups per request.)

One engine runs one share of a schedule on one event loop (a thread of ``run_load``, or a worker process).
The hot path only stamps times and codes into preallocated arrays and appends the slot of each finished
request to a list; every few milliseconds the new records are folded into the current interval's HDR
histograms (microseconds), and once per interval these are handed to a *sink* as a message, together with the
per-request records of the interval. The loop must never stall for more than a fraction of a millisecond:
any stall is schedule lag.

Memory does not grow with the run. The share's schedule arrives lazily in chunks
(:class:`~mlops_lb.load.profiles.ScheduleShare`) and each request lives in a slot of a ring (``j & mask``) from
the time its chunk is loaded until its record has been handed on: the ring holds about
``rate x (timeout_s + a chunk)`` requests, whatever the duration. A window wider than the ring (a slow server
holding requests until their timeout) doubles it once, remapping the slots in flight.

Latency is measured from the *intended* send time (coordinated-omission corrected); service time from the
actual send; the difference is schedule lag. Requests whose turn comes while every connection is busy wait and
that wait counts in their latency: the schedule never bends to the server.

Messages to the sink are the named types of :mod:`mlops_lb.load._messages` (Ready, Interval, SendEnd, Records,
Done, Failed); error codes live in :mod:`._codes` and the histogram helpers in :mod:`._hdr`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
import traceback
import weakref
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._codes import (
    E_4XX,
    E_5XX,
    E_BAD_EVENT,
    E_CANCELLED,
    E_CONNECT,
    E_NO_CONN,
    E_NO_TOKENS,
    E_OK,
    E_OTHER,
    E_RESET,
    E_TIMEOUT,
    E_TRUNCATED,
    ERROR_KINDS,
    LATENCY_KINDS,
)
from ._hdr import fold, new_histogram
from ._messages import Done, Failed, Interval, Message, Ready, Records, SendEnd

if TYPE_CHECKING:
    from .sharding import ScheduleShare

__all__ = [
    "ERROR_KINDS",
    "EngineConfig",
    "body_until_close",
    "concat_records",
    "fold",
    "new_histogram",
    "run_engine",
]

log = logging.getLogger(__name__)

# A wake of the engine's loop later than planned by more than this is recorded as a stall (start, length): the
# loop sleeps at most 10 ms, so a longer gap is this machine (CPU contention, a GC pause, SIGSTOP), not the fleet.
STALL_RECORD_S = 0.02

# Ring of request slots: the smallest size (2 chunks), and how many requests stay loaded ahead of the next send.
RING_MIN = 1 << 17
FEED_AHEAD = 1 << 15

_TARGET_HEADER = b"x-target-id"


class EngineConfig:
    """Everything one engine needs; picklable so a worker process can receive it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        share: ScheduleShare,
        requests: Sequence[bytes] | None,
        request_fn: Callable[[int], bytes] | None,
        connections: int,
        timeout_s: float,
        interval_s: float,
        worker: int,
        encode_hists: bool,
        connect_timeout_s: float | None = None,
        body_hash: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.share = share
        self.requests = requests
        self.request_fn = request_fn
        self.connections = connections
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.worker = worker
        self.encode_hists = encode_hists
        self.connect_timeout_s = min(timeout_s, 3.0) if connect_timeout_s is None else connect_timeout_s
        # Hash each response body (a shadow run comparing bodies): only then do connections take body callbacks.
        self.body_hash = body_hash


def body_until_close(head: bytes) -> bool:
    """True when a response header block declares no body length, so the body ends when the server closes.

    RFC 9112 §6.3 (https://www.rfc-editor.org/rfc/rfc9112#section-6.3): a response without Content-Length
    or a chunked Transfer-Encoding (and not 1xx/204/304) is delimited by the close of the connection; so is
    any HTTP/1.0 response without Content-Length. httptools does not expose llhttp_finish(), so the engine
    completes such a response itself when the connection ends.
    """
    end = head.find(b"\r\n\r\n")
    block = (head if end < 0 else head[:end]).lower()
    if end < 0 or block[9:10] == b"1" or block[9:12] in (b"204", b"304"):
        return False
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value):
            return False
    return True


class _Conn(asyncio.Protocol):
    """One keep-alive connection. A dead connection is replaced by a fresh object, never revived.

    Only ``on_message_complete`` is a parser callback: per-header callbacks cost a Python call per header line
    (six or more per response), so the X-Target-Id header is found by a byte search of the first chunk instead.
    A response whose header block names ``chunked`` or ``event-stream`` is handed to a :class:`_Stream` (its own
    parser with body callbacks), so only streamed responses pay for token timing.
    """

    __slots__ = ("_eng", "dead", "head", "held", "nbytes", "parser", "req", "sp", "target", "transport")

    def __init__(self, eng: _Engine) -> None:
        self._eng = eng
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.req = -1
        self.dead = False
        self.nbytes = 0
        self.target = -1
        self.head = b""
        self.held: bytes | None = None
        self.sp: _Stream | None = None
        eng.conns.add(self)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self._eng.transports.add(transport)

    def data_received(self, data: bytes) -> None:
        if self.req < 0:
            return  # bytes after a timeout or an unsolicited message: the connection is being dropped
        eng = self._eng
        # One clock read per read event: it stamps this response's completion and any send it triggers.
        eng.now = eng.perf() - eng.t0
        sp = self.sp
        if sp is not None:
            self.nbytes += len(data)
            sp.feed(data)
            return
        if not self.nbytes:
            if self.held is not None:
                data = self.held + data
                self.held = None
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.held = data  # decide how to parse once the whole header block is here
                return
            self.head = data
            self.target = eng.find_target(data, end)
            if data.find(b"chunked", 0, end) >= 0 or data.find(b"event-stream", 0, end) >= 0:
                self.nbytes = len(data)
                self.sp = _Stream(self, data, end)
                return
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
        i = self.req
        if i >= 0:
            eng.now = eng.clock()
            sp = self.sp
            if sp is not None:
                sp.eof()
            elif self.nbytes and body_until_close(self.head) and self.parser.get_status_code():
                eng.complete(i, self.parser.get_status_code(), self.nbytes, self.target, None)
            else:
                eng.finish(i, 0, E_RESET, self.nbytes, -1)
            self.req = -1
        else:
            # A parked keep-alive connection the server closed (RFC 9112 §9.6): it must leave the idle list, or a
            # later send would reconnect this dead object while its replacement (below) is used as well.
            with contextlib.suppress(ValueError):
                eng.idle.remove(self)
        eng.release(eng.conn_cls(eng), eng.clock())

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
            self.retire()

    def retire(self) -> None:
        """Close after a complete response the server will not follow with another (Connection: close)."""
        eng = self._eng
        self.dead = True
        eng.conns.discard(self)
        if self.transport is not None:
            self.transport.close()
        eng.release(eng.conn_cls(eng), eng.now)

    def _fail(self, code: int) -> None:
        """Record the in-flight request as failed and drop the connection."""
        eng = self._eng
        if self.req >= 0:
            sp = self.sp
            if sp is not None:
                eng.now = eng.clock()
                eng.complete(self.req, sp.status(), self.nbytes, self.target, sp, code)
                self.sp = None
            else:
                eng.finish(self.req, 0, code, self.nbytes, -1)
            self.req = -1
        if not self.dead:
            self.dead = True
            eng.conns.discard(self)
            if self.transport is not None:
                self.transport.abort()
            eng.release(eng.conn_cls(eng), eng.clock())


class _HashConn(_Conn):
    """A connection that also hashes each response body (blake2b, 8 bytes; the bytes themselves are never kept:
    bodies may carry user data) into the ring's ``body_hash`` column, for a shadow run's body comparison. Only
    used when asked (``EngineConfig.body_hash``): httptools calls ``on_body`` only on a protocol that has it, so
    the plain :class:`_Conn` pays nothing. Streamed responses are not hashed (``body_hash`` 0: not compared)."""

    __slots__ = ("h",)

    def __init__(self, eng: _Engine) -> None:
        super().__init__(eng)
        self.h = hashlib.blake2b(digest_size=8)

    def on_body(self, body: bytes) -> None:
        self.h.update(body)

    def on_message_complete(self) -> None:
        i = self.req
        if i >= 0:
            self._eng.bhash[i] = int.from_bytes(self.h.digest(), "little") or 1  # 0 means "not hashed"
        self.h = hashlib.blake2b(digest_size=8)
        super().on_message_complete()


class _Stream:
    """Token timing of one streamed response (SSE ``text/event-stream`` or another chunked body).

    SSE (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation): events end
    at a blank line; lines end with CRLF, LF or CR; ``data:`` lines of one event join with LF; lines starting
    with ``:`` are comments. An event may span reads and chunks and a chunk may hold many events, so events are
    cut from the de-chunked body. An event's data is JSON; ``[DONE]`` ends an OpenAI stream. A token-bearing
    event is an OpenAI chunk whose ``choices[*].delta`` carries ``content``, ``reasoning_content`` or
    ``tool_calls`` (chat) or whose ``choices[*].text`` is non-empty (completions), or a TGI event with
    ``token.text``; a role-only first delta and usage-only events carry none. ``usage.completion_tokens`` when
    sent (``stream_options.include_usage``) replaces the count of token-bearing events as the token count.
    A chunked body that is not SSE counts one token per non-empty chunk.
    """

    __slots__ = (
        "bad", "buf", "chunk_bytes", "conn", "eng", "events", "first", "last", "last_rx", "maxgap", "parser",
        "sse", "usage",
    )  # fmt: skip

    def __init__(self, conn: _Conn, data: bytes, end: int) -> None:
        import httptools

        self.conn = conn
        eng = self.eng = conn._eng
        eng.ensure_stream_arrays()
        self.sse = data.find(b"event-stream", 0, end) >= 0
        self.parser = httptools.HttpResponseParser(self)
        self.buf = b""
        self.chunk_bytes = 0
        self.events = 0
        self.first = math.nan
        self.last = math.nan
        self.maxgap = 0.0
        self.usage = -1
        self.bad = False
        self.last_rx = eng.now
        self.feed(data)

    def status(self) -> int:
        return int(self.parser.get_status_code() or 0)

    def feed(self, data: bytes) -> None:
        self.last_rx = self.eng.now
        try:
            self.parser.feed_data(data)
        except Exception:  # a malformed chunk framing or header
            self.conn._fail(E_OTHER)

    # -- httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self.sse:
            self.chunk_bytes += len(body)
            return
        buf = self.buf + body
        if b"\r" in buf:
            # a CR at the very end may be the first half of a CRLF: keep it for the next read
            tail = buf.endswith(b"\r")
            buf = buf[:-1] if tail else buf
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if tail else b"")
        while True:
            k = buf.find(b"\n\n")
            if k < 0:
                break
            self.event(buf[:k])
            buf = buf[k + 2 :]
        self.buf = buf

    def on_chunk_complete(self) -> None:
        if not self.sse and self.chunk_bytes:
            self.token()
        self.chunk_bytes = 0

    def on_message_complete(self) -> None:
        conn = self.conn
        eng = self.eng
        i = conn.req
        if i < 0:
            return
        code = self.verdict()
        eng.complete(i, self.status(), conn.nbytes, conn.target, self, code)
        conn.req = -1
        conn.nbytes = 0
        conn.sp = None
        if self.parser.should_keep_alive():
            eng.release(conn, eng.now)
        else:
            conn.retire()

    # -- events
    def event(self, raw: bytes) -> None:
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                v = line[5:]
                data.append(v[1:] if v.startswith(b" ") else v)
        if not data:
            return  # a comment, a keep-alive or an event without data
        payload = b"\n".join(data)
        if payload == b"[DONE]":
            return
        try:
            obj = json.loads(payload)
        except ValueError:
            self.bad = True
            return
        if not isinstance(obj, dict):
            self.bad = True
            return
        usage = obj.get("usage")
        if isinstance(usage, dict):
            n = usage.get("completion_tokens")
            if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                self.usage = n
        choices = obj.get("choices")
        if isinstance(choices, list):
            for c in choices:
                if not isinstance(c, dict):
                    continue
                d = c.get("delta")
                if isinstance(d, dict):
                    if d.get("content") or d.get("reasoning_content") or d.get("tool_calls"):
                        self.token()
                        return
                elif c.get("text"):
                    self.token()
                    return
            return
        tok = obj.get("token")
        if isinstance(tok, dict) and tok.get("text"):
            self.token()

    def token(self) -> None:
        now = self.eng.now
        if self.events:
            gap = now - self.last
            self.eng.gaps.append(gap)
            if gap > self.maxgap:
                self.maxgap = gap
        else:
            self.first = now
        self.last = now
        self.events += 1

    def verdict(self) -> int:
        """Error code of a stream that ended: a leftover partial event, a bad event or no token at all."""
        if self.bad:
            return E_BAD_EVENT
        if self.sse and self.buf.strip():
            self.event(self.buf)  # data after the last blank line: count it, but the stream was cut
            return E_TRUNCATED
        if not self.events and self.usage <= 0:
            return E_NO_TOKENS
        return E_OK

    def eof(self) -> None:
        """The connection ended: the end of a close-delimited body, else a truncated stream."""
        conn = self.conn
        i = conn.req
        code = self.verdict() if body_until_close(conn.head) else E_TRUNCATED
        self.eng.complete(i, self.status(), conn.nbytes, conn.target, self, code)
        conn.req = -1
        conn.sp = None


class _Interval:
    """Accumulators of the interval being measured; filled a slice at a time (see ``_Engine.absorb``)."""

    def __init__(self) -> None:
        self.hists = (new_histogram(), new_histogram(), new_histogram())  # corrected, uncorrected, lag
        # ttft corrected, ttft uncorrected, itl, tpot: created when the first stream shows up
        self.shists: tuple[Any, Any, Any, Any] | None = None
        self.tokens = 0
        self.offered = 0  # intended in the interval (whether or not sent)
        self.sent = 0
        self.starved = 0
        self.stalls: list[tuple[float, float]] = []  # (offset, seconds) of loop stalls that ended in it
        self.responses = 0
        self.ok = 0
        self.err = np.zeros(len(ERROR_KINDS), dtype=np.int64)
        self.chunks: list[dict[str, np.ndarray]] = []


STREAM_KEYS = ("tok_first", "tok_last", "tok_events", "tok_usage", "itl_max")


_STREAM_EMPTY = {
    "tok_first": math.nan,
    "tok_last": math.nan,
    "tok_events": 0,
    "tok_usage": -1,
    "itl_max": math.nan,
}
_STREAM_DTYPES = {"tok_events": np.int32, "tok_usage": np.int32}


def stream_defaults(n: int) -> dict[str, np.ndarray]:
    """Stream record columns for ``n`` requests that did not stream (NaN times, -1 usage, 0 events)."""
    return {k: np.full(n, v, _STREAM_DTYPES.get(k, np.float64)) for k, v in _STREAM_EMPTY.items()}


def concat_records(chunks: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate record chunks; chunks from before the first stream get the stream columns filled in."""
    if not any(STREAM_KEYS[0] in c for c in chunks):
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0] if key != "target_names"}
    full = [c if STREAM_KEYS[0] in c else {**c, **stream_defaults(len(c["index"]))} for c in chunks]
    return {key: np.concatenate([c[key] for c in full]) for key in full[0] if key != "target_names"}


# The per-request record columns of the ring, with the value of an empty slot (unsent, unanswered).
_RING_EMPTY = {
    "sent": math.nan,
    "done": math.nan,
    "status": 0,
    "err": 0,
    "bytes": 0,
    "target": -1,
    "body_hash": 0,
}


class _Engine:
    def __init__(self, cfg: EngineConfig, sink: Callable[[Message], None], stop: Any) -> None:
        self.cfg = cfg
        self.sink = sink
        self.stop_flag = stop
        self.source = cfg.share.chunks()
        self.exhausted = False
        self.fed = 0  # requests loaded into the ring; local sequence numbers 0..fed-1
        self.low = 0  # every request below it was handed on: its slot is free
        self.offered = 0  # requests intended before the last absorb's ``upto``
        self.last_due = 0.0
        self.total_sent = 0
        self.cap = 0
        self.mask = 0
        # token timing of streamed responses: allocated when the first one arrives (see ensure_stream_arrays)
        self.stream: dict[str, np.ndarray] | None = None
        self.hashing = bool(getattr(cfg, "body_hash", False))
        self.conn_cls: type[_Conn] = _HashConn if self.hashing else _Conn
        self._alloc(RING_MIN)
        self.gaps: list[float] = []
        self.targets: dict[bytes, int] = {}
        self.target_names: list[str] = []
        self.completed: list[int] = []
        self.next = 0
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        # every transport ever opened: the end of the run closes any still open (a connect that completed while
        # being cancelled, say), so none outlives the loop (ResourceWarning, "Event loop is closed")
        self.transports: weakref.WeakSet[Any] = weakref.WeakSet()
        self.stopping = False
        self.started = False
        self.starved = 0
        self.t0 = 0.0
        self.now = 0.0
        self.send_end = float("nan")
        self.resumed_at = -math.inf  # when the loop last came back from a stall
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
        self.absorbed_starved = 0
        self.feed()

    # ---------------------------------------------------------------- the ring
    def _alloc(self, cap: int) -> None:
        """Fresh ring arrays of ``cap`` slots (a power of two), every slot empty."""
        self.cap, self.mask = cap, cap - 1
        # The hot path writes into array.array (a store costs a third of a numpy scalar store) and reads intended
        # times through a memoryview (Python floats without a list); interval work uses zero-copy numpy views.
        self.sent = array("d", [math.nan]) * cap
        self.done = array("d", [math.nan]) * cap
        self.status = array("h", [0]) * cap
        self.err = array("b", [0]) * cap
        self.nbytes = array("q", [0]) * cap
        self.target = array("i", [-1]) * cap
        self.np_sent = np.frombuffer(self.sent, dtype=np.float64)
        self.np_done = np.frombuffer(self.done, dtype=np.float64)
        self.np_status = np.frombuffer(self.status, dtype=np.int16)
        self.np_err = np.frombuffer(self.err, dtype=np.int8)
        self.np_nbytes = np.frombuffer(self.nbytes, dtype=np.int64)
        self.np_target = np.frombuffer(self.target, dtype=np.int32)
        if self.hashing:
            self.bhash = array("Q", [0]) * cap
            self.np_bhash = np.frombuffer(self.bhash, dtype=np.uint64)
        self.sched = np.zeros(cap)
        self.sched_list: Any = memoryview(self.sched)  # type: ignore[arg-type]
        self.gidx = np.zeros(cap, np.int64)
        self.fin = np.zeros(cap, np.int8)  # 1: the slot's record was absorbed
        if self.stream is not None:
            self.stream = stream_defaults(cap)

    def columns(self) -> dict[str, np.ndarray]:
        """The ring's record columns by record name (numpy views), every one with an :data:`_RING_EMPTY` value."""
        return {
            "sent": self.np_sent,
            "done": self.np_done,
            "status": self.np_status,
            "err": self.np_err,
            "bytes": self.np_nbytes,
            "target": self.np_target,
            **({"body_hash": self.np_bhash} if self.hashing else {}),
        }

    def spans(self, a: int, b: int) -> list[slice]:
        """The slot slices of requests ``a..b-1`` (at most two: the range may wrap around the ring)."""
        if b <= a:
            return []
        s, e = a & self.mask, b & self.mask
        if s < e:
            return [slice(s, e)]
        return [slice(s, self.cap), slice(0, e)] if e else [slice(s, self.cap)]

    def slots(self, a: int, b: int) -> np.ndarray:
        """The slots of requests ``a..b-1``, as an index array."""
        return np.arange(a, max(a, b), dtype=np.int64) & self.mask

    def count_due(self, a: int, upto: float, side: str = "left") -> int:
        """How many of the loaded requests from ``a`` on are intended before ``upto`` (or at it: side="right")."""
        n = 0
        for sl in self.spans(a, self.fed):
            seg = self.sched[sl]
            k = int(np.searchsorted(seg, upto, side="right" if side == "right" else "left"))
            n += k
            if k < len(seg):
                break
        return n

    def feed(self) -> None:
        """Load the share's next chunk into free slots; the ring doubles when the live window outgrows it."""
        try:
            idx, offs = next(self.source)
        except StopIteration:
            self.exhausted = True
            return
        m = len(idx)
        self.advance_low()
        if self.fed + m - self.low > self.cap:
            self.grow(self.fed + m - self.low)
        a, b = self.fed, self.fed + m
        pos = 0
        for sl in self.spans(a, b):
            k = sl.stop - sl.start
            self.sched[sl] = offs[pos : pos + k]
            self.gidx[sl] = idx[pos : pos + k]
            pos += k
            for name, col in self.columns().items():
                col[sl] = _RING_EMPTY[name]
            self.fin[sl] = 0
            if self.stream is not None:
                for key, empty in _STREAM_EMPTY.items():
                    self.stream[key][sl] = empty
        self.fed = b
        self.last_due = float(offs[-1])

    def advance_low(self) -> None:
        """Move ``low`` past the requests whose records were handed on (sent or given up, and absorbed)."""
        # absorb still reads from ``offered`` and ``absorbed_sent`` on, so no slot past either may be reused
        hi = min(self.absorbed_sent, self.offered)
        if hi <= self.low:
            return
        fin = self.fin[self.slots(self.low, hi)]
        open_ = np.flatnonzero(fin == 0)
        self.low += int(open_[0]) if len(open_) else len(fin)

    def grow(self, need: int) -> None:
        """Double the ring until ``need`` slots fit; the live requests and every slot held elsewhere move."""
        old_mask, old_cap, lo = self.mask, self.cap, self.low
        cap = old_cap
        while cap < need:
            cap *= 2
        live_old = self.slots(lo, self.fed)
        saved = {name: col[live_old] for name, col in self.columns().items()}
        sched, gidx, fin = self.sched[live_old], self.gidx[live_old], self.fin[live_old]
        stream = {k: v[live_old] for k, v in self.stream.items()} if self.stream is not None else None
        self._alloc(cap)
        live = self.slots(lo, self.fed)
        for name, col in self.columns().items():
            col[live] = saved[name]
        self.sched[live], self.gidx[live], self.fin[live] = sched, gidx, fin
        if stream is not None and self.stream is not None:
            for k, v in stream.items():
                self.stream[k][live] = v
        base = lo & old_mask

        def moved(slot: int) -> int:
            return (lo + ((slot - base) & old_mask)) & self.mask

        for conn in self.conns:
            if conn.req >= 0:
                conn.req = moved(conn.req)
        del self.completed[: self.absorbed_completed]
        self.absorbed_completed = 0
        self.completed = [moved(x) for x in self.completed]
        log.debug("load engine %d: ring grew from %d to %d slots", self.cfg.worker, old_cap, cap)

    def clock(self) -> float:
        """Seconds since schedule offset 0."""
        return self.perf() - self.t0

    def ensure_stream_arrays(self) -> None:
        if self.stream is None:
            self.stream = stream_defaults(self.cap)

    # ---------------------------------------------------------------- hot path
    def find_target(self, data: bytes, end: int) -> int:
        """Code of the X-Target-Id value in a response's header block ``data[:end]`` (-1 if absent)."""
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

    def complete(
        self, i: int, status: int, nbytes: int, target: int, sp: _Stream | None, code: int = E_OK
    ) -> None:
        """Record a response completed outside the hot callback (close-delimited or streamed), at ``now``."""
        self.done[i] = self.now
        self.status[i] = status
        if status >= 400:
            code = E_4XX if status < 500 else E_5XX
        self.err[i] = code
        self.nbytes[i] = nbytes
        if target >= 0:
            self.target[i] = target
        if sp is not None and self.stream is not None:
            st = self.stream
            st["tok_first"][i] = sp.first
            st["tok_last"][i] = sp.last
            st["tok_events"][i] = sp.events
            st["tok_usage"][i] = sp.usage
            st["itl_max"][i] = sp.maxgap if sp.events > 1 else math.nan
        self.completed.append(i)

    def payload(self, slot: int) -> bytes:
        gi = int(self.gidx[slot])  # the request's index in the whole schedule, whichever share sends it
        if self.reqs is not None:
            return self.reqs[gi % self.nreqs]
        assert self.cfg.request_fn is not None
        return self.cfg.request_fn(gi)

    def replace_closed(self, conn: _Conn) -> _Conn:
        """A fresh connection for ``conn``, whose transport is closing: ``conn`` is retired so that its queued
        ``connection_lost`` does not release a second replacement."""
        conn.dead = True
        conn.transport = None
        self.conns.discard(conn)
        return self.conn_cls(self)

    def release(self, conn: _Conn, now: float) -> None:
        """A connection became free at ``now``: give it the next due request at once, or park it."""
        j = self.next
        slot = j & self.mask
        if j < self.fed and not self.stopping and self.sched_list[slot] <= now:
            self.next = j + 1
            if not self.idle:
                # a request that was due while every connection was busy: the fleet, not the generator, held it
                self.starved += 1
            tr = conn.transport
            fixed = self.fixed
            if tr is not None and fixed is not None:
                conn.req = slot
                self.sent[slot] = now
                tr.write(fixed)
            else:
                self.send(conn, slot, now)
        else:
            self.idle.append(conn)

    def send(self, conn: _Conn, slot: int, now: float) -> None:
        conn.req = slot
        self.sent[slot] = now
        tr = conn.transport
        if tr is not None:
            tr.write(self.payload(slot))
        else:
            self.spawn(self.connect_and_send(conn))

    def tick(self) -> None:
        """Send every request that is due and has a free connection, then sleep until the next one is due."""
        if self.stopping:
            return
        if not self.exhausted and self.fed - self.next < FEED_AHEAD:
            self.feed()  # before the arrays are bound below: feeding may grow the ring
        perf = self.perf
        t0 = self.t0
        sched = self.sched_list
        mask = self.mask
        n = self.fed
        idle = self.idle
        sent = self.sent
        fixed = self.fixed
        j = self.next
        now = perf() - t0
        while j < n and idle and sched[j & mask] <= now:
            self.next = j + 1
            slot = j & mask
            conn = idle.pop()
            tr = conn.transport
            if tr is not None and tr.is_closing():
                # closed by the server, its connection_lost still queued: writing would raise in uvloop
                conn, tr = self.replace_closed(conn), None
            if tr is not None and fixed is not None:
                conn.req = slot
                sent[slot] = now
                tr.write(fixed)
            else:
                self.send(conn, slot, now)
            j += 1
            now = perf() - t0  # each stamp is the moment its bytes go to the transport
        assert self.loop is not None
        if j >= n:
            if not self.exhausted:
                self.loop.call_soon(self.tick)  # more of the share is still to be loaded
            return
        # While all connections are busy, completions send due requests and the tick only needs to come back for
        # idle connections. uvloop timers have millisecond resolution and a shorter delay spins the loop at
        # 100 % CPU, so wake at least 1 ms later: requests due within that millisecond go out together.
        delay = sched[j & mask] - now if idle else 0.001
        self.loop.call_later(min(max(delay, 0.001), 0.05), self.tick)

    # ---------------------------------------------------------------- connections
    async def open_conn(self, conn: _Conn) -> bool:
        assert self.loop is not None
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, self.cfg.host, self.cfg.port),
                timeout=self.cfg.connect_timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("connect to %s:%s failed: %r", self.cfg.host, self.cfg.port, exc)
            return False
        return True

    async def open_and_park(self, conn: _Conn) -> None:
        """Open one of the initial connections; one that opens after the run began joins it then."""
        await self.open_conn(conn)
        if conn.dead:
            return
        if self.started:
            self.release(conn, self.clock())
        else:
            self.idle.append(conn)

    async def connect_and_send(self, conn: _Conn) -> None:
        ok = await self.open_conn(conn)
        # conn.req is read after the wait: a ring that grew meanwhile moved the request to another slot
        j = conn.req
        if j < 0:
            # timed out, stopped or otherwise accounted for while connecting: drop what just opened
            if conn.transport is not None:
                conn.dead = True
                conn.transport.abort()
            return
        if ok and conn.transport is not None:
            conn.transport.write(self.payload(j))
            return
        conn.req = -1
        self.finish(j, 0, E_CONNECT, 0, -1)
        if not ok:
            self.release(conn, self.clock())

    def spawn(self, coro: Any) -> None:
        """Run a connect as a task the end of the run can cancel (a hung connect must not outlive the run)."""
        assert self.loop is not None
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel_tasks(self) -> None:
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def in_flight(self) -> bool:
        return any(c.req >= 0 for c in self.conns)

    def sweep_timeouts(self) -> None:
        now = self.clock()
        limit = self.cfg.timeout_s
        for conn in list(self.conns):
            if conn.req >= 0 and conn.transport is not None:
                sp = conn.sp
                # a stream is timed out when it stalls (no byte for timeout_s), not when it is merely long
                since = sp.last_rx if sp is not None else self.sent[conn.req]
                if now - since > limit:
                    conn._fail(E_TIMEOUT)
        # After a Stop, what was not due by then stays unsent (not an error). After a stall of this loop, the
        # requests that came due meanwhile waited on the generator, not on a connection: each gets timeout_s of
        # running loop before it is given up as no_connection (which blames the fleet).
        if not self.stopping and now - self.resumed_at > limit:
            self.expire_waiting(now - limit, E_NO_CONN)

    def expire_waiting(self, upto: float, code: int) -> None:
        """Give up the unsent requests intended before offset ``upto``: they never got a connection in time."""
        j0 = self.next
        j1 = j0 + self.count_due(j0, upto, side="right")
        if j1 <= j0:
            return
        self.next = j1
        slots = self.slots(j0, j1)
        self.np_done[slots] = self.clock()
        self.np_err[slots] = code
        self.completed.extend(slots.tolist())

    def end_in_flight(self, code: int) -> None:
        """The run is over: requests still in flight end as ``code`` (timeout, or cancelled on Stop)."""
        for conn in list(self.conns):
            if conn.req >= 0:
                conn._fail(code)

    # ---------------------------------------------------------------- intervals
    def records(self, idx: np.ndarray) -> dict[str, Any]:
        """Per-request arrays of ``idx``; targets as codes into ``target_names`` (named by the collector)."""
        rec: dict[str, Any] = {"index": self.gidx[idx], "intended": self.sched[idx]}
        for name, col in self.columns().items():
            rec[name] = col[idx]
        rec["worker"] = np.full(len(idx), self.cfg.worker, dtype=np.int16)
        if self.stream is not None:
            for key, arr in self.stream.items():
                rec[key] = arr[idx]
        return rec

    def unsent_records(self, idx: np.ndarray, offs: np.ndarray) -> dict[str, Any]:
        """Records of requests never loaded into the ring (a Stop came before their turn)."""
        n = len(idx)
        rec: dict[str, Any] = {"index": idx, "intended": offs}
        for name, col in self.columns().items():
            rec[name] = np.full(n, _RING_EMPTY[name], col.dtype)
        rec["worker"] = np.full(n, self.cfg.worker, dtype=np.int16)
        if self.stream is not None:
            rec.update(stream_defaults(n))
        rec["target_names"] = list(self.target_names)
        return rec

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
                responded = idx[(self.np_status[idx] > 0) & LATENCY_KINDS[err]]
                done = self.np_done[responded]
                fold(cur.hists[0], done - self.sched[responded])
                fold(cur.hists[1], done - self.np_sent[responded])
                cur.responses += len(responded)
                cur.err += np.bincount(err, minlength=len(ERROR_KINDS))
                cur.chunks.append(self.records(idx))
                if self.stream is not None:
                    self.absorb_streams(idx[err == E_OK])
                self.fin[idx] = 1
        if self.gaps:
            self.absorb_gaps()
        s0 = self.absorbed_sent
        s1 = self.next
        slots = self.slots(s0, s1)
        if not final and s1 > s0:
            seg = self.np_sent[slots]
            # send stamps rise with the index, except NaN where a request expired unsent (absorbed with the rest)
            early = (seg < upto) | np.isnan(seg)
            if not early.all():
                s1 = s0 + int(np.argmin(early))
                slots = slots[: s1 - s0]
        if s1 > s0:
            self.absorbed_sent = s1
            lag = self.np_sent[slots] - self.sched[slots]
            lag = lag[~np.isnan(lag)]  # expired requests were never sent
            fold(cur.hists[2], lag)
            cur.sent += len(lag)
            self.total_sent += len(lag)
        due = self.count_due(self.offered, upto)
        self.offered += due
        cur.offered += due
        cur.starved += self.starved - self.absorbed_starved
        self.absorbed_starved = self.starved
        if self.absorbed_completed > 65536:
            # the absorbed prefix is never read again: drop it (an int object and a slot per request otherwise)
            del comp[: self.absorbed_completed]
            self.absorbed_completed = 0

    def stream_hists(self) -> tuple[Any, Any, Any, Any]:
        cur = self.cur
        if cur.shists is None:
            cur.shists = (new_histogram(), new_histogram(), new_histogram(), new_histogram())
        return cur.shists

    def absorb_streams(self, idx: np.ndarray) -> None:
        assert self.stream is not None
        st = self.stream
        first = st["tok_first"][idx]
        has = ~np.isnan(first)
        if not has.any():
            return
        idx, first = idx[has], first[has]
        h = self.stream_hists()
        fold(h[0], first - self.sched[idx])
        fold(h[1], first - self.np_sent[idx])
        usage = st["tok_usage"][idx]
        tokens = np.where(usage >= 0, usage, st["tok_events"][idx]).astype(np.int64)
        self.cur.tokens += int(tokens.sum())
        many = tokens > 1
        if many.any():
            fold(h[3], (self.np_done[idx[many]] - first[many]) / (tokens[many] - 1))

    def absorb_gaps(self) -> None:
        gaps = np.asarray(self.gaps, dtype=np.float64)
        self.gaps = []
        fold(self.stream_hists()[2], gaps)

    def emit_interval(self, upto: float) -> None:
        """Send interval ``self.k`` (everything absorbed so far, ending at offset ``upto``) to the sink."""
        cur = self.cur
        counts = {
            "offered": cur.offered,
            "sent": cur.sent,
            "responses": cur.responses,
            "ok": int(cur.err[E_OK]),
            "err": cur.err.tolist(),
            "starved": cur.starved,
            "tokens": cur.tokens,
            "stalls": cur.stalls[:256],  # a pathological machine must not flood the collector
        }
        hists: tuple[Any, ...] = cur.hists + (cur.shists or (None, None, None, None))
        if self.cfg.encode_hists:
            hists = tuple(h.encode() if h is not None else None for h in hists)
        rec: dict[str, Any] = (
            dict(concat_records(cur.chunks)) if cur.chunks else self.records(np.zeros(0, np.int64))
        )
        rec["target_names"] = list(self.target_names)
        self.sink(Interval(self.cfg.worker, self.k, counts, hists, rec))
        self.k += 1
        self.cur = _Interval()

    # ---------------------------------------------------------------- main
    async def prepare(self) -> None:
        self.loop = asyncio.get_running_loop()
        conns = [self.conn_cls(self) for _ in range(self.cfg.connections)]
        # Connect up front so the first requests do not pay the handshake as schedule lag, but wait at most
        # connect_timeout_s: a listener that never accepts must not hold the run back (it shows as errors).
        for c in conns:
            self.spawn(self.open_and_park(c))
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.cfg.connect_timeout_s + 0.05)

    async def run(self, t0: float) -> None:
        """Send the schedule starting at perf_counter time ``t0``; return after the drain.

        A natural end comes at the last intended send time plus ``timeout_s`` at the latest, whatever the server
        does: waiting requests expire as ``no_connection`` and what is still in flight then ends as ``timeout``.
        A Stop waits up to ``min(timeout_s, 1 s)`` for answers, then ends the rest as ``cancelled``.
        """
        loop = self.loop
        assert loop is not None
        self.t0 = t0
        interval = self.cfg.interval_s
        delay = t0 - self.perf()
        if delay > 0:
            await asyncio.sleep(delay)
        self.started = True
        self.tick()
        drain_deadline = float("inf")
        sweep_every = min(0.05, self.cfg.timeout_s / 4)
        next_sweep = sweep_every
        end_code = E_TIMEOUT
        while True:
            now = self.clock()
            boundary = (self.k + 1) * interval
            if now >= boundary:
                self.absorb(boundary)
                self.emit_interval(boundary)
                continue
            self.absorb(now)
            if not self.exhausted and self.fed - self.next < FEED_AHEAD and not self.stopping:
                self.feed()
            # the last request's time is known once the share is loaded whole
            hard_end = self.last_due + self.cfg.timeout_s + 0.01 if self.exhausted else math.inf
            if now >= next_sweep:
                self.sweep_timeouts()
                next_sweep = now + sweep_every
            if not self.stopping and self.stop_flag.is_set():
                self.stopping = True
                # requests due but still waiting for a connection when the Stop came
                self.expire_waiting(now, E_CANCELLED)
            sending_over = self.stopping or (self.exhausted and self.next >= self.fed)
            if sending_over:
                if self.send_end != self.send_end:  # NaN: first time here
                    self.send_end = now
                    self.sink(SendEnd(self.cfg.worker, now))
                if drain_deadline == float("inf"):
                    if self.stopping:
                        drain_deadline = now + min(self.cfg.timeout_s, 1.0)
                        end_code = E_CANCELLED
                    else:
                        drain_deadline = hard_end
                if not self.in_flight():
                    break
                if now >= drain_deadline:
                    self.end_in_flight(end_code)
                    break
            elif now >= hard_end:
                self.expire_waiting(now, E_NO_CONN)
                continue
            # Wake often: each wake folds a small slice of records (see absorb).
            pause = min(max(min(boundary, next_sweep) - now, 0.0), 0.01)
            await asyncio.sleep(pause)
            stall = self.clock() - (now + pause)
            if stall > STALL_RECORD_S:
                self.cur.stalls.append((now + pause, stall))
                self.resumed_at = self.clock()
                # The loop did not run (this process was descheduled or stopped): answers that arrived meanwhile
                # wait in the socket buffers. Let the loop read them before the next timeout sweep judges the
                # requests in flight, or answered requests would be recorded as timeouts (issue 25).
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        end = self.clock()
        self.stopping = True  # connections replaced from here on must not take requests
        self.absorb(end, final=True)
        self.emit_interval(end)
        live = self.slots(self.low, self.fed)
        unfinished = live[np.isnan(self.np_done[live])]  # every ending stamps done
        await self.cancel_tasks()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.dead = True
                conn.transport.abort()
        for tr in list(self.transports):
            if not tr.is_closing():
                tr.abort()
        scheduled = self.fed
        for idx, offs in self.source:  # never loaded (a Stop came first): their records say unsent
            scheduled += len(idx)
            self.sink(Records(self.cfg.worker, self.unsent_records(idx, offs)))
        info = {
            "sent": int(self.total_sent),
            "scheduled": int(scheduled),
            "send_end": float(self.send_end if self.send_end == self.send_end else end),
            "end": float(end),
            "stopped": bool(self.stop_flag.is_set()),
            "last_k": self.k - 1,
            "starved": int(self.starved),
        }
        rec = self.records(unfinished)
        rec["target_names"] = list(self.target_names)
        self.sink(Done(self.cfg.worker, rec, info))


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
    sink: Callable[[Message], None],
    stop: Any,
    start_at: Callable[[], float],
) -> None:
    """Run one engine on a new event loop in the current thread.

    ``start_at()`` is called after the connections are open (and :class:`Ready` was sent); it returns the
    wall-clock time (``time.time()``) at which offset 0 of the schedule falls.
    """
    loop = new_loop()
    try:
        eng = _Engine(cfg, sink, stop)
        loop.run_until_complete(eng.prepare())
        sink(Ready(cfg.worker))
        wall0 = start_at()
        t0 = time.perf_counter() + (wall0 - time.time())
        loop.run_until_complete(eng.run(t0))
    except BaseException:
        sink(Failed(cfg.worker, traceback.format_exc()))
        raise
    finally:
        loop.run_until_complete(asyncio.sleep(0.005))  # let aborted transports finish closing
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
        with contextlib.suppress(BaseException):  # already reported as a Failed message
            run_engine(cfg, queue.put, stop, start_at)
    finally:
        queue.close()
        queue.join_thread()
