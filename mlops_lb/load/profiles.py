"""Load profiles: when each request should be sent, fixed before the run starts.

A profile is a frozen, validated dataclass. ``schedule()`` returns a sorted numpy array of *intended* send
offsets in seconds from the start of the run; the engine never adapts it to the server (open loop), so a slow
server shows up as latency instead of as fewer requests.

Every profile is a list of segments with a linearly changing rate. With ``arrival="uniform"`` request *k* is
sent when the cumulative offered load Λ(t) reaches *k*; with ``arrival="poisson"`` the targets are the partial
sums of unit exponentials (time rescaling of a non-homogeneous Poisson process), seeded for repeatability.

Example::

    from mlops_lb import load
    p = load.ramp(start_rps=10, end_rps=300, duration_s=60)
    p.schedule()[:3]            # array([0.   , 0.0995..., 0.198...])
    p.describe()                # 'ramp 10 → 300 rps over 60 s (uniform arrivals)'
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from .._validate import check_int
from ..errors import SpecError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ARRIVALS",
    "LoadProfile",
    "SweepProfile",
    "constant",
    "profile_from_dict",
    "ramp",
    "spike",
    "step",
    "sweep",
    "trace",
]

ARRIVALS = ("uniform", "poisson")
MAX_RPS = 1_000_000.0
MAX_DURATION_S = 7 * 24 * 3600.0
# A schedule is held in memory as float64 offsets plus per-request result arrays (~60 bytes a request).
MAX_REQUESTS = 50_000_000


def _fail(field_name: str, msg: str) -> NoReturn:
    raise SpecError(field_name, msg)


def _num(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, f"must be a number (got {value!r})")
    if not math.isfinite(value):
        _fail(name, f"must be a finite number (got {value!r})")
    if (value <= lo if lo_open else value < lo) or value > hi:
        low = f"> {lo:g}" if lo_open else f">= {lo:g}"
        _fail(name, f"must be {low} and <= {hi:g} (got {value!r})")
    return float(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail("seed", f"must be a non-negative integer (got {value!r})")
    return value


def _arrival(value: Any) -> str:
    if value not in ARRIVALS:
        _fail("arrival", f"must be one of {', '.join(ARRIVALS)} (got {value!r})")
    return str(value)


def _check_size(segments: Sequence[tuple[float, float, float]]) -> None:
    total = sum(d * (r0 + r1) / 2 for d, r0, r1 in segments)
    if total > MAX_REQUESTS:
        _fail("rps", f"times duration_s must schedule at most {MAX_REQUESTS:,} requests (got {total:,.0f})")


def _schedule(segments: Sequence[tuple[float, float, float]], arrival: str, seed: int) -> np.ndarray:
    """Invert the cumulative offered load Λ(t) of linear-rate segments at the arrival targets."""
    import numpy as np

    areas = np.array([d * (r0 + r1) / 2 for d, r0, r1 in segments], dtype=float)
    total = float(areas.sum())
    if arrival == "poisson":
        rng = np.random.default_rng(seed)
        n_guess = int(total + 6 * math.sqrt(total + 1) + 16)
        x = np.cumsum(rng.exponential(1.0, size=n_guess))
        while x[-1] < total:  # rare: draw more until the whole area is covered
            x = np.concatenate([x, x[-1] + np.cumsum(rng.exponential(1.0, size=n_guess))])
        x = x[x < total]
    else:
        # Tiny slack so that floating error in the area never drops the last whole request.
        x = np.arange(math.floor(total + 1e-9), dtype=float)
    out = np.empty_like(x)
    start_t = 0.0
    start_area = 0.0
    bounds = np.cumsum(areas)
    seg_of = np.searchsorted(bounds, x, side="right")
    for s, (d, r0, r1) in enumerate(segments):
        mask = seg_of == s
        if mask.any():
            u = x[mask] - start_area
            a = (r1 - r0) / (2 * d)
            # Stable root of a*t^2 + r0*t - u = 0 (valid for a == 0, r0 == 0, and falling ramps).
            den = r0 + np.sqrt(np.maximum(r0 * r0 + 4 * a * u, 0.0))
            # den is 0 only for u == 0 on a ramp from 0 rps: that arrival is at the segment start.
            out[mask] = start_t + np.divide(2 * u, den, out=np.zeros_like(u), where=den > 0)
        start_t += d
        start_area += areas[s]
    # Arrivals past the last segment (float slack) are clamped into it.
    out[seg_of >= len(segments)] = start_t
    return np.minimum(out, start_t)


@dataclass(frozen=True)
class LoadProfile:
    """Base of every profile: a frozen description of when requests are sent.

    Build profiles with :func:`constant`, :func:`step`, :func:`ramp`, :func:`spike`, :func:`sweep` or
    :func:`trace`; subclasses provide ``_segments()``.

    Example::

        p = constant(100, 30)
        len(p.schedule()), p.duration_s       # (3000, 30.0)
    """

    kind: ClassVar[str] = "profile"
    arrival: str = field(default="uniform", kw_only=True)
    seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        _arrival(self.arrival)
        _seed(self.seed)
        self._validate()
        _check_size(self._segments())

    def _validate(self) -> None:  # pragma: no cover - overridden
        pass

    def _segments(self) -> list[tuple[float, float, float]]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def duration_s(self) -> float:
        """Length of the schedule in seconds."""
        return float(sum(d for d, _, _ in self._segments()))

    def schedule(self) -> np.ndarray:
        """Sorted numpy array of intended send offsets in seconds from the start of the run."""
        return _schedule(self._segments(), self.arrival, self.seed)

    def rate_at(self, t: float) -> float:
        """The offered rate (requests per second) at offset ``t``."""
        start = 0.0
        for d, r0, r1 in self._segments():
            if t < start + d:
                return r0 + (r1 - r0) * (t - start) / d
            start += d
        return 0.0

    def describe(self) -> str:  # pragma: no cover - overridden
        """One line for humans."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) with a ``kind`` key; :func:`profile_from_dict` inverts it."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = list(v) if isinstance(v, tuple) else v
        return out


