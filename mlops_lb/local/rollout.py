"""Blue/green rollouts on the local fleet: a second slot of targets behind the same HAProxy, weighted at run time.

Both slots' targets sit in the same backend(s); a slot's share of traffic is its servers' HAProxy weights, changed
with ``set server <backend>/<server> weight <w>`` through the Runtime API: no reload, in-flight requests untouched
("set server <backend>/<server> weight <weight>[%]: Change a server's weight to the value passed in argument",
HAProxy 2.6 Management Guide, section 9.3, https://docs.haproxy.org/2.6/management.html#9.3-set%20server).
Weights are 0-256 ("weight <weight>: ... The default weight is 1, and the maximal value is 256", Configuration
Manual 5.2, https://docs.haproxy.org/2.6/configuration.html#5.2-weight), so a share is approximated by the
ratio of two integers (:func:`split_weights` returns the share it achieves).

The guard reads, every ``guard.interval_s``, either a load run's finished requests (``feed``: a
:class:`~mlops_lb.rollouts.ClientFeed`, each request's target from ``X-Target-Id``, mapped to its slot) or, with
no load attached, HAProxy's per-server counters (responses, 5xx, and ``rtime``, the mean response time of the last
1024 requests). A breach sets the new slot's weight to 0 at once; its in-flight requests finish, then its targets
drain and stop. A clean finish retires the old slot the same way.

Example::

    feed = ClientFeed()
    run = start_load(fleet.url + "/predict", constant(100, 60), on_output=None, on_records=feed)
    res = fleet.rollout({"local": {"min_service_ms": 30}}, strategy=Canary(percent=20, bake_s=10),
                        guard=Guard(p99_s=0.1), feed=feed)
    res.state, res.reason, res.timeline
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import ProvisionError, SpecError
from ..haproxy_runtime import StatRow
from ..rollouts import (
    ClientFeed,
    Guard,
    RolloutEvent,
    Strategy,
    VariantStats,
    breach_start,
    check_guard,
    client_variant_stats,
    guard_decision,
    new_spec,
    rollout_event,
    strategy_from_dict,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..spec import FleetSpec
    from .asg import AsgEmulator

__all__ = ["MAX_WEIGHT", "RolloutResult", "fleet_variant_stats", "run_rollout", "split_weights"]

log = logging.getLogger(__name__)

# The LocalFleet driving the rollout (its lock, groups and slot hooks); not imported, as local.fleet imports this.
LocalFleet = Any

MAX_WEIGHT = 256  # HAProxy's largest server weight (module docstring)


def split_weights(percent: float, n_old: int, n_new: int) -> tuple[int, int, float]:
    """Per-server weights ``(old, new)`` that give the new slot ``percent`` of the requests, and the share they
    actually give (integer weights of at most 256 round it).

    Example::

        split_weights(10, 2, 2)      # (256, 28, 9.86...)
    """
    if percent <= 0 or n_new == 0:
        return 1, 0, 0.0
    if percent >= 100 or n_old == 0:
        return 0, 1, 100.0
    ratio = (percent / n_new) / ((100.0 - percent) / n_old)  # new weight over old weight
    if ratio <= 1:
        w_old, w_new = MAX_WEIGHT, max(1, round(MAX_WEIGHT * ratio))
    else:
        w_old, w_new = max(1, round(MAX_WEIGHT / ratio)), MAX_WEIGHT
    got = 100.0 * n_new * w_new / (n_new * w_new + n_old * w_old)
    return w_old, w_new, got


def fleet_variant_stats(
    before: Mapping[str, StatRow], after: Mapping[str, StatRow], variant_of: Mapping[str, str]
) -> dict[str, VariantStats]:
    """Per-variant stats from two ``show stat`` snapshots (``backend/server`` or server name -> row; a server's
    rows in every backend add up): responses and 5xx are the
    counters' differences; ``mean_s`` is the largest ``rtime`` (ms, mean of the last 1024 responses) of the
    variant's servers, since HAProxy keeps no percentile per server.

    Example::

        fleet_variant_stats(rows_then, rows_now, {"i-1": "old", "i-2": "new"})["new"].errors
    """
    acc: dict[str, list[float]] = {}
    for name, row in after.items():
        variant = variant_of.get(
            name, variant_of.get(name.rsplit("/", 1)[-1])
        )  # "backend/server" or "server"
        if variant is None:
            continue
        prev = before.get(name)

        def delta(col: str, row: StatRow = row, prev: StatRow | None = prev) -> int:
            return max(0, row.int(col) - (prev.int(col) if prev is not None else 0))

        responses = sum(
            delta(c) for c in ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
        )
        errors = delta("hrsp_5xx") + delta("eresp") + delta("econ")
        a = acc.setdefault(variant, [0, 0, math.nan])
        a[0] += responses + delta("eresp") + delta("econ")
        a[1] += errors
        if responses:
            rt = row.int("rtime") / 1000.0
            a[2] = rt if a[2] != a[2] else max(a[2], rt)
    return {k: VariantStats(requests=int(v[0]), errors=int(v[1]), mean_s=v[2]) for k, v in acc.items()}


@dataclass
class RolloutResult:
    """What a rollout did: its final ``state``, ``reason``, the guard's ``evidence``, the ``timeline`` (one row per
    weight change: timestamp, step, percent asked, percent given), ``intervals`` (one row per variant per judged
    interval), ``served`` (requests each variant answered, from the feed) and ``breach_to_zero_s`` (from the end
    of the first breaching interval to the new slot at weight 0; NaN without a breach).

    Example::

        res = fleet.rollout(...); res.state, res.served, res.timeline
    """

    state: str
    reason: str
    strategy: dict[str, Any]
    guard: dict[str, Any]
    source: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    events: list[RolloutEvent] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    client_errors: dict[str, int] = field(default_factory=dict)
    breach_to_zero_s: float = math.nan
    zero_at: datetime | None = None
    step: int = 0

    def timeline_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            self.timeline, columns=["timestamp", "step", "percent", "effective_percent", "state"]
        )

    def intervals_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = ["timestamp", "step", "variant", "requests", "errors", "p99_s", "ttft_p99_s", "mean_s"]
        return pd.DataFrame(self.intervals, columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (timestamps as ISO strings): what the run bundle stores as ``rollout.json``."""

        def plain(v: Any) -> Any:
            if isinstance(v, datetime):
                return v.isoformat()
            if isinstance(v, float) and v != v:
                return None
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return plain(
            {
                "state": self.state,
                "reason": self.reason,
                "strategy": self.strategy,
                "guard": self.guard,
                "source": self.source,
                "evidence": self.evidence,
                "timeline": self.timeline,
                "intervals": self.intervals,
                "served": self.served,
                "client_errors": self.client_errors,
                "breach_to_zero_s": self.breach_to_zero_s,
                "zero_at": self.zero_at,
                "step": self.step,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutResult:
        """The result :meth:`to_dict` wrote (a bundle's ``rollout.json``, a detached supervisor's answer);
        timestamps back to datetimes. Progress events are not part of it.

        Example::

            RolloutResult.from_dict(json.loads(path.read_text())["rollouts"][0]).state
        """

        def when(v: Any) -> Any:
            return datetime.fromisoformat(v) if isinstance(v, str) else v

        def rows(key: str) -> list[dict[str, Any]]:
            out = [dict(r) for r in data.get(key) or []]
            for r in out:
                if "timestamp" in r:
                    r["timestamp"] = when(r["timestamp"])
            return out

        b2z = data.get("breach_to_zero_s")
        return cls(
            state=str(data.get("state", "idle")),
            reason=str(data.get("reason", "")),
            strategy=dict(data.get("strategy") or {}),
            guard=dict(data.get("guard") or {}),
            source=str(data.get("source", "fleet")),
            evidence=list(data.get("evidence") or []),
            timeline=rows("timeline"),
            intervals=rows("intervals"),
            served={str(k): int(v) for k, v in (data.get("served") or {}).items()},
            client_errors={str(k): int(v) for k, v in (data.get("client_errors") or {}).items()},
            breach_to_zero_s=math.nan if b2z is None else float(b2z),
            zero_at=when(data.get("zero_at")),
            step=int(data.get("step") or 0),
        )

    def to_bundle(self, bundle: Any) -> None:
        """Add this rollout to ``bundle``'s ``rollout.json`` (a :class:`~mlops_lb.bundle.RunBundle`; earlier
        rollouts of the run are kept): what the report's rollout figure and caption read."""
        import json

        path = bundle.path / "rollout.json"
        try:
            kept = json.loads(path.read_text()).get("rollouts", [])
        except (OSError, ValueError, AttributeError):
            kept = []
        bundle.write_json("rollout.json", {"rollouts": [*kept, self.to_dict()]})

    def __repr__(self) -> str:
        extra = (
            f", back to 0 % {self.breach_to_zero_s:.2f} s after the breach"
            if self.breach_to_zero_s == self.breach_to_zero_s
            else ""
        )
        return f"<RolloutResult {self.state}: {self.reason}; served {self.served}{extra}>"


@dataclass
class _Run:
    """The live rollout of one LocalFleet (``fleet._rollout``); survives an interruption so it can resume."""

    spec: FleetSpec
    steps: tuple[tuple[float, float], ...]
    guard: Guard
    result: RolloutResult
    slot: AsgEmulator
    percent: float = 0.0
    state: str = "preparing"
    # Where an interruption caught it: ``resume`` goes on from there (preparing: wait for the new slot;
    # baking: redo the current step's shift and bake; rolling_back: finish the rollback, never undo it).
    interrupted_in: str = ""
    # Set by LocalFleet.interrupt_rollout (another thread, the detached supervisor): stops it as Ctrl-C would.
    stop: threading.Event = field(default_factory=threading.Event)


class _Stopped(Exception):
    """``run.stop`` was set: the rollout stops where it is, as a Ctrl-C would, without raising to the caller."""


def run_rollout(
    fleet: LocalFleet,
    new: Any,
    *,
    strategy: Strategy | Mapping[str, Any] | None,
    guard: Guard | Mapping[str, Any] | None,
    feed: ClientFeed | None,
    emit: Callable[[RolloutEvent], None],
    resume: bool = False,
    rollback: bool = False,
    ready_timeout_s: float = 120.0,
    check_spec: Callable[[FleetSpec], None] = lambda spec: None,
) -> RolloutResult:
    """Run (or resume / roll back) a rollout on ``fleet``; see :meth:`LocalFleet.rollout`. Blocks until done."""
    run: _Run | None = fleet._rollout
    if resume or rollback:
        if run is None or run.state != "interrupted":
            raise SpecError(
                "resume" if resume else "rollback",
                "needs an interrupted rollout (fleet.status().attrs['rollout'] shows none); start one with "
                "fleet.rollout(new, strategy=..., guard=...)",
            )
        if new is not None:
            raise SpecError(
                "new", "must be None with resume/rollback: the interrupted rollout's spec is kept"
            )
        run.stop = threading.Event()
        if rollback or run.interrupted_in == "rolling_back":
            why = (
                "rolled back by request after an interruption"
                if rollback
                else run.result.reason or "rollback finished after an interruption"
            )
            _roll_back(fleet, run, why, emit)
            return run.result
        phase = run.interrupted_in
        announce = f"resumed at step {run.result.step + 1} ({run.percent:g} % on the new slot)"
    else:
        if run is not None and run.state in ("preparing", "baking", "rolling_back", "interrupted"):
            raise SpecError(
                "rollout",
                f"another rollout is {run.state} (step {run.result.step + 1}, {run.percent:g} % on the new slot): "
                "wait for it, or after an interruption call fleet.rollout(resume=True) or fleet.rollout(rollback=True)",
            )
        steps = strategy_from_dict(strategy if strategy is not None else {"kind": "canary"})
        spec = new_spec(fleet.spec, new)
        check_spec(spec)
        checked = check_guard(guard, spec, source="client" if feed is not None else "fleet")
        if feed is not None and not isinstance(feed, ClientFeed):
            raise SpecError(
                "feed", f"must be a ClientFeed passed to run_load(on_records=...) (got {type(feed).__name__})"
            )
        result = RolloutResult(
            state="preparing",
            reason="",
            strategy={"kind": steps.kind, **{k: v for k, v in vars(steps).items() if k != "kind"}},
            guard=checked.to_dict(),
            source="client" if feed is not None else "fleet",
        )
        run = _Run(spec=spec, steps=steps.steps(), guard=checked, result=result, slot=fleet._add_slot(spec))
        fleet._rollout = run
        phase = "preparing"
        announce = f"{steps.kind}: steps {[p for p, _ in run.steps]} %; launching the new slot"
    try:  # from here on a Ctrl-C leaves a named, serving state, never a bare slot
        _emit(run, emit, "start", "preparing" if phase == "preparing" else "baking", announce)
        if phase == "preparing":
            try:
                _wait_ready(fleet, run, ready_timeout_s)
            except (KeyboardInterrupt, _Stopped):
                raise
            except BaseException as exc:
                fleet._retire_slot(run.slot)
                run.state = run.result.state = "failed"
                run.result.reason = f"the new slot did not become healthy: {exc}"
                _emit(run, emit, "failed", "failed", run.result.reason)
                if isinstance(exc, ProvisionError):
                    return run.result
                raise
            _emit(run, emit, "ready", "preparing", f"{len(run.slot.healthy())} new target(s) healthy, at 0 %")
        return _shift_and_bake(fleet, run, feed, emit)
    except (KeyboardInterrupt, _Stopped) as exc:
        # Both slots keep serving at the weights they have now; the state says where it stopped.
        run.interrupted_in = run.state if run.state in ("preparing", "rolling_back") else "baking"
        run.result.reason = (
            f"interrupted while {run.interrupted_in} at step {run.result.step + 1} with {run.percent:g} % on the "
            "new slot; both slots keep serving: fleet.rollout(resume=True) or fleet.rollout(rollback=True)"
        )
        _emit(run, emit, "interrupted", "interrupted", run.result.reason)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return run.result


def _emit(
    run: _Run, emit: Callable[[RolloutEvent], None], kind: Any, state: Any, detail: str, **kw: Any
) -> None:
    run.state = run.result.state = state
    ev = rollout_event(kind, state, step=run.result.step, percent=run.percent, detail=detail, **kw)
    run.result.events.append(ev)
    emit(ev)


def _wait_ready(fleet: LocalFleet, run: _Run, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    want = run.slot.desired
    while True:
        with fleet._lock:
            healthy, failed = len(run.slot.healthy()), run.slot.failed_starts
            why = run.slot.start_failures[0] if run.slot.start_failures else ""
        if healthy >= want:
            return
        if failed >= max(3, 2 * want) or (failed and run.spec.server.kind != "model"):
            raise ProvisionError(f"{failed} new target(s) exited before passing a health check", stderr=why)
        if fleet.closed:
            raise ProvisionError("the fleet was closed while the new slot launched")
        if time.monotonic() > deadline:
            raise ProvisionError(f"only {healthy} of {want} new targets healthy after {timeout_s:g} s")
        if run.stop.wait(0.05):
            raise _Stopped


def _set_percent(fleet: LocalFleet, run: _Run, percent: float) -> float:
    """Weights for ``percent`` on the new slot, applied to both slots under the fleet's lock; returns the share."""
    with fleet._lock:
        old = fleet._asg
        assert old is not None
        if percent > 0 and run.slot.desired < fleet._capacity[1]:
            # The autoscaler sizes the serving slot only; the new slot follows its size at each shift (docs/
            # rollouts.md says why not a tracker of its own). Targets it adds join at its weight once healthy.
            run.slot.max = run.slot.desired = fleet._capacity[1]
        n_old = len([i for i in old.instances if i.state == "in_service"])
        n_new = len([i for i in run.slot.instances if i.state == "in_service"])
        w_old, w_new, got = split_weights(percent, n_old, n_new)
        # Raise before lowering: for an instant both carry weight, so HAProxy always has a server to pick.
        first, second = ((run.slot, w_new), (old, w_old)) if w_new else ((old, w_old), (run.slot, w_new))
        first[0].set_traffic_weight(first[1])
        second[0].set_traffic_weight(second[1])
    run.percent = percent
    run.result.timeline.append(
        {
            "timestamp": datetime.now(timezone.utc),
            "step": run.result.step,
            "percent": float(percent),
            "effective_percent": round(got, 2),
            "state": "baking" if percent > 0 else "rolling_back",
        }
    )
    return got


def _variant_of(fleet: LocalFleet, run: _Run) -> dict[str, str]:
    with fleet._lock:
        out = {i.id: "new" for i in run.slot.instances}
        if fleet._asg is not None:
            out.update({i.id: "old" for i in fleet._asg.instances})
    return out


def _stat_rows(fleet: LocalFleet) -> dict[str, StatRow]:
    api = fleet._api
    if api is None:
        return {}
    try:
        rows = api.show_stat()
    except OSError:
        return {}
    # A server appears in several backends (<tg>, <tg>_open when failing open, <tg>_sticky for cookie routing...);
    # each request is counted in the one that routed it, so every backend's row counts (keyed backend/server).
    return {f"{r.proxy}/{r.server}": r for r in rows if r.is_server}


def _count(run: _Run, frame: Any, variant_of: Mapping[str, str]) -> None:
    if not len(frame):
        return
    variants = frame["target"].map(lambda t: variant_of.get(t, "unknown"))
    for name, part in frame.groupby(variants):
        ok = part["error"] == ""
        run.result.served[str(name)] = run.result.served.get(str(name), 0) + int(ok.sum())
        bad = int((~part["error"].isin(("", "cancelled"))).sum())
        run.result.client_errors[str(name)] = run.result.client_errors.get(str(name), 0) + bad


def _shift_and_bake(
    fleet: LocalFleet, run: _Run, feed: ClientFeed | None, emit: Callable[[RolloutEvent], None]
) -> RolloutResult:
    guard, res = run.guard, run.result
    while res.step < len(run.steps):
        percent, bake_s = run.steps[res.step]
        got = _set_percent(fleet, run, percent)
        shifted = datetime.now(timezone.utc)
        _emit(
            run,
            emit,
            "shift",
            "baking",
            f"step {res.step + 1}/{len(run.steps)}: {percent:g} % asked, {got:.1f} % by weight; baking {bake_s:g} s",
        )
        intervals: list[dict[str, VariantStats]] = []
        ends: list[datetime] = []
        start = time.monotonic()
        before = _stat_rows(fleet) if feed is None else {}
        while True:
            if fleet.closed:
                raise ProvisionError("the fleet was closed during the rollout")
            if run.stop.wait(max(0.0, start + (len(intervals) + 1) * guard.interval_s - time.monotonic())):
                raise _Stopped
            variant_of = _variant_of(fleet, run)
            if feed is not None:
                frame = feed.take()
                _count(run, frame, variant_of)
                # Requests sent before this step's weights were set were routed by the previous step's.
                if len(frame):
                    frame = frame[frame["sent_at"] >= shifted]
                stats = client_variant_stats(frame, variant_of)
            else:
                after = _stat_rows(fleet)
                stats = fleet_variant_stats(before, after, variant_of)
                before = after
                for name, st in stats.items():  # no client records: what HAProxy saw each slot answer
                    res.served[name] = res.served.get(name, 0) + st.requests - st.errors
            intervals.append(stats)
            ends.append(datetime.now(timezone.utc))
            for name, s in stats.items():
                res.intervals.append(
                    {"timestamp": ends[-1], "step": res.step, "variant": name, **s.to_dict()}
                )
            bake_over = time.monotonic() - start >= bake_s - 1e-6
            decision = guard_decision(guard, intervals, bake_over=bake_over)
            new = stats.get("new")
            _emit(
                run,
                emit,
                "interval",
                "baking",
                f"new: {new.requests if new else 0} req, {new.errors if new else 0} err, "
                + (
                    f"mean {new.mean_s * 1e3:.1f} ms (HAProxy)"
                    if new is not None and new.p99_s != new.p99_s and new.mean_s == new.mean_s
                    else f"p99 {(new.p99_s if new else math.nan) * 1e3:.1f} ms"
                )
                + f"; {decision.action}",
                stats=stats,
            )
            if decision.action == "rollback":
                res.evidence = list(decision.evidence)
                # From the first interval of the breach that rolled back, not of the evidence window: a rollback
                # that waited would show here as a longer time.
                first = breach_start(guard, intervals)
                if first is None:  # no evidence at the bake's end: counted from that last interval
                    first = len(ends) - 1
                _emit(run, emit, "breach", "rolling_back", decision.reason, evidence=res.evidence)
                _roll_back(fleet, run, decision.reason, emit, breach_end=ends[first])
                if feed is not None:
                    _drain_feed(fleet, run, feed)
                return res
            if decision.action == "promote":
                break
        res.step += 1
    # Clean finish: the new slot serves everything; the old one is retired.
    fleet._promote_slot(run.slot, run.spec)
    res.reason = f"completed {len(run.steps)} step(s) with the guard clean"
    _emit(run, emit, "complete", "completed", res.reason + "; the old slot is draining")
    if feed is not None:
        _drain_feed(fleet, run, feed)
    return res


def _drain_feed(fleet: LocalFleet, run: _Run, feed: ClientFeed) -> None:
    """Count what the feed holds (requests finished up to now) into ``served``/``client_errors``."""
    _count(run, feed.take(), _variant_of(fleet, run))


def _roll_back(
    fleet: LocalFleet,
    run: _Run,
    reason: str,
    emit: Callable[[RolloutEvent], None],
    breach_end: datetime | None = None,
) -> None:
    run.state = "rolling_back"
    _set_percent(fleet, run, 0.0)
    zero = datetime.now(timezone.utc)
    run.result.zero_at = zero
    if breach_end is not None:
        run.result.breach_to_zero_s = (zero - breach_end).total_seconds() + run.guard.interval_s
    fleet._retire_slot(run.slot)
    run.result.reason = reason
    _emit(
        run,
        emit,
        "rollback",
        "rolled_back",
        f"new slot at 0 % and draining: {reason}",
        evidence=run.result.evidence,
    )
