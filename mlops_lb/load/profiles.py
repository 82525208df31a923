"""Load profiles (shapes): when each request should be sent, fixed before the run starts.

A profile is a frozen, validated dataclass. ``iter_schedule()`` yields sorted numpy arrays of *intended* send
offsets in seconds from the start of the run, chunk by chunk (a 50-million-request profile never sits in memory
whole); ``schedule()`` is all of it in one array. The engine never adapts it to the server (open loop), so a slow
server shows up as latency instead of as fewer requests.

**Shapes register themselves.** A subclass names its kind in the class statement and is then known to
:func:`make_profile` and :func:`profile_from_dict` (no list to edit)::

    @dataclass(frozen=True)
    class Sawtooth(RateProfile, kind="sawtooth"):
        low: float = 10.0
        high: float = 50.0
        period_s: float = 5.0
        periods: int = 4

        def segments(self):                      # (duration_s, rate at start, rate at end), linear in between
            return [(self.period_s, self.low, self.high)] * self.periods

    run_load(url, make_profile("sawtooth", high=80))

A :class:`RateProfile` is a list of segments with a linearly changing rate. With ``arrival="uniform"`` request
*k* is sent when the cumulative offered load Λ(t) reaches *k*; with ``arrival="poisson"`` the targets are the
partial sums of unit exponentials (time rescaling of a non-homogeneous Poisson process), seeded for repeatability.
A :class:`TraceProfile` replays recorded times (and, for LLM traces, each request's sizes).

**A shape may end a run early.** ``stop_rule(step_summary)`` is asked after each of the shape's ``steps()``
(its segments, when it defines a rule) with that step's ``rate``, ``p99_s``, ``error_rate``, ``ok`` and
``errors``; a true value (or a reason string) stops the run. The runner never names a shape, the way locust's
runner only calls a shape's ``tick()``. :class:`SweepProfile` is built that way.

Example::

    from mlops_lb import load
    p = load.ramp(start_rps=10, end_rps=300, duration_s=60)
    p.schedule()[:3]            # array([0.   , 0.0995..., 0.198...])
    p.describe()                # 'ramp 10 → 300 rps over 60 s (uniform arrivals)'
    load.make_profile("step", rps=200, start_rps=50, duration_s=60)   # what the CLI and the widget build
"""

from __future__ import annotations

from ._profile_base import (
    _REGISTRY,  # noqa: F401 - the registry stays reachable where it always was
    ARRIVALS,
    CHUNK,
    MAX_DURATION_S,
    MAX_REQUESTS,
    MAX_RPS,
    LoadProfile,
    RateProfile,
    make_profile,
    profile_from_dict,
    profile_kinds,
    rate_kinds,
)
from .shapes import (
    ConstantProfile,
    PiecewiseProfile,
    RampProfile,
    SpikeProfile,
    StepProfile,
    SweepProfile,
    constant,
    piecewise,
    ramp,
    spike,
    step,
    sweep,
)
from .sharding import ScheduleShare, due_before, shard_indices
from .trace import TraceProfile, trace

__all__ = [
    "ARRIVALS",
    "CHUNK",
    "MAX_DURATION_S",
    "MAX_REQUESTS",
    "MAX_RPS",
    "ConstantProfile",
    "LoadProfile",
    "PiecewiseProfile",
    "RampProfile",
    "RateProfile",
    "ScheduleShare",
    "SpikeProfile",
    "StepProfile",
    "SweepProfile",
    "TraceProfile",
    "constant",
    "due_before",
    "make_profile",
    "piecewise",
    "profile_from_dict",
    "profile_kinds",
    "ramp",
    "rate_kinds",
    "shard_indices",
    "spike",
    "step",
    "sweep",
    "trace",
]