def _arr(p: LoadProfile) -> str:
    return f"{p.arrival} arrivals"


@dataclass(frozen=True)
class ConstantProfile(LoadProfile):
    """A fixed rate for a fixed time (see :func:`constant`)."""

    kind: ClassVar[str] = "constant"
    rps: float = 1.0
    duration_s: float = 1.0  # type: ignore[assignment]

    def _validate(self) -> None:
        _num("rps", self.rps, 0, MAX_RPS, lo_open=True)
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)

    def _segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.duration_s), float(self.rps), float(self.rps))]

    def describe(self) -> str:
        return f"constant {self.rps:g} rps for {self.duration_s:g} s ({_arr(self)})"


@dataclass(frozen=True)
class StepProfile(LoadProfile):
    """Piecewise-constant rates, each held for ``step_s`` (see :func:`step`)."""

    kind: ClassVar[str] = "step"
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

    def _segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.step_s), float(r), float(r)) for r in self.rates]

    def describe(self) -> str:
        rates = ", ".join(f"{r:g}" for r in self.rates[:6]) + (", …" if len(self.rates) > 6 else "")
        return f"step [{rates}] rps, {self.step_s:g} s each ({_arr(self)})"


@dataclass(frozen=True)
class RampProfile(LoadProfile):
    """A rate changing linearly from ``start_rps`` to ``end_rps`` (see :func:`ramp`)."""

    kind: ClassVar[str] = "ramp"
    start_rps: float = 0.0
    end_rps: float = 1.0
    duration_s: float = 1.0  # type: ignore[assignment]

    def _validate(self) -> None:
        _num("start_rps", self.start_rps, 0, MAX_RPS)
        _num("end_rps", self.end_rps, 0, MAX_RPS)
        if self.start_rps == 0 and self.end_rps == 0:
            _fail("end_rps", "must be > 0 when start_rps is 0")
        _num("duration_s", self.duration_s, 0, MAX_DURATION_S, lo_open=True)

    def _segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.duration_s), float(self.start_rps), float(self.end_rps))]

    def describe(self) -> str:
        return f"ramp {self.start_rps:g} → {self.end_rps:g} rps over {self.duration_s:g} s ({_arr(self)})"


@dataclass(frozen=True)
class SpikeProfile(LoadProfile):
    """``base_rps`` with one burst of ``spike_rps`` from ``spike_at_s`` for ``spike_s`` (see :func:`spike`)."""

    kind: ClassVar[str] = "spike"
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

    def _segments(self) -> list[tuple[float, float, float]]:
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


@dataclass(frozen=True)
class SweepProfile(LoadProfile):
    """Rising steps until the p99 latency or the error rate breaks its bound (see :func:`sweep`)."""

    kind: ClassVar[str] = "sweep"
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

    def _segments(self) -> list[tuple[float, float, float]]:
        return [(float(self.step_s), r, r) for r in self.rates]

    def describe(self) -> str:
        return (
            f"sweep {self.start_rps:g} → {self.max_rps:g} rps in steps of {self.step_rps:g} every "
            f"{self.step_s:g} s until p99 > {self.slo_p99_s:g} s or errors > {self.max_error_rate:.1%}"
        )


