"""The messages an engine sends to the collector, as named types (picklable: they cross process pipes and Ray).

One engine runs one share of the schedule and reports through a *sink* (a queue's ``put``); the collector
(:class:`mlops_lb.load.collector.Collector`) is their only reader. In the order an engine sends them:

* :class:`Ready` after its connections are open;
* :class:`Interval` once per interval ``k`` (requests that *completed* in ``[kI, (k+1)I)``): the counts, the
  interval's histograms and the per-request records (``records["target"]`` holds codes into
  ``records["target_names"]``, -1 for no X-Target-Id);
* :class:`SendEnd` once, when its sending is over (the schedule is exhausted or a Stop came): the run's
  "draining" phase starts when every engine has sent it, not at a time guessed from the wall clock;
* :class:`Records` after a Stop, a chunk at a time, for requests never loaded (unsent);
* :class:`Done` once, with the requests never finished and the engine's totals (``info``);
* :class:`Failed` instead, if the engine itself failed (its traceback).

``Interval.counts`` keys: ``offered``, ``sent``, ``responses``, ``ok``, ``err`` (a count per error code),
``starved`` (sends that found no idle connection), ``tokens``, ``stalls`` (``(offset, seconds)`` of the
engine's loop stalls that ended in the interval). ``Done.info`` keys: ``sent``, ``scheduled``, ``send_end``,
``end``, ``stopped``, ``last_k``, ``starved``.

Example::

    msg = Interval(worker=0, k=3, counts={...}, hists=(...), records={...})
    if isinstance(msg, Interval):
        msg.counts["sent"]
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Done", "Failed", "Interval", "Message", "Ready", "Records", "SendEnd"]


class Ready(NamedTuple):
    """The engine's connections are open; it waits for the start time."""

    worker: int


class Interval(NamedTuple):
    """Interval ``k`` of one engine: counts, histograms (µs; encoded across processes), per-request records."""

    worker: int
    k: int
    counts: dict[str, Any]
    hists: tuple[Any, ...]
    records: dict[str, Any]


class SendEnd(NamedTuple):
    """The engine sent its last request (or stopped sending) at ``offset`` seconds into the run."""

    worker: int
    offset: float


class Records(NamedTuple):
    """Records of requests never loaded (a Stop came first): unsent, for the record store."""

    worker: int
    records: dict[str, Any]


class Done(NamedTuple):
    """The engine's last message: the requests it never finished and its totals."""

    worker: int
    records: dict[str, Any]
    info: dict[str, Any]


class Failed(NamedTuple):
    """The engine itself failed; ``text`` is its traceback."""

    worker: int
    text: str


Message = Ready | Interval | SendEnd | Records | Done | Failed
