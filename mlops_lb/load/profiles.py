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

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .._validate import check_choice, check_int, check_num, fail, show
from ..errors import SpecError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ARRIVALS",
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

log = logging.getLogger(__name__)

ARRIVALS = ("uniform", "poisson")
MAX_RPS = 1_000_000.0
MAX_DURATION_S = 7 * 24 * 3600.0
# The engine keeps only a window of requests in memory, so this bounds the run's disk use (records stream to
# parquet at about 30 bytes a request) and the time to count the schedule before the start, not its RAM.
MAX_REQUESTS = 500_000_000
CHUNK = 65536
# The vocabulary of the CLI (--rps, --start-rps, --duration-s) and the load widget: see make_profile.
_RATE_WORDS = frozenset({"rps", "start_rps", "duration_s"})
_REGISTRY: dict[str, type[LoadProfile]] = {}


def _fail(field_name: str, msg: str) -> Any:
    fail(field_name, msg)


def _num(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    return check_num(name, value, lo, hi, lo_open=lo_open)


@dataclass(frozen=True)
class LoadProfile:
    """Base of every shape: a frozen description of when requests are sent.

    Build profiles with :func:`constant`, :func:`step`, :func:`ramp`, :func:`spike`, :func:`sweep`, :func:`trace`
    or :func:`make_profile`. A new shape subclasses :class:`RateProfile` (rate segments) or this class (then it
    provides ``iter_schedule``, ``duration_s``, ``expected_requests`` and ``rate_at``) and names its ``kind``.

    Example::

        p = constant(100, 30)
        len(p.schedule()), p.duration_s       # (3000, 30.0)
    """

    kind: ClassVar[str] = "profile"
    arrival: str = field(default="uniform", kw_only=True)
    seed: int = field(default=0, kw_only=True)

    def __init_subclass__(cls, *, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        if not isinstance(kind, str) or not kind.isidentifier():
            raise SpecError("kind", f"must be a name such as 'sawtooth' (got {show(kind)})")
        old = _REGISTRY.get(kind)
        if old is not None and old.__qualname__ != cls.__qualname__:
            log.warning(
                "load profile kind %r now means %s (was %s)", kind, cls.__qualname__, old.__qualname__
            )
        cls.kind = kind
        _REGISTRY[kind] = cls  # a notebook cell run twice redefines its shape: the last definition wins

    def __post_init__(self) -> None:
        check_choice("arrival", self.arrival, ARRIVALS)
        check_int("seed", self.seed, 0)
        self._validate()
        total = self.expected_requests()
        if total > MAX_REQUESTS:
            _fail(
                "rps", f"times duration_s must schedule at most {MAX_REQUESTS:,} requests (got {total:,.0f})"
            )

    def _validate(self) -> None:
        """Check the shape's own fields (raise with :mod:`mlops_lb._validate`); called on construction."""

    # ---------------------------------------------------------------- what a shape provides
    @property
    def duration_s(self) -> float:
        """Length of the schedule in seconds."""
        raise NotImplementedError

    def expected_requests(self) -> float:
        """How many requests the schedule holds (expected value for Poisson arrivals)."""
        raise NotImplementedError

    def iter_schedule(self, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        """Sorted intended send offsets (seconds from the start), at most ``chunk`` at a time, produced lazily."""
        raise NotImplementedError

    def rate_at(self, t: float) -> float:
        """The offered rate (requests per second) at offset ``t``."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for humans."""
        return self.kind

    # ---------------------------------------------------------------- the runner's seam
    def steps(self) -> list[tuple[float, float]] | None:
        """``[(duration_s, rate), …]``: the steps the runner summarises for :meth:`stop_rule`; None: no steps."""
        return None

    def stop_rule(self, step_summary: Mapping[str, Any]) -> bool | str:
        """Asked after each step with its ``step``, ``rate``, ``p99_s``, ``error_rate``, ``ok``, ``errors``:
        true (or a reason) ends the run. The default never stops."""
        return False

    def done_reason(self, steps: Sequence[Mapping[str, Any]]) -> str:
        """The stop reason of a run that went to the end (``""``: nothing to say)."""
        return ""

    # ---------------------------------------------------------------- derived
    def schedule(self) -> np.ndarray:
        """Sorted numpy array of intended send offsets in seconds from the start of the run."""
        import numpy as np

        parts = list(self.iter_schedule())
        return np.concatenate(parts) if parts else np.zeros(0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) with a ``kind`` key; :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadProfile:
        """Rebuild a profile of any registered kind from :meth:`to_dict` output.

        Example::

            LoadProfile.from_dict(ramp(1, 10, 5).to_dict()) == ramp(1, 10, 5)     # True
        """
        data = dict(data)
        shape = _shape(data.pop("kind", None))
        names = {f.name for f in fields(shape)}
        for key in data:
            if key not in names:
                from .._validate import unknown_field

                unknown_field("", key, names)
        return cast(Any, shape)(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # type: ignore[no-any-return]

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        """This shape in the CLI's and the widget's words: a headline rate ``rps`` (the constant rate, a ramp's or
        a step's end, a spike's burst), a ``start_rps`` (where a ramp or steps start, a spike's base) and a
        duration. Shapes that cannot be said that way raise."""
        names = ", ".join(f.name for f in fields(cls) if f.name not in ("arrival", "seed"))
        fail(
            "profile",
            f"{cls.kind!r} cannot be built from rps/start_rps/duration_s; give its fields ({names})",
        )


def _shape(kind: Any) -> type[LoadProfile]:
    check_choice("kind", kind, sorted(_REGISTRY))
    return _REGISTRY[kind]


def profile_kinds() -> tuple[str, ...]:
    """The registered shape kinds, sorted (the built-in ones and any a user defined)."""
    return tuple(sorted(_REGISTRY))


def rate_kinds() -> tuple[str, ...]:
    """The kinds :func:`make_profile` can build from ``rps``/``start_rps``/``duration_s`` (the CLI's and the load
    widget's inputs), in registration order: the built-in ones and any a user defined with a ``from_rates``.

    Example::

        rate_kinds()      # ('constant', 'step', 'ramp', 'spike', 'sine')
    """
    base = LoadProfile.__dict__["from_rates"].__func__
    return tuple(k for k, cls in _REGISTRY.items() if getattr(cls.from_rates, "__func__", None) is not base)


def profile_from_dict(data: Mapping[str, Any]) -> LoadProfile:
    """Rebuild a profile from :meth:`LoadProfile.to_dict` output (same as :meth:`LoadProfile.from_dict`).

    Example::

        profile_from_dict(ramp(1, 10, 5).to_dict()) == ramp(1, 10, 5)     # True
    """
    return LoadProfile.from_dict(data)


def make_profile(kind: str, **params: Any) -> LoadProfile:
    """Build a shape by name: the one function behind ``mlops-lb load --profile`` and the load widget.

    With only ``rps``, ``start_rps`` and ``duration_s`` (the CLI's and the widget's inputs) it is the shape's
    :meth:`~LoadProfile.from_rates`; ``step`` then climbs from ``start_rps`` to ``rps`` in 4 equal steps and
    ``spike`` bursts to ``rps`` from a third of the run for a sixth of it. Otherwise ``params`` are the shape's
    own fields.

    Example::

        make_profile("ramp", rps=100, start_rps=10, duration_s=30)    # ramp(10, 100, 30)
        make_profile("spike", base_rps=5, spike_rps=50, duration_s=30, spike_at_s=10, spike_s=5)
    """
    shape = _shape(kind)
    if params and set(params) <= _RATE_WORDS and "rps" in params and "duration_s" in params:
        return shape.from_rates(**params)
    for key in params:
        names = {f.name for f in fields(shape)}
        if key not in names:
            from .._validate import unknown_field

            unknown_field("", key, names)
    return cast(Any, shape)(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- shapes made of rate segments
def _invert(segments: Sequence[tuple[float, float, float]], x: np.ndarray) -> np.ndarray:
    """The times at which the cumulative offered load Λ(t) of linear-rate ``segments`` reaches each target ``x``."""
    import numpy as np

    d = np.array([s[0] for s in segments], dtype=float)
    r0 = np.array([s[1] for s in segments], dtype=float)
    r1 = np.array([s[2] for s in segments], dtype=float)
    areas = d * (r0 + r1) / 2
    bounds = np.cumsum(areas)
    start_area = bounds - areas
    start_t = np.zeros(len(d))
    acc = 0.0
    for i, di in enumerate(d):  # summed as before, so schedules stay bit-identical
        start_t[i] = acc
        acc += float(di)
    end_t = acc
    seg = np.searchsorted(bounds, x, side="right")
    inside = seg < len(segments)
    s = np.minimum(seg, len(segments) - 1)
    u = x - start_area[s]
    a = (r1[s] - r0[s]) / (2 * d[s])
    # Stable root of a*t^2 + r0*t - u = 0 (valid for a == 0, r0 == 0, and falling ramps).
    den = r0[s] + np.sqrt(np.maximum(r0[s] * r0[s] + 4 * a * u, 0.0))
    # den is 0 only for u == 0 on a ramp from 0 rps: that arrival is at the segment start.
    out = start_t[s] + np.divide(2 * u, den, out=np.zeros_like(u), where=den > 0)
    out[~inside] = end_t  # arrivals past the last segment (float slack) are clamped into it
    return np.minimum(out, end_t)


@dataclass(frozen=True)
class RateProfile(LoadProfile):
    """A shape made of segments with a linearly changing rate: subclasses provide :meth:`segments`.

    Example::

        @dataclass(frozen=True)
        class Twice(RateProfile, kind="twice"):
            rps: float = 10.0
            def segments(self):
                return [(5.0, self.rps, self.rps), (5.0, 0.0, 0.0), (5.0, self.rps, self.rps)]
    """

    def segments(self) -> list[tuple[float, float, float]]:
        """``[(duration_s, rate at start, rate at end), …]``; the rate is linear inside a segment."""
        raise NotImplementedError

    @property
    def duration_s(self) -> float:
        return float(sum(d for d, _, _ in self.segments()))

    def expected_requests(self) -> float:
        return float(sum(d * (r0 + r1) / 2 for d, r0, r1 in self.segments()))

    def iter_schedule(self, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        import numpy as np

        check_int("chunk", chunk, 1)
        segments = self.segments()
        total = self.expected_requests()
        if self.arrival == "poisson":
            rng = np.random.default_rng(self.seed)
            carry = 0.0
            while carry < total:
                # Summed from the carry in one pass: the same floats as one cumsum over all draws.
                x = np.cumsum(np.concatenate(([carry], rng.exponential(1.0, size=chunk))))[1:]
                carry = float(x[-1])
                x = x[x < total]
                if len(x):
                    yield _invert(segments, x)
        else:
            # Tiny slack so that floating error in the area never drops the last whole request.
            n = math.floor(total + 1e-9)
            for start in range(0, n, chunk):
                yield _invert(segments, np.arange(start, min(start + chunk, n), dtype=float))

    def rate_at(self, t: float) -> float:
        start = 0.0
        for d, r0, r1 in self.segments():
            if t < start + d:
                return r0 + (r1 - r0) * (t - start) / d
            start += d
        return 0.0

    def steps(self) -> list[tuple[float, float]] | None:
        # A shape with a stop rule is judged segment by segment.
        if type(self).stop_rule is LoadProfile.stop_rule:
            return None
        return [(d, r0) for d, r0, _ in self.segments()]


# The built-in shapes live in their own modules and register on import; importing them here makes every kind known
# as soon as anything imports this module, and keeps the names importable from here.
from .shapes import (  # noqa: E402
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
from .trace import TraceProfile, trace  # noqa: E402


@dataclass(frozen=True)
class ScheduleShare:
    """Share ``k`` of ``n`` of a profile's schedule, produced lazily as ``(global index, intended offset)`` chunks.

    What one engine sends: ``workers=N`` processes and Ray shards each get one share, and nothing larger than a
    chunk is ever held, so memory does not grow with the run. Poisson arrivals are *thinned*: each request joins
    one share at random (seeded by the profile's seed and ``n``), and independent thinning of a Poisson process
    gives independent Poisson processes, so every share is Poisson at rate/``n``; interleaving (every n-th
    request) would make each share Erlang-n, far more regular than Poisson. Uniform and trace arrivals are
    interleaved, which keeps each share evenly spaced. The shares together are exactly the unshared schedule.

    Example::

        p = constant(1000, 10, arrival="poisson", seed=3)
        share = ScheduleShare(p, 1, 4)
        sum(len(i) for i, _ in share.chunks())        # about 2,500: a quarter of the 10k requests
        share.sizes()                                  # [2511, 2483, ...]: the size of every share, one pass
    """

    profile: LoadProfile
    k: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        check_int("n", self.n, 1)
        check_int("k", self.k, 0, self.n - 1)

    def _owners(self) -> Any:
        import numpy as np

        if self.n > 1 and self.profile.arrival == "poisson":
            return np.random.default_rng([self.profile.seed, self.n, 0x5EED])
        return None

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(index, offsets)`` arrays of this share, in schedule order: ``index`` into the whole schedule."""
        import numpy as np

        rng = self._owners()
        base = 0
        # Drawn at the fixed CHUNK so that every share (and sizes()) sees the same owner draws.
        for part in self.profile.iter_schedule(CHUNK):
            m = len(part)
            if self.n == 1:
                pos = np.arange(m)
            elif rng is not None:
                pos = np.flatnonzero(rng.integers(0, self.n, size=m) == self.k)
            else:
                pos = np.arange((self.k - base) % self.n, m, self.n)
            if len(pos):
                yield pos + base, part[pos]
            base += m

    def sizes(self) -> list[int]:
        """How many requests each of the ``n`` shares holds (one pass over the schedule, nothing kept)."""
        import numpy as np

        counts = np.zeros(self.n, np.int64)
        rng = self._owners()
        base = 0
        for part in self.profile.iter_schedule(CHUNK):
            m = len(part)
            if rng is not None:
                counts += np.bincount(rng.integers(0, self.n, size=m), minlength=self.n)
            else:
                first = (np.arange(self.n) - base) % self.n
                counts += np.maximum(0, (m - first + self.n - 1) // self.n)
            base += m
        return [int(c) for c in counts]


def due_before(profile: LoadProfile, horizon: float) -> int:
    """How many of ``profile``'s requests are intended at or before offset ``horizon`` (reads only what it needs).

    Example::

        due_before(constant(100, 10), 2.0)     # 201
    """
    import numpy as np

    n = 0
    for part in profile.iter_schedule(CHUNK):
        n += int(np.searchsorted(part, horizon, side="right"))
        if len(part) and part[-1] > horizon:
            break
    return n


def shard_indices(profile: LoadProfile, k: int, n: int) -> np.ndarray:
    """Indices into ``profile.schedule()`` of share ``k`` of ``n`` (see :class:`ScheduleShare`), in one array.

    Example::

        p = constant(1000, 10, arrival="poisson", seed=3)
        parts = [shard_indices(p, k, 4) for k in range(4)]     # disjoint, together all 10k requests
    """
    import numpy as np

    parts = [idx for idx, _ in ScheduleShare(profile, k, n).chunks()]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
