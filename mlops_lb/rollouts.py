"""Backend-neutral rollouts: traffic-shifting strategies, the SLO guard and its pure decision, states and events.

A rollout moves traffic from the serving slot (``old``) to a second slot running the new spec (``new``) in steps;
after each shift the guard judges every interval of the bake, and a breach sends ``new`` back to 0 %. Each
backend applies the steps its own way (local: HAProxy per-server weights; AWS: weighted target groups); what a
step is, when the guard breaches and what a progress event holds is decided here, once, as data.

Rules taken from SageMaker's deployment guardrails (``TrafficRoutingConfig``,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html, read 2026-12-07):
``WaitIntervalInSeconds`` (our ``bake_s``) is 0-3600; the canary is at most 50 % of the new fleet; a linear step
is 10-50 %. Canary: shift ``percent``, bake, shift the rest, bake again; linear: ``step_percent`` more per step,
bake after each; all-at-once: one shift and one bake
(https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green-canary.html, same date).

Example::

    from mlops_lb.rollouts import Canary, Guard, VariantStats, guard_decision
    Canary(percent=10, bake_s=30).steps()          # ((10.0, 30.0), (100.0, 30.0))
    guard = Guard(p99_s=0.2, max_error_share=0.01, breach_intervals=2)
    guard_decision(guard, [{"new": VariantStats(requests=50, errors=0, p99_s=0.5)}] * 2).action   # 'rollback'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ._validate import check_int, check_num, fail, show, unknown_field

if TYPE_CHECKING:
    from .spec import FleetSpec

__all__ = [
    "CHANGEABLE_PARTS",
    "MAX_BAKE_S",
    "ROLLOUT_STATES",
    "AllAtOnce",
    "Canary",
    "ClientFeed",
    "Guard",
    "GuardDecision",
    "IntervalVerdict",
    "Linear",
    "RolloutEvent",
    "Strategy",
    "VariantStats",
    "check_guard",
    "client_variant_stats",
    "guard_decision",
    "judge_interval",
    "new_spec",
    "rollout_event",
    "strategy_from_dict",
]

MAX_BAKE_S = 3600.0  # TrafficRoutingConfig.WaitIntervalInSeconds: 0-3600 (module docstring)

RolloutState = Literal[
    "idle", "preparing", "baking", "rolling_back", "rolled_back", "completed", "interrupted", "failed"
]
ROLLOUT_STATES: tuple[str, ...] = (
    "idle",  # no rollout: one slot serves everything
    "preparing",  # the new slot is launching; it takes no traffic yet
    "baking",  # a step's share is on the new slot and the guard judges each interval
    "rolling_back",  # a breach (or a request) is sending the new slot back to 0 %
    "rolled_back",  # the old slot serves 100 % again; the new slot is retired
    "completed",  # the new slot serves 100 %; the old one is retired and the new spec is the fleet's spec
    "interrupted",  # stopped mid-way (Ctrl-C, a kernel restart): both slots serve at the last weights
    "failed",  # the new slot could not be prepared; the old slot serves 100 %
)
"""Every state a rollout can be in; ``interrupted`` is the one ``rollout(...)`` can resume or roll back."""

EventKind = Literal[
    "start", "ready", "shift", "interval", "breach", "rollback", "complete", "interrupted", "failed"
]


# --------------------------------------------------------------------------- strategies
def _bake(path: str, value: Any) -> float:
    return check_num(path, value, 0.0, MAX_BAKE_S)


@dataclass(frozen=True, kw_only=True)
class AllAtOnce:
    """Shift everything at once, then bake ``bake_s`` seconds under the guard.

    Example::

        fleet.rollout({"model": {"source": "demo.onnx"}}, strategy=AllAtOnce(bake_s=20))
    """

    bake_s: float = 0.0
    kind: Literal["all_at_once"] = field(default="all_at_once", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bake_s", _bake("strategy.bake_s", self.bake_s))

    def steps(self) -> tuple[tuple[float, float], ...]:
        """``((percent on the new slot, bake seconds), ...)`` in order."""
        return ((100.0, self.bake_s),)


@dataclass(frozen=True, kw_only=True)
class Canary:
    """Shift ``percent`` (0 < p <= 50, SageMaker's canary bound), bake, then shift the rest and bake again.

    Example::

        Canary(percent=10, bake_s=30).steps()      # ((10.0, 30.0), (100.0, 30.0))
    """

    percent: float = 10.0
    bake_s: float = 60.0
    kind: Literal["canary"] = field(default="canary", init=False)

    def __post_init__(self) -> None:
        p = check_num("strategy.percent", self.percent, 0.0, 50.0, lo_open=True)
        object.__setattr__(self, "percent", p)
        object.__setattr__(self, "bake_s", _bake("strategy.bake_s", self.bake_s))

    def steps(self) -> tuple[tuple[float, float], ...]:
        return ((self.percent, self.bake_s), (100.0, self.bake_s))


@dataclass(frozen=True, kw_only=True)
class Linear:
    """Shift ``step_percent`` (10-50, SageMaker's linear bound) more at each step, baking ``bake_s`` after each.

    Example::

        Linear(step_percent=25, bake_s=10).steps()   # 25, 50, 75, 100 %, 10 s each
    """

    step_percent: float = 25.0
    bake_s: float = 60.0
    kind: Literal["linear"] = field(default="linear", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "step_percent", check_num("strategy.step_percent", self.step_percent, 10, 50)
        )
        object.__setattr__(self, "bake_s", _bake("strategy.bake_s", self.bake_s))

    def steps(self) -> tuple[tuple[float, float], ...]:
        n = math.ceil(100.0 / self.step_percent - 1e-9)
        return tuple((min(100.0, round(self.step_percent * (i + 1), 6)), self.bake_s) for i in range(n))


Strategy = AllAtOnce | Canary | Linear
_STRATEGIES: dict[str, type[AllAtOnce] | type[Canary] | type[Linear]] = {
    "all_at_once": AllAtOnce,
    "canary": Canary,
    "linear": Linear,
}


def strategy_from_dict(data: Any) -> Strategy:
    """A strategy from ``{"kind": "canary", "percent": 10, "bake_s": 30}`` (what ``to_dict`` writes).

    Example::

        strategy_from_dict({"kind": "linear", "step_percent": 20, "bake_s": 5})
    """
    if isinstance(data, (AllAtOnce, Canary, Linear)):
        return data
    if not isinstance(data, Mapping):
        fail(
            "strategy",
            f"must be AllAtOnce(), Canary(...), Linear(...) or a mapping with kind (got {show(data)})",
        )
    kind = data.get("kind")
    if kind not in _STRATEGIES:
        fail("strategy.kind", f"must be one of {', '.join(_STRATEGIES)} (got {show(kind)})")
    cls = _STRATEGIES[kind]
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key != "kind" and key not in names:
            unknown_field("strategy", key, names)
    return cls(**{k: v for k, v in data.items() if k != "kind"})


# --------------------------------------------------------------------------- the guard
@dataclass(frozen=True, kw_only=True)
class Guard:
    """The SLO a rollout must keep, judged on the new variant every ``interval_s`` seconds of each bake.

    ``p99_s``: the new variant's latency p99 (client side: corrected for coordinated omission) must stay at or
    below it. ``p99_vs_old``: and at or below this multiple of the old variant's p99 in the same interval (1.5:
    at most 50 % slower than what it replaces). ``max_error_share``: failed requests over requests sent to the
    new variant. ``ttft_p99_s``: time to first token p99 (streaming servers only). An interval in which the new
    variant served fewer than ``min_requests`` is not judged (too few to tell); a bake with no judged interval
    is a breach (no evidence is not a pass). ``breach_intervals`` consecutive breaching intervals roll back.

    Example::

        Guard(p99_s=0.25, max_error_share=0.01, min_requests=20, breach_intervals=2, interval_s=1.0)
    """

    p99_s: float | None = None
    p99_vs_old: float | None = None
    max_error_share: float = 0.01
    ttft_p99_s: float | None = None
    min_requests: int = 20
    breach_intervals: int = 2
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p99_s", "ttft_p99_s"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, check_num(f"guard.{name}", v, 0.0, 3600.0, lo_open=True))
        if self.p99_vs_old is not None:
            object.__setattr__(self, "p99_vs_old", check_num("guard.p99_vs_old", self.p99_vs_old, 1.0, 100.0))
        object.__setattr__(
            self, "max_error_share", check_num("guard.max_error_share", self.max_error_share, 0.0, 1.0)
        )
        object.__setattr__(self, "min_requests", check_int("guard.min_requests", self.min_requests, 1, 10**9))
        # More than two would break the promise "back to 0 % within two intervals of the breach".
        object.__setattr__(
            self, "breach_intervals", check_int("guard.breach_intervals", self.breach_intervals, 1, 2)
        )
        object.__setattr__(self, "interval_s", check_num("guard.interval_s", self.interval_s, 0.1, 300.0))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this guard reads: ``p99``, ``errors`` and, if asked, ``ttft_p99``."""
        out = ["errors"]
        if self.p99_s is not None or self.p99_vs_old is not None:
            out.append("p99")
        if self.ttft_p99_s is not None:
            out.append("ttft_p99")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_guard(guard: Any, spec: FleetSpec, *, source: str = "client") -> Guard:
    """``guard`` as a Guard, refused (SpecError naming the field and the fix) when ``spec``'s workload or the
    evidence ``source`` (``"client"``: a load run attached; ``"fleet"``: balancer stats) cannot produce a metric
    it names.

    Example::

        check_guard(Guard(ttft_p99_s=0.5), FleetSpec(name="x"))   # SpecError: guard.ttft_p99_s ... streaming
    """
    if guard is None:
        guard = Guard()
    elif isinstance(guard, Mapping):
        names = [f.name for f in dataclasses.fields(Guard)]
        for key in guard:
            if key not in names:
                unknown_field("guard", key, names)
        guard = Guard(**guard)
    elif not isinstance(guard, Guard):
        fail("guard", f"must be a Guard or a mapping of its fields (got {show(guard)})")
    if guard.ttft_p99_s is not None:
        if spec.server.kind == "model":
            fail(
                "guard.ttft_p99_s",
                "needs a streaming server (server.kind 'llm-emulator' or your own streaming command); the "
                "model server answers in one piece, so there is no first token: use guard.p99_s instead",
            )
        if source != "client":
            fail(
                "guard.ttft_p99_s",
                "is measured by the client only: attach a load run (rollout(..., feed=...)) or drop the field",
            )
    return guard


@dataclass(frozen=True)
class VariantStats:
    """One variant's numbers over one interval: requests it answered or failed, failures, p99s (NaN: none).

    ``mean_s`` is for evidence that has no percentile (HAProxy's per-server ``rtime``, the mean of the last 1024
    responses): a mean above ``guard.p99_s`` proves the p99 is above it too, so the guard uses it when ``p99_s``
    is NaN (it misses a p99 breach whose mean stays under the bound; the client side sees those).

    Example::

        VariantStats(requests=120, errors=0, p99_s=0.031)
    """

    requests: int
    errors: int = 0
    p99_s: float = math.nan
    ttft_p99_s: float = math.nan
    mean_s: float = math.nan

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IntervalVerdict:
    """The guard on one interval: ``judged`` (enough requests), and each breach in words (empty: clean)."""

    judged: bool
    breaches: tuple[str, ...] = ()

    @property
    def breached(self) -> bool:
        return bool(self.breaches)


@dataclass(frozen=True)
class GuardDecision:
    """What to do after the intervals seen so far: ``continue``, ``rollback`` or (bake over) ``promote``.

    ``reason`` says why in words; ``evidence`` holds the breaching intervals' numbers (index, per-variant stats,
    breaches), for the progress stream, the bundle and the report.
    """

    action: Literal["continue", "rollback", "promote"]
    reason: str
    evidence: tuple[dict[str, Any], ...] = ()


def judge_interval(guard: Guard, stats: Mapping[str, VariantStats]) -> IntervalVerdict:
    """Judge one interval of per-variant stats (``"new"`` required, ``"old"`` optional). Pure.

    Example::

        judge_interval(Guard(p99_s=0.1), {"new": VariantStats(40, 0, 0.3)}).breaches
        # ('p99 0.300 s > guard.p99_s 0.100 s',)
    """
    new = stats.get("new")
    if new is None or new.requests < guard.min_requests:
        return IntervalVerdict(judged=False)
    out: list[str] = []
    if new.error_share > guard.max_error_share:
        out.append(
            f"error share {new.error_share:.1%} ({new.errors}/{new.requests}) > guard.max_error_share "
            f"{guard.max_error_share:.1%}"
        )
    p99 = new.p99_s
    if guard.p99_s is not None and p99 == p99 and p99 > guard.p99_s:
        out.append(f"p99 {p99:.3f} s > guard.p99_s {guard.p99_s:.3f} s")
    elif guard.p99_s is not None and p99 != p99 and new.mean_s == new.mean_s and new.mean_s > guard.p99_s:
        out.append(f"mean {new.mean_s:.3f} s (so p99 too) > guard.p99_s {guard.p99_s:.3f} s")
    old = stats.get("old")
    if (
        guard.p99_vs_old is not None
        and old is not None
        and old.requests >= guard.min_requests
        and p99 == p99
        and old.p99_s == old.p99_s
        and p99 > guard.p99_vs_old * old.p99_s
    ):
        out.append(f"p99 {p99:.3f} s > {guard.p99_vs_old:g} x the old variant's {old.p99_s:.3f} s")
    t = new.ttft_p99_s
    if guard.ttft_p99_s is not None and t == t and t > guard.ttft_p99_s:
        out.append(f"TTFT p99 {t:.3f} s > guard.ttft_p99_s {guard.ttft_p99_s:.3f} s")
    return IntervalVerdict(judged=True, breaches=tuple(out))


def guard_decision(
    guard: Guard, intervals: Sequence[Mapping[str, VariantStats]], *, bake_over: bool = False
) -> GuardDecision:
    """The guard's decision after ``intervals`` (this bake's, oldest first). Pure: replayable from a bundle.

    Rolls back once the last ``guard.breach_intervals`` judged intervals all breached (unjudged intervals
    neither break nor extend a run of breaches); with ``bake_over``, promotes if it would not roll back and at
    least one interval was judged, and rolls back when none was (no evidence is not a pass).

    Example::

        g = Guard(p99_s=0.1, breach_intervals=1, min_requests=5)
        guard_decision(g, [{"new": VariantStats(10, 0, 0.05)}], bake_over=True).action   # 'promote'
    """
    verdicts = [judge_interval(guard, s) for s in intervals]
    judged = [(i, v) for i, v in enumerate(verdicts) if v.judged]
    tail = judged[-guard.breach_intervals :]
    if len(tail) == guard.breach_intervals and all(v.breached for _, v in tail):
        evidence = tuple(
            {
                "interval": i,
                "breaches": list(v.breaches),
                "stats": {k: s.to_dict() for k, s in intervals[i].items()},
            }
            for i, v in tail
        )
        why = "; ".join(dict.fromkeys(b for _, v in tail for b in v.breaches))
        n = guard.breach_intervals
        return GuardDecision(
            "rollback", f"guard breached in {n} consecutive interval{'s' if n > 1 else ''}: {why}", evidence
        )
    if not bake_over:
        return GuardDecision("continue", f"{len(judged)} of {len(verdicts)} intervals judged, no breach")
    if not judged:
        return GuardDecision(
            "rollback",
            f"no evidence: the new variant served fewer than guard.min_requests={guard.min_requests} requests in "
            f"each of {len(verdicts)} intervals; send more load, lengthen bake_s or lower guard.min_requests",
        )
    clean = sum(1 for _, v in judged if not v.breached)
    return GuardDecision("promote", f"bake over: {clean} of {len(judged)} judged intervals clean")


# --------------------------------------------------------------------------- client-side evidence
_FEED_COLUMNS = ("sent_at", "done_at", "latency_s", "error", "target", "ttft_s")


class ClientFeed:
    """Finished requests of a load run, handed to a rollout's guard: ``run_load(..., on_records=feed)`` fills it,
    ``fleet.rollout(..., feed=feed)`` reads it. Thread-safe; keeps only what arrived since the last ``take``.

    Example::

        feed = ClientFeed()
        run = ml.load.start_load(fleet.url + "/predict", ml.load.constant(100, 60), on_records=feed)
        fleet.rollout({"local": {"min_service_ms": 30}}, strategy=Canary(percent=20, bake_s=10), feed=feed)
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._frames: list[Any] = []
        self.received = 0

    def __call__(self, frame: Any) -> None:
        cols = [c for c in _FEED_COLUMNS if c in frame.columns]
        with self._lock:
            self._frames.append(frame[cols].copy())
            self.received += len(frame)

    def take(self) -> Any:
        """Every request received since the last call, as one DataFrame (empty: none)."""
        import pandas as pd

        with self._lock:
            frames, self._frames = self._frames, []
        if not frames:
            return pd.DataFrame({c: [] for c in _FEED_COLUMNS})
        return pd.concat(frames, ignore_index=True)


# The engine's error kinds that are not the fleet's doing: a request the client cancelled (Stop) says nothing.
_NOT_FLEET_ERRORS = ("", "cancelled")
# Latency percentiles take answered requests only (mlops_lb.load._codes.LATENCY_KINDS: ok, 5xx, no_tokens).
_LATENCY_ERRORS = ("", "http_5xx", "no_tokens")


def client_variant_stats(frame: Any, variant_of: Mapping[str, str]) -> dict[str, VariantStats]:
    """Per-variant :class:`VariantStats` of a batch of request records; ``variant_of`` maps target id -> variant.

    Requests whose target is not in the map (no ``X-Target-Id``: refused before any target answered) go to
    ``"unknown"``. Latencies are the records' ``latency_s`` (from the intended send time: corrected for
    coordinated omission).

    Example::

        client_variant_stats(feed.take(), {"i-1": "old", "i-2": "new"})["new"].p99_s
    """
    import numpy as np

    if not len(frame):
        return {}
    variants = frame["target"].map(lambda t: variant_of.get(t, "unknown"))
    out: dict[str, VariantStats] = {}
    for name, part in frame.groupby(variants):
        err = part["error"]
        lat = part.loc[err.isin(_LATENCY_ERRORS), "latency_s"].to_numpy(dtype=float)
        ttft = part["ttft_s"].to_numpy(dtype=float) if "ttft_s" in part else np.array([])
        ttft = ttft[ttft == ttft]
        out[str(name)] = VariantStats(
            requests=int((err != "cancelled").sum()),
            errors=int((~err.isin(_NOT_FLEET_ERRORS)).sum()),
            p99_s=float(np.percentile(lat, 99)) if len(lat) else math.nan,
            ttft_p99_s=float(np.percentile(ttft, 99)) if len(ttft) else math.nan,
            mean_s=float(lat.mean()) if len(lat) else math.nan,
        )
    return out


# --------------------------------------------------------------------------- what may change
CHANGEABLE_PARTS: tuple[str, ...] = ("model", "server", "instance", "local")
"""The spec parts a rollout may change; the rest (name, balancer, health check...) belongs to the shared balancer."""


def new_spec(current: FleetSpec, new: Any) -> FleetSpec:
    """The new slot's spec: ``new`` is a whole FleetSpec or a mapping of the parts that change.

    Only :data:`CHANGEABLE_PARTS` may differ (the two slots share one balancer, health check and target-group
    settings); a rollout that changes nothing is refused. Capacity comes from the running fleet.

    Example::

        new_spec(spec, {"local": {"min_service_ms": 40}})       # same fleet, slower servers
    """
    from .spec import FleetSpec

    if isinstance(new, FleetSpec):
        for f in dataclasses.fields(FleetSpec):
            if f.name in CHANGEABLE_PARTS or f.name == "capacity":
                continue
            if getattr(new, f.name) != getattr(current, f.name):
                fail(
                    f"new.{f.name}",
                    f"cannot change in a rollout (both slots share the balancer); only "
                    f"{', '.join(CHANGEABLE_PARTS)} may differ: open a new fleet for other changes",
                )
        out = new.replace(capacity=current.capacity)
    elif isinstance(new, Mapping):
        if not new:
            fail("new", f"must name at least one part to change ({', '.join(CHANGEABLE_PARTS)})")
        base = current.to_dict()
        for key, part in new.items():
            if key not in CHANGEABLE_PARTS:
                if key in base:
                    fail(
                        f"new.{key}",
                        f"cannot change in a rollout (both slots share the balancer); only "
                        f"{', '.join(CHANGEABLE_PARTS)} may differ",
                    )
                unknown_field("new", key, CHANGEABLE_PARTS)
            if hasattr(part, "to_dict"):
                part = part.to_dict()
            if not isinstance(part, Mapping):
                fail(f"new.{key}", f"must be a mapping of {key} fields (got {show(part)})")
            merged = dict(base[key] or {})
            merged.update(part)
            base[key] = merged
        out = FleetSpec.from_dict(base)
    else:
        fail("new", f"must be a FleetSpec or a mapping of the parts that change (got {show(new)})")
    if all(getattr(out, p) == getattr(current, p) for p in CHANGEABLE_PARTS):
        fail("new", "changes nothing: give the model, server, instance or local settings the new slot runs")
    return out


# --------------------------------------------------------------------------- progress events
class RolloutEvent(TypedDict):
    """One progress event (``on_event``, the bundle's rollout table, the panel). ``percent`` is the new slot's
    share of traffic after this event; ``stats`` the interval's per-variant numbers (``interval`` events);
    ``evidence`` the breaching intervals (``breach``/``rollback``)."""

    timestamp: datetime
    kind: EventKind
    state: RolloutState
    step: int
    percent: float
    detail: str
    stats: dict[str, dict[str, Any]]
    evidence: list[dict[str, Any]]


def rollout_event(
    kind: EventKind,
    state: RolloutState,
    *,
    step: int,
    percent: float,
    detail: str = "",
    stats: Mapping[str, VariantStats] | None = None,
    evidence: Sequence[dict[str, Any]] = (),
    timestamp: datetime | None = None,
) -> RolloutEvent:
    """Build a :class:`RolloutEvent` (timestamp: now, UTC). Example: ``rollout_event("shift", "baking", step=0,
    percent=10)``."""
    from datetime import timezone

    if kind not in EventKind.__args__:  # type: ignore[attr-defined]
        fail("kind", f"must be one of {', '.join(EventKind.__args__)} (got {show(kind)})")  # type: ignore[attr-defined]
    if state not in ROLLOUT_STATES:
        fail("state", f"must be one of {', '.join(ROLLOUT_STATES)} (got {show(state)})")
    return RolloutEvent(
        timestamp=timestamp or datetime.now(timezone.utc),
        kind=kind,
        state=state,
        step=step,
        percent=float(percent),
        detail=detail,
        stats={k: v.to_dict() for k, v in (stats or {}).items()},
        evidence=list(evidence),
    )
