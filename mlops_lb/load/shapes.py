"""The built-in rate shapes: constant, step, ramp, spike, sweep and sine (each registers its kind on import).

Example::

    from mlops_lb.load.shapes import ramp, sweep
    ramp(10, 300, 60).rate_at(30)          # 155.0
    sweep(50, 50, step_s=10, max_rps=500).rates[:3]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._profile_base import MAX_DURATION_S, MAX_RPS, LoadProfile, RateProfile, _fail, _num

__all__ = [
    "ConstantProfile",
    "PiecewiseProfile",
    "RampProfile",
    "SineProfile",
    "SpikeProfile",
    "StepProfile",
    "SweepProfile",
    "constant",
    "piecewise",
    "ramp",
    "spike",
    "step",
    "sweep",
]


def _arr(p: LoadProfile) -> str:
    return f"{p.arrival} arrivals"


@dataclass(frozen=True)
class ConstantProfile(RateProfile, kind="constant"):
    """A fixed rate for a fixed time (see :func:`constant`)."""

    rps: float = 1.0
    duration_s: float = 1.0  # type: ignore[assignment]

    def _validate(self) -> None:
        _num("rps", self.rps, 0, MAX_RPS, lo_open=True)
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)

    def segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.duration_s), float(self.rps), float(self.rps))]

    def describe(self) -> str:
        return f"constant {self.rps:g} rps for {self.duration_s:g} s ({_arr(self)})"

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        return cls(rps=rps, duration_s=duration_s)


@dataclass(frozen=True)
class StepProfile(RateProfile, kind="step"):
    """Piecewise-constant rates, each held for ``step_s`` (see :func:`step`)."""

    rates: tuple[float, ...] = (1.0,)
    step_s: float = 1.0

    def _validate(self) -> None:
        if (
            isinstance(self.rates, (str, bytes))
            or not isinstance(self.rates, (tuple, list))
            or not self.rates
        ):
            _fail("rates", f"must be a non-empty sequence of numbers (got {self.rates!r})")
        if len(self.rates) > 10_000:
            _fail("rates", f"must have at most 10000 steps (got {len(self.rates)})")
        for i, r in enumerate(self.rates):
            _num(f"rates[{i}]", r, 0, MAX_RPS)
        if not any(r > 0 for r in self.rates):
            _fail("rates", "must contain at least one rate > 0")
        _num("step_s", self.step_s, 0, MAX_DURATION_S, lo_open=True)
        if self.step_s * len(self.rates) > MAX_DURATION_S:
            _fail("step_s", f"times len(rates) must be <= {MAX_DURATION_S:g} s")

    def segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.step_s), float(r), float(r)) for r in self.rates]

    def describe(self) -> str:
        rates = ", ".join(f"{r:g}" for r in self.rates[:6]) + (", …" if len(self.rates) > 6 else "")
        return f"step [{rates}] rps, {self.step_s:g} s each ({_arr(self)})"

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        n = 4  # equal steps from start_rps up to rps
        _num("rps", rps, 0, MAX_RPS)
        _num("start_rps", start_rps, 0, MAX_RPS)
        _num("duration_s", duration_s, 0, MAX_DURATION_S, lo_open=True)
        return cls(
            rates=tuple(start_rps + (rps - start_rps) * i / (n - 1) for i in range(n)), step_s=duration_s / n
        )


@dataclass(frozen=True)
class RampProfile(RateProfile, kind="ramp"):
    """A rate changing linearly from ``start_rps`` to ``end_rps`` (see :func:`ramp`)."""

    start_rps: float = 0.0
    end_rps: float = 1.0
    duration_s: float = 1.0  # type: ignore[assignment]

    def _validate(self) -> None:
        _num("start_rps", self.start_rps, 0, MAX_RPS)
        _num("end_rps", self.end_rps, 0, MAX_RPS)
        if self.start_rps == 0 and self.end_rps == 0:
            _fail("end_rps", "must be > 0 when start_rps is 0")
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)

    def segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.duration_s), float(self.start_rps), float(self.end_rps))]

    def describe(self) -> str:
        return f"ramp {self.start_rps:g} → {self.end_rps:g} rps over {self.duration_s:g} s ({_arr(self)})"

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        return cls(start_rps=start_rps, end_rps=rps, duration_s=duration_s)


@dataclass(frozen=True)
class SpikeProfile(RateProfile, kind="spike"):
    """``base_rps`` with one burst of ``spike_rps`` from ``spike_at_s`` for ``spike_s`` (see :func:`spike`)."""

    base_rps: float = 1.0
    spike_rps: float = 2.0
    duration_s: float = 3.0  # type: ignore[assignment]
    spike_at_s: float = 1.0
    spike_s: float = 1.0

    def _validate(self) -> None:
        _num("base_rps", self.base_rps, 0, MAX_RPS)
        _num("spike_rps", self.spike_rps, 0, MAX_RPS, lo_open=True)
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)
        _num("spike_at_s", self.spike_at_s, 0, self.duration_s)
        _num("spike_s", self.spike_s, 0, self.duration_s - self.spike_at_s, lo_open=True)

    def segments(self) -> list[tuple[float, float, float]]:
        b, s = float(self.base_rps), float(self.spike_rps)
        segs = [
            (float(self.spike_at_s), b, b),
            (float(self.spike_s), s, s),
            (float(self.duration_s - self.spike_at_s - self.spike_s), b, b),
        ]
        return [seg for seg in segs if seg[0] > 0]

    def describe(self) -> str:
        return (
            f"spike {self.base_rps:g} rps with {self.spike_rps:g} rps at {self.spike_at_s:g}-"
            f"{self.spike_at_s + self.spike_s:g} s of {self.duration_s:g} s ({_arr(self)})"
        )

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        _num("duration_s", duration_s, 0, MAX_DURATION_S, lo_open=True)
        return cls(
            base_rps=start_rps,
            spike_rps=rps,
            duration_s=duration_s,
            spike_at_s=duration_s / 3,
            spike_s=duration_s / 6,
        )


@dataclass(frozen=True)
class PiecewiseProfile(RateProfile, kind="piecewise"):
    """A rate drawn through ``(t_s, rps)`` corners, linear in between (see :func:`piecewise`)."""

    points: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 1.0))

    def _validate(self) -> None:
        pts = self.points
        if isinstance(pts, (str, bytes)) or not isinstance(pts, (tuple, list)) or len(pts) < 2:
            _fail("points", f"must be at least two (t_s, rps) corners (got {pts!r})")
        norm = []
        for i, p in enumerate(pts):
            if isinstance(p, (str, bytes)) or not isinstance(p, (tuple, list)) or len(p) != 2:
                _fail(f"points[{i}]", f"must be a (t_s, rps) pair (got {p!r})")
            norm.append(
                (_num(f"points[{i}][0]", p[0], 0, MAX_DURATION_S), _num(f"points[{i}][1]", p[1], 0, MAX_RPS))
            )
        if norm[0][0] != 0:
            _fail("points[0][0]", f"must be 0, the start of the run (got {norm[0][0]:g})")
        for i in range(1, len(norm)):
            if norm[i][0] <= norm[i - 1][0]:
                _fail(f"points[{i}][0]", f"must be after points[{i - 1}][0] (got {norm[i][0]:g})")
        if not any(r > 0 for _, r in norm):
            _fail("points", "must have a rate > 0 somewhere")
        object.__setattr__(self, "points", tuple(norm))  # lists from JSON become the canonical tuples

    def segments(self) -> list[tuple[float, float, float]]:
        p = self.points
        return [(p[i + 1][0] - p[i][0], p[i][1], p[i + 1][1]) for i in range(len(p) - 1)]

    def describe(self) -> str:
        peak = max(r for _, r in self.points)
        return f"piecewise {len(self.points)} corners up to {peak:g} rps over {self.duration_s:g} s ({_arr(self)})"


@dataclass(frozen=True)
class SweepProfile(RateProfile, kind="sweep"):
    """Rising steps until the p99 latency or the error rate breaks its bound (see :func:`sweep`)."""

    start_rps: float = 1.0
    step_rps: float = 1.0
    step_s: float = 1.0
    max_rps: float = 1.0
    slo_p99_s: float = 0.5
    max_error_rate: float = 0.01

    def _validate(self) -> None:
        _num("start_rps", self.start_rps, 0, MAX_RPS, lo_open=True)
        _num("step_rps", self.step_rps, 0, MAX_RPS, lo_open=True)
        _num("step_s", self.step_s, 0, 3600, lo_open=True)
        _num("max_rps", self.max_rps, self.start_rps, MAX_RPS)
        _num("slo_p99_s", self.slo_p99_s, 0, 3600, lo_open=True)
        _num("max_error_rate", self.max_error_rate, 0, 1)
        if len(self.rates) > 1000:
            _fail("step_rps", f"gives {len(self.rates)} steps; at most 1000 allowed (raise step_rps)")
        if self.step_s * len(self.rates) > MAX_DURATION_S:
            _fail("step_s", f"times the number of steps must be <= {MAX_DURATION_S:g} s")

    @property
    def rates(self) -> list[float]:
        """The rate of each step, from ``start_rps`` up to ``max_rps`` (inclusive)."""
        n = math.floor((self.max_rps - self.start_rps) / self.step_rps + 1e-9) + 1
        return [float(self.start_rps + i * self.step_rps) for i in range(min(n, 1001))]

    def segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.step_s), r, r) for r in self.rates]

    def describe(self) -> str:
        return (
            f"sweep {self.start_rps:g} → {self.max_rps:g} rps in steps of {self.step_rps:g} every "
            f"{self.step_s:g} s until p99 > {self.slo_p99_s:g} s or errors > {self.max_error_rate:.1%}"
        )

    def stop_rule(self, step_summary: Mapping[str, Any]) -> bool | str:
        p99, rate = step_summary["p99_s"], step_summary["error_rate"]
        why = (
            [f"p99 {p99:.3f} s > {self.slo_p99_s:g} s"] if not p99 <= self.slo_p99_s else []
        )  # NaN: no answer
        if rate > self.max_error_rate:
            why.append(f"error rate {rate:.2%} > {self.max_error_rate:.2%}")
        return f"sweep bound broken at {step_summary['rate']:g} rps: {'; '.join(why)}" if why else False

    def done_reason(self, steps: Sequence[Mapping[str, Any]]) -> str:
        if len(steps) == len(self.rates) and all(s["passed"] for s in steps):
            return f"sweep reached max_rps {self.max_rps:g} within bounds"
        return "sweep finished"


@dataclass(frozen=True)
class SineProfile(RateProfile, kind="sine"):
    """A daily cycle in minutes: ``mean_rps + amplitude_rps·sin(2πt/period_s)`` for ``duration_s``, to watch
    target tracking follow a load out and back in.

    The curve is drawn through 64 corners a period, linear in between (within 0.12 % of the amplitude); over
    whole periods it schedules ``mean_rps × duration_s`` requests. ``make_profile("sine", rps=..., start_rps=...,
    duration_s=...)`` (the CLI's and the widget's words) is one period from ``start_rps`` to ``rps`` and back.

    Example::

        SineProfile(mean_rps=100, amplitude_rps=80, period_s=120, duration_s=360)    # three 2-minute "days"
        make_profile("sine", mean_rps=50, amplitude_rps=20, period_s=30, duration_s=90, arrival="poisson")
    """

    mean_rps: float = 1.0
    amplitude_rps: float = 0.0
    period_s: float = 60.0
    duration_s: float = 60.0  # type: ignore[assignment]

    CORNERS_PER_PERIOD: ClassVar[int] = 64

    def _validate(self) -> None:
        _num("mean_rps", self.mean_rps, 0, MAX_RPS, lo_open=True)
        _num("amplitude_rps", self.amplitude_rps, 0, self.mean_rps)  # the rate never goes below 0
        _num("period_s", self.period_s, 0, MAX_DURATION_S, lo_open=True)
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)
        if self.duration_s / self.period_s * self.CORNERS_PER_PERIOD > 10_000:
            _fail("period_s", f"gives more than 10000 segments over {self.duration_s:g} s (raise period_s)")

    def segments(self) -> list[tuple[float, float, float]]:
        dt = self.period_s / self.CORNERS_PER_PERIOD
        n = math.ceil(self.duration_s / dt - 1e-9)
        times = [min(i * dt, float(self.duration_s)) for i in range(n + 1)]
        rate = [self.mean_rps + self.amplitude_rps * math.sin(2 * math.pi * t / self.period_s) for t in times]
        return [(times[i + 1] - times[i], rate[i], rate[i + 1]) for i in range(n)]

    def describe(self) -> str:
        return (
            f"sine {self.mean_rps:g} ± {self.amplitude_rps:g} rps, period {self.period_s:g} s, "
            f"for {self.duration_s:g} s ({_arr(self)})"
        )

    @classmethod
    def from_rates(cls, *, rps: float, duration_s: float, start_rps: float = 0.0) -> LoadProfile:
        """One period over ``duration_s`` between ``start_rps`` (the trough) and ``rps`` (the peak)."""
        _num("rps", rps, 0, MAX_RPS, lo_open=True)
        _num("start_rps", start_rps, 0, rps)
        return cls(
            mean_rps=(rps + start_rps) / 2,
            amplitude_rps=(rps - start_rps) / 2,
            period_s=duration_s,
            duration_s=duration_s,
        )


# --------------------------------------------------------------------------- constructors (the public names)
def constant(rps: float, duration_s: float, *, arrival: str = "uniform", seed: int = 0) -> LoadProfile:
    """``rps`` requests per second for ``duration_s`` seconds.

    Example::

        constant(200, 60, arrival="poisson", seed=1)
    """
    return ConstantProfile(rps=rps, duration_s=duration_s, arrival=arrival, seed=seed)


def step(rates: Sequence[float], step_s: float, *, arrival: str = "uniform", seed: int = 0) -> LoadProfile:
    """Each rate in ``rates`` held for ``step_s`` seconds, in order.

    Example::

        step([50, 100, 200], step_s=20)
    """
    if isinstance(rates, (list, tuple)):
        rates = tuple(rates)
    return StepProfile(rates=rates, step_s=step_s, arrival=arrival, seed=seed)  # type: ignore[arg-type]


def ramp(
    start_rps: float, end_rps: float, duration_s: float, *, arrival: str = "uniform", seed: int = 0
) -> LoadProfile:
    """A rate rising (or falling) linearly from ``start_rps`` to ``end_rps`` over ``duration_s``.

    Example::

        ramp(start_rps=10, end_rps=300, duration_s=60)
    """
    return RampProfile(
        start_rps=start_rps, end_rps=end_rps, duration_s=duration_s, arrival=arrival, seed=seed
    )


def spike(
    base_rps: float,
    spike_rps: float,
    duration_s: float,
    spike_at_s: float,
    spike_s: float,
    *,
    arrival: str = "uniform",
    seed: int = 0,
) -> LoadProfile:
    """``base_rps`` for ``duration_s`` with a burst of ``spike_rps`` in ``[spike_at_s, spike_at_s + spike_s)``.

    Example::

        spike(base_rps=50, spike_rps=500, duration_s=60, spike_at_s=20, spike_s=5)
    """
    return SpikeProfile(
        base_rps=base_rps,
        spike_rps=spike_rps,
        duration_s=duration_s,
        spike_at_s=spike_at_s,
        spike_s=spike_s,
        arrival=arrival,
        seed=seed,
    )


def sweep(
    start_rps: float,
    step_rps: float,
    step_s: float,
    max_rps: float,
    *,
    slo_p99_s: float = 0.5,
    max_error_rate: float = 0.01,
    arrival: str = "uniform",
    seed: int = 0,
) -> SweepProfile:
    """Rising steps ``start_rps, start_rps + step_rps, … <= max_rps``, ``step_s`` each, for capacity planning.

    The engine stops after the first step whose p99 latency exceeds ``slo_p99_s`` or whose error rate exceeds
    ``max_error_rate``; ``LoadResult.steps()`` lists each step and ``LoadResult.stop_reason`` says why it ended.

    Example::

        result = run_load(url, sweep(50, 50, step_s=10, max_rps=1000, slo_p99_s=0.2))
        result.steps()          # rate, p99_s, error_rate, passed
    """
    return SweepProfile(
        start_rps=start_rps,
        step_rps=step_rps,
        step_s=step_s,
        max_rps=max_rps,
        slo_p99_s=slo_p99_s,
        max_error_rate=max_error_rate,
        arrival=arrival,
        seed=seed,
    )


def piecewise(
    points: Sequence[tuple[float, float]], *, arrival: str = "uniform", seed: int = 0
) -> LoadProfile:
    """A rate through ``(t_s, rps)`` corners (the first at 0 s), linear between them: any ramp-hold-fall story.

    Example::

        piecewise([(0, 10), (20, 10), (30, 200), (60, 200), (70, 5)])     # low, climb, hold, fall
    """
    if isinstance(points, list):
        points = tuple(tuple(p) if isinstance(p, list) else p for p in points)  # type: ignore[misc]
    return PiecewiseProfile(points=points, arrival=arrival, seed=seed)  # type: ignore[arg-type]
