"""The base of load profiles: :class:`LoadProfile`, :class:`RateProfile`, the registry of shape kinds and the
functions that build a shape by name. The face is :mod:`mlops_lb.load.profiles` (with the built-in shapes of
:mod:`.shapes` and :mod:`.trace` registered); splitting a schedule between engines is :mod:`.sharding`.

Example::

    from mlops_lb.load._profile_base import RateProfile     # to write a shape; users import mlops_lb.load
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
    "CHUNK",
    "MAX_DURATION_S",
    "MAX_REQUESTS",
    "MAX_RPS",
    "LoadProfile",
    "RateProfile",
    "make_profile",
    "profile_from_dict",
    "profile_kinds",
    "rate_kinds",
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