@dataclass(frozen=True)
class TraceProfile(LoadProfile):
    """Replay of recorded send times (see :func:`trace`)."""

    kind: ClassVar[str] = "trace"
    offsets: tuple[float, ...] = (0.0,)
    source: str = ""
    prompt_tokens: tuple[int, ...] = ()
    output_tokens: tuple[int, ...] = ()

    def _validate(self) -> None:
        import numpy as np

        if not self.offsets:
            _fail("trace", "must contain at least one timestamp")
        arr = np.asarray(self.offsets, dtype=float)
        if not np.isfinite(arr).all():
            _fail("trace", "timestamps must be finite numbers")
        if arr.min() < 0 or arr.max() > MAX_DURATION_S:
            _fail("trace", f"offsets must be between 0 and {MAX_DURATION_S:g} s")
        if len(arr) > MAX_REQUESTS:
            _fail("trace", f"must have at most {MAX_REQUESTS:,} timestamps (got {len(arr):,})")
        if len(arr) > 1 and bool((np.diff(arr) < 0).any()):
            _fail("trace", "offsets must be sorted (trace() sorts them, with their sizes)")
        for name in ("prompt_tokens", "output_tokens"):
            sizes = getattr(self, name)
            if not sizes:
                continue
            if len(sizes) != len(arr):
                _fail(name, f"must have one size per timestamp ({len(arr)}) (got {len(sizes)})")
            sz = np.asarray(sizes)
            if sz.dtype.kind not in "iu" or int(sz.min()) < 1:
                _fail(name, "must be whole numbers of tokens >= 1")
        if bool(self.prompt_tokens) != bool(self.output_tokens):
            _fail(
                "output_tokens" if self.prompt_tokens else "prompt_tokens",
                "must be given with the other size",
            )

    @property
    def has_sizes(self) -> bool:
        """True when each request carries its own prompt and output length (a recorded LLM trace)."""
        return bool(self.prompt_tokens)

    def _segments(self) -> list[tuple[float, float, float]]:
        # Only used for the size check and duration; the schedule is the trace itself.
        d = max(self.offsets) if self.offsets else 0.0
        return [(max(d, 1e-9), len(self.offsets) / max(d, 1e-9), len(self.offsets) / max(d, 1e-9))]

    @property
    def duration_s(self) -> float:
        return float(max(self.offsets))

    def schedule(self) -> np.ndarray:
        import numpy as np

        return np.sort(np.asarray(self.offsets, dtype=float))

    def rate_at(self, t: float) -> float:
        import numpy as np

        arr = self.schedule()
        return float(np.count_nonzero((arr >= t - 0.5) & (arr < t + 0.5)))

    def describe(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"trace of {len(self.offsets):,} requests over {self.duration_s:g} s{src}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "offsets": list(self.offsets), "source": self.source}
        if self.has_sizes:
            out.update(prompt_tokens=list(self.prompt_tokens), output_tokens=list(self.output_tokens))
        return out


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


_TRACE_COLUMNS = ("timestamp", "timestamp_s", "t", "time", "time_s", "send_at", "sent_at", "offset_s", "ts")
# Request-size columns of recorded LLM traces (ours, vLLM/GuideLLM-style names, Azure's LLM inference trace).
_PROMPT_COLUMNS = (
    "prompt_tokens",
    "input_tokens",
    "input_length",
    "prompt_len",
    "context_tokens",
    "ContextTokens",
)
_OUTPUT_COLUMNS = (
    "output_tokens",
    "output_length",
    "output_len",
    "max_tokens",
    "generated_tokens",
    "GeneratedTokens",
)


def trace(
    path_or_seconds: str | os.PathLike[str] | Sequence[float],
    *,
    column: str | None = None,
    prompt_tokens: Sequence[int] | None = None,
    output_tokens: Sequence[int] | None = None,
) -> TraceProfile:
    """Replay send times: a CSV file (a column of timestamps in seconds) or a sequence of seconds.

    Times are shifted so the first one is 0. The CSV column is ``column`` if given, else the first of
    ``timestamp``, ``t``, ``time``, ``send_at``, ``offset_s`` … present, else the first column. A recorded LLM
    trace may also carry each request's size: CSV columns ``prompt_tokens`` (or ``input_tokens``,
    ``input_length``, ``ContextTokens`` …) and ``output_tokens`` (or ``output_length``, ``GeneratedTokens`` …),
    or the ``prompt_tokens``/``output_tokens`` arguments; :func:`mlops_lb.load.openai_chat` (``profile=``) then
    builds each request with its own lengths.

    Example::

        trace("recorded.csv")                # header 'timestamp', one send time per row
        trace([0.0, 0.01, 0.5, 0.51])
        trace([0.0, 0.2], prompt_tokens=[512, 40], output_tokens=[128, 300])
    """
    source = ""
    values: list[float]
    sizes: dict[str, list[int]] = {}
    if isinstance(path_or_seconds, (str, os.PathLike)):
        path = Path(path_or_seconds)
        source = str(path)
        try:
            with path.open(newline="") as fh:
                rows = list(csv.reader(fh))
        except OSError as exc:
            raise SpecError("trace", f"cannot read {path}: {exc}") from exc
        if not rows:
            _fail("trace", f"{path} is empty")
        header = [h.strip() for h in rows[0]]
        has_header = any(_not_number(h) for h in header)
        col = 0
        size_cols: dict[str, int] = {}
        if has_header:
            if column is not None:
                if column not in header:
                    _fail("trace", f"column {column!r} not in {path} (columns: {header})")
                col = header.index(column)
            else:
                col = next((header.index(c) for c in _TRACE_COLUMNS if c in header), 0)
            for name, names in (("prompt_tokens", _PROMPT_COLUMNS), ("output_tokens", _OUTPUT_COLUMNS)):
                found = next((header.index(c) for c in names if c in header), None)
                if found is not None:
                    size_cols[name] = found
                    sizes[name] = []
            rows = rows[1:]
        values = []
        for n, row in enumerate(rows, start=2 if has_header else 1):
            if not row or not row[col].strip():
                continue
            try:
                values.append(float(row[col]))
            except ValueError:
                _fail("trace", f"{path} line {n}: {row[col]!r} is not a number of seconds")
            for name, c in size_cols.items():
                cell = row[c].strip() if c < len(row) else ""
                if not cell.isdigit() or int(cell) < 1:
                    _fail(name, f"{path} line {n}: {cell!r} is not a whole number of tokens >= 1")
                sizes[name].append(int(cell))
    else:
        if not isinstance(path_or_seconds, Sequence) and not hasattr(path_or_seconds, "__array__"):
            _fail(
                "trace", f"must be a CSV path or a sequence of seconds (got {type(path_or_seconds).__name__})"
            )
        values = []
        for i, v in enumerate(path_or_seconds):  # type: ignore[union-attr]
            if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
                _fail(f"trace[{i}]", f"must be a number of seconds (got {v!r})")
            values.append(float(v))
    for name, given in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if given is not None:
            if isinstance(given, (str, bytes)) or not hasattr(given, "__len__"):
                _fail(name, f"must be a sequence of token counts (got {given!r})")
            sizes[name] = [check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(given)]
    if not values:
        _fail("trace", "must contain at least one timestamp")
    if not all(math.isfinite(v) for v in values):
        _fail("trace", "timestamps must be finite numbers")
    for name, got in sizes.items():
        if len(got) != len(values):
            _fail(name, f"must have one size per timestamp ({len(values)}) (got {len(got)})")
    first = min(values)
    order = sorted(range(len(values)), key=values.__getitem__)  # stable: equal times keep their sizes' order
    return TraceProfile(
        offsets=tuple(values[i] - first for i in order),
        source=source,
        prompt_tokens=tuple(sizes["prompt_tokens"][i] for i in order) if "prompt_tokens" in sizes else (),
        output_tokens=tuple(sizes["output_tokens"][i] for i in order) if "output_tokens" in sizes else (),
    )


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


_KINDS: dict[str, type[LoadProfile]] = {
    c.kind: c for c in (ConstantProfile, StepProfile, RampProfile, SpikeProfile, SweepProfile, TraceProfile)
}


def profile_from_dict(data: dict[str, Any]) -> LoadProfile:
    """Rebuild a profile from :meth:`LoadProfile.to_dict` output.

    Example::

        profile_from_dict(ramp(1, 10, 5).to_dict()) == ramp(1, 10, 5)     # True
    """
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        _fail("kind", f"must be one of {', '.join(_KINDS)} (got {kind!r})")
    cls = _KINDS[kind]
    for key in ("rates", "offsets", "prompt_tokens", "output_tokens"):
        if key in data and isinstance(data[key], list):
            data[key] = tuple(data[key])
    try:
        return cls(**data)
    except TypeError as exc:
        raise SpecError("kind", f"{kind} profile got unexpected fields: {exc}") from exc
