"""Is a run valid? The rule, and the per-interval facts it is judged on.

**What VALID means.** A load run is a measurement of the fleet *under the offered load*: the latencies and
rates it reports describe what the fleet did when the profile's arrival process was applied to it. A run is
VALID when both halves of that sentence hold, and INVALID, with the cause and its fix, when either does not:

(a) **The arrival process was delivered.** A request is *late* when it was sent more than ``late_after_s``
    after its intended time. The default bound is ``max(5 ms, 10 % of the run's service-time p50)``: lateness
    matters only against the latencies being measured — 5 ms of lag distorts a 3 ms service time and is noise
    beside a 2 s LLM answer — and 5 ms is well above what a busy laptop's scheduler adds to a send. A request
    given up for want of a connection (``no_connection``) is late too. Lateness alone is not enough: a single
    90 ms stall makes three requests late and changes nothing the run reports. So the check is per interval
    (by intended time), and an interval is **held back** only when *both* hold:

    * its late share passes ``max_late_share`` (1 %), and
    * the rate actually suffered: more than 5 % of its requests *slipped*, i.e. went out more than
      ``max(late_after_s, interval_s / 4)`` late (so under 95 % of the offered rate went out near its time; a
      stall shorter than a quarter interval can never fail a run on its own).

    Late sends in intervals that are not held back are a *note* in the summary, not a verdict.

(b) **The fleet answered.** Every failed request counts — timeouts, refused connections, resets, 5xx, and
    4xx too (a 404 is the fleet refusing the request: the path or payload is wrong, so nothing was measured;
    a 429 is the fleet shedding load). When failures pass ``max_error_share`` (1 %) of the requests sent, the
    run is INVALID naming the status, the request path and the share. 4xx latencies are kept out of the
    percentiles (they are not the model's work); requests cancelled by a Stop are not failures.

(c) **Which side held the schedule back**, decided for each window of consecutive held-back intervals:

    * the engine's loop **stalled** (it woke later than planned by at least the slip bound, in or just before
      the window: this machine was descheduled, stopped or swapping) → *generator lag*;
    * else, sends **waited for a connection** (at least 10 % of the window's sends found every connection
      busy, or requests were given up for want of one) **and the fleet's own latency explains it** (Little's
      law: the requests the fleet held at once, sum of service times over the window's length, reached 80 % of
      ``connections``) → *fleet saturated* in that window;
    * else (connections were free, or busy without the fleet being slow) → *generator lag*.

    A dead worker process or Ray shard is named once (``generator_lost``), and its missing share is not
    counted again as lateness or under-sending.

Goodput counts only requests that were sent, answered successfully and met the SLO, over the same span as the
achieved rate, so it never exceeds it; a stopped run counts only what it sent.

The engine records what the rule needs as it goes (per interval: sends that found no idle connection, and the
stalls of its loop); the collector adds the records' lateness by intended interval and the fleet's service
time by completion interval into a :class:`DeliveryLog`; :func:`judge` applies the rule. Lateness is kept as
counts on a fixed log grid of lag values (40 steps per decade), so memory does not grow with the rate and the
bound is applied after the run (the default needs the run's p50); the bound is rounded up to the next grid step
(at most 6 %).

Example::

    log = DeliveryLog(interval_s=1.0)
    log.add_records(intended, sent, done, err)              # each chunk of records as it arrives
    log.add_interval(k, sent=100, starved=0, stalls=[])      # each merged interval of the engines
    delivery = judge(log, late_after_s=0.005, max_late_share=0.01, connections=32)
    delivery.windows                                         # held-back windows and their cause
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._codes import ERROR_KINDS

__all__ = [
    "MIN_LATE_AFTER_S",
    "RATE_KEPT_SHARE",
    "Delivery",
    "DeliveryLog",
    "Window",
    "auto_late_after_s",
    "judge",
]

# The smallest late bound: above what a busy two-core laptop's scheduler adds to a send (a few ms).
MIN_LATE_AFTER_S = 0.005
# Share of the service-time p50 a send may be late by before it distorts what is measured.
LATE_SHARE_OF_P50 = 0.10
# An interval kept its rate when at least this share of its requests went out within the slip bound.
RATE_KEPT_SHARE = 0.95
# Starved sends (no idle connection) at or above this share of a window's sends: connections were all busy.
STARVED_SHARE = 0.10
# The fleet explains busy connections when it held at least this share of them on average (Little's law).
BUSY_SHARE = 0.80

# Lag grid: bucket i holds lags in (EDGES[i-1], EDGES[i]]; the last bucket is beyond 1000 s or never sent.
LAG_EDGES = 10.0 ** np.arange(-4.0, 3.0 + 1e-9, 1.0 / 40.0)
_NB = len(LAG_EDGES) + 1
_E_NO_CONN = ERROR_KINDS.index("no_connection")


def auto_late_after_s(service_p50_s: float) -> float:
    """The default late bound: ``max(5 ms, 10 % of the service-time p50)`` (5 ms when nothing was answered)."""
    if service_p50_s != service_p50_s:  # NaN: no answer to judge against
        return MIN_LATE_AFTER_S
    return max(MIN_LATE_AFTER_S, LATE_SHARE_OF_P50 * service_p50_s)


def _grow(a: np.ndarray, n: int, width: int | None = None) -> np.ndarray:
    if len(a) >= n:
        return a
    shape = (max(n, 2 * len(a)),) if width is None else (max(n, 2 * len(a)), width)
    out = np.zeros(shape, a.dtype)
    out[: len(a)] = a
    return out


class DeliveryLog:
    """What the validity rule is judged on, gathered while the run goes (bounded by the number of intervals).

    By intended interval: the requests offered and their send lag on the :data:`LAG_EDGES` grid. By completion
    interval: the sum of service times (the fleet's concurrency). By send interval (the engines' interval
    messages): sends, sends that found no idle connection. And the loop stalls, as (offset, seconds).
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = float(interval_s)
        self.lag = np.zeros((8, _NB), np.int64)
        self.busy_s = np.zeros(8)
        self.sent = np.zeros(8, np.int64)
        self.starved = np.zeros(8, np.int64)
        self.no_conn = np.zeros(8, np.int64)
        self.stalls: list[tuple[float, float]] = []
        self.horizon = math.inf  # requests intended at or after it were never due (a Stop)

    def add_records(self, intended: np.ndarray, sent: np.ndarray, done: np.ndarray, err: np.ndarray) -> None:
        """Fold one chunk of per-request records (offsets in seconds from the run's start)."""
        if not len(intended):
            return
        I = self.interval_s  # noqa: E741 - the interval length, as in the docs
        err = err.astype(np.int64)
        was_sent = ~np.isnan(sent)
        no_conn = (~was_sent) & (err == _E_NO_CONN)
        # never sent for another reason: after a Stop, or cancelled while waiting: not part of what was offered
        keep = was_sent | no_conn
        if keep.any():
            k = np.maximum((intended[keep] // I).astype(np.int64), 0)
            lag = sent[keep] - intended[keep]
            b = np.where(np.isnan(lag), _NB - 1, np.searchsorted(LAG_EDGES, lag, side="left"))
            self.lag = _grow(self.lag, int(k.max()) + 1, _NB)
            np.add.at(self.lag, (k, b), 1)
            if no_conn.any():
                kn = np.maximum((intended[no_conn] // I).astype(np.int64), 0)
                self.no_conn = _grow(self.no_conn, int(kn.max()) + 1)
                np.add.at(self.no_conn, kn, 1)
        answered = was_sent & ~np.isnan(done)
        if answered.any():
            kd = np.maximum((done[answered] // I).astype(np.int64), 0)
            self.busy_s = _grow(self.busy_s, int(kd.max()) + 1)
            np.add.at(self.busy_s, kd, np.maximum(done[answered] - sent[answered], 0.0))

    def add_interval(self, k: int, *, sent: int, starved: int, stalls: Iterable[Sequence[float]]) -> None:
        """Fold the engines' merged counts of send interval ``k`` and the loop stalls they saw."""
        self.sent = _grow(self.sent, k + 1)
        self.starved = _grow(self.starved, k + 1)
        self.sent[k] += sent
        self.starved[k] += starved
        self.stalls.extend((float(a), float(d)) for a, d in stalls)


@dataclass(frozen=True)
class Window:
    """Consecutive held-back intervals ``[start_s, end_s)`` (offsets from the run's start) and their cause.

    ``cause``: ``generator_lag`` or ``connections_exhausted`` (fleet saturated); ``why`` says what decided it.
    """

    start_s: float
    end_s: float
    cause: str
    offered: int
    late: int
    slipped: int
    why: str

    @property
    def late_share(self) -> float:
        """Share of the window's requests sent later than the late bound (or never, for want of a connection)."""
        return self.late / self.offered if self.offered else 0.0


@dataclass(frozen=True)
class Delivery:
    """The verdict's view of the arrival process: bound used, totals, held-back windows and notes."""

    late_after_s: float
    slip_after_s: float
    offered: int
    late: int
    windows: tuple[Window, ...] = ()
    notes: tuple[str, ...] = ()
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def late_share(self) -> float:
        """Share of the whole run's requests sent late (or never, for want of a connection)."""
        return self.late / self.offered if self.offered else 0.0


def _above(lag_row: np.ndarray, bound: float) -> np.ndarray:
    """Counts of lags above ``bound`` (rounded up to the grid) per row."""
    i = int(np.searchsorted(LAG_EDGES, bound, side="left"))  # buckets > i hold lags above EDGES[i] >= bound
    return lag_row[..., i + 1 :].sum(axis=-1)


def judge(
    log: DeliveryLog,
    *,
    late_after_s: float,
    max_late_share: float,
    connections: int,
) -> Delivery:
    """Apply the validity rule's parts (a) and (c) to a run's :class:`DeliveryLog` (see the module docstring)."""
    I = log.interval_s  # noqa: E741
    slip = max(late_after_s, I / 4)
    nk = len(log.lag)
    if math.isfinite(log.horizon):
        nk = min(nk, math.ceil(log.horizon / I))
    lag = log.lag[:nk]
    offered = lag.sum(axis=1)
    late = _above(lag, late_after_s)
    slipped = _above(lag, slip)
    held = (offered > 0) & (late > max_late_share * offered) & (slipped > (1 - RATE_KEPT_SHARE) * offered)
    rows = [
        {
            "interval": k,
            "offered": int(offered[k]),
            "late": int(late[k]),
            "slipped": int(slipped[k]),
            "held_back": bool(held[k]),
        }
        for k in range(nk)
        if offered[k]
    ]
    windows: list[Window] = []
    k = 0
    while k < nk:
        if not held[k]:
            k += 1
            continue
        a = k
        while k < nk and held[k]:
            k += 1
        windows.append(_classify(log, a, k, offered, late, slipped, slip, connections))
    notes: list[str] = []
    loose = (offered > 0) & (late > max_late_share * offered) & ~held
    if loose.any():
        n = int(late[loose].sum())
        notes.append(
            f"{n:,} sends were more than {late_after_s * 1e3:.1f} ms late in {int(loose.sum())} interval(s) "
            f"where the rate was still kept (at least {RATE_KEPT_SHARE:.0%} sent within {slip * 1e3:.0f} ms): "
            "a note, not a verdict"
        )
    in_windows = [(w.start_s - slip, w.end_s) for w in windows]
    for at, d in log.stalls:
        if d >= max(late_after_s, 0.05) and not any(a <= at + d and at <= b for a, b in in_windows):
            notes.append(
                f"the load loop stalled {d * 1e3:.0f} ms at {at:.1f} s without holding the rate back"
            )
            if len(notes) >= 6:
                break
    return Delivery(
        late_after_s=late_after_s,
        slip_after_s=slip,
        offered=int(offered.sum()),
        late=int(late.sum()),
        windows=tuple(windows),
        notes=tuple(notes),
        rows=rows,
    )


def _classify(
    log: DeliveryLog,
    a: int,
    b: int,
    offered: np.ndarray,
    late: np.ndarray,
    slipped: np.ndarray,
    slip: float,
    connections: int,
) -> Window:
    """The cause of held-back intervals ``a..b-1`` (rule part (c))."""
    I = log.interval_s  # noqa: E741
    start, end = a * I, b * I
    # the window's requests may go out up to the slip bound after it: look that far for sends and stalls
    reach = end + slip
    stalls = [(at, d) for at, d in log.stalls if d >= slip and at <= reach and at + d >= start - slip]
    off, lt, sl = int(offered[a:b].sum()), int(late[a:b].sum()), int(slipped[a:b].sum())
    if stalls:
        at, d = max(stalls, key=lambda s: s[1])
        why = f"the load loop stalled {d:.2f} s at {at:.1f} s (this machine did not run the generator)"
        return Window(start, end, "generator_lag", off, lt, sl, why)
    kb = min(math.ceil(reach / I), len(log.sent))
    sends = int(log.sent[a:kb].sum())
    # a send is counted in the interval it was absorbed in, a starved one when its connection freed: at the
    # window's edge the two can fall in neighbouring intervals
    starved = min(int(log.starved[a:kb].sum()), sends)
    no_conn = int(log.no_conn[a:b].sum()) if len(log.no_conn) > a else 0
    kd = min(kb + 1, len(log.busy_s))
    held_at_once = float(log.busy_s[a:kd].max()) / I if kd > a else 0.0
    waited = (sends and starved >= STARVED_SHARE * sends) or no_conn > 0
    if waited and held_at_once >= BUSY_SHARE * connections:
        why = (
            f"{starved:,} of {sends:,} sends found every connection busy"
            + (f" and {no_conn:,} requests never got one" if no_conn else "")
            + f", and the fleet held {held_at_once:.0f} requests at once (connections={connections})"
        )
        return Window(start, end, "connections_exhausted", off, lt, sl, why)
    if waited:
        why = (
            f"sends waited for connections but the fleet held only {held_at_once:.1f} requests at once "
            f"(connections={connections}): the generator fell behind and then burst"
        )
    else:
        why = f"connections were free ({starved:,} of {sends:,} sends found none idle)"
    return Window(start, end, "generator_lag", off, lt, sl, why)
