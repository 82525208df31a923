"""The routing A/B on the user's own trace: replay it against each routing policy on the same fleet, compare.

One call, :func:`compare_routing`: every arm replays the same requests (the trace's arrival times, prompt blocks
and output sizes) against the same targets; only the policy changes, through ``fleet.set_routing`` (one Runtime
API ``set map`` on the local fleet, no restart). Before each arm the fleet forgets its sticky sessions and every
target empties its prefix cache (``fleet.reset_routing_state()``), and the arms run in a fresh random order in each
repeat, so neither a warm cache nor a drifting machine favours the policy that happens to run later. Per arm it
reads the targets' prefix-cache counters (vLLM's ``vllm:prefix_cache_queries_total`` / ``..._hits_total``) before
and after, so each policy's hit rate is measured, not inferred. The verdicts and the recommendation are pure
functions of the runs (:mod:`mlops_lb.analysis.routing`).

**Keys.** Each request carries its routing key: ``routing.key_header`` (``X-Prefix-Key``) for ``consistent_hash``
and the ``routing.cookie_name`` cookie for ``sticky_cookie``, both computed by this client from the trace (a hash of
the first prompt blocks, or of the session id on a multi-turn trace: :func:`mlops_lb.load.prefix_chat`). A trace
without ``hash_ids`` or sessions has no key, and a cache-aware policy on it is refused before anything starts.

Example::

    import mlops_lb as ml
    t = ml.load.trace("synthetic-multiturn", duration_s=30)
    rc = ml.compare_routing(spec, t, policies=["least_outstanding_requests", "consistent_hash"], repeats=3,
                            slo={"ttft_s": 1.0})
    rc.table, rc.verdicts, rc.recommendation
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .analysis.routing import CACHE_AWARE, RoutingComparison, routing_verdicts
from .errors import SpecError

__all__ = ["DEFAULT_POLICIES", "cli_routing", "compare_routing", "prefix_cache_counters"]

log = logging.getLogger(__name__)

DEFAULT_POLICIES = ("least_outstanding_requests", "consistent_hash", "sticky_cookie")
_ARMS = (
    "alb",
    "round_robin",
    "least_outstanding_requests",
    "weighted_random",
    "consistent_hash",
    "sticky_cookie",
)
_SLO_KEYS = ("ttft_s", "tpot_s", "latency_s")
# vLLM's prefix-cache counters (prompt tokens looked up / found cached), as the LLM emulator also serves them.
_COUNTER_RE = re.compile(r"^vllm:prefix_cache_(queries|hits)_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.M)


def prefix_cache_counters(
    addresses: Sequence[str], *, timeout_s: float = 5.0, attempts: int = 3
) -> dict[str, tuple[float, float]]:
    """``{address: (queries, hits)}`` from each target's ``/metrics`` (tokens). A target that does not answer
    after ``attempts`` tries, or has no such counters, is left out.

    Example::

        prefix_cache_counters(["127.0.0.1:9001"])     # {'127.0.0.1:9001': (5120.0, 3584.0)}
    """
    out: dict[str, tuple[float, float]] = {}
    for address in addresses:
        text = None
        for _ in range(attempts):
            try:
                with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s) as resp:
                    text = resp.read().decode(errors="replace")
                break
            except (OSError, ValueError):
                time.sleep(0.2)
        found = {m[0]: float(m[1]) for m in _COUNTER_RE.findall(text or "")}
        if "queries" in found:
            out[address] = (found["queries"], found.get("hits", 0.0))
    return out


def _hit_rate(before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]) -> float:
    """Tokens found cached / tokens looked up during an arm, over the targets read both before and after it.

    A target missing from either reading is left out: its lifetime counters would count earlier arms as this one's
    (measured: a busy target that missed the first reading lifted an arm with no shared prefix to a 45 % hit
    rate). A counter that went down means the target restarted: everything it counted is this arm's.
    """
    q = h = 0.0
    for address, (qa, ha) in after.items():
        if address not in before:
            continue
        qb, hb = before[address]
        if qa < qb:
            qb = hb = 0.0
        q += qa - qb
        h += ha - hb
    return h / q if q > 0 else math.nan


class _KeyedBodies:
    """The trace's bodies with both routing keys: ``key_header`` (from :func:`prefix_chat`) and the session
    cookie ``cookie_name=<key>``, so every arm sends byte-identical requests. Picklable (worker processes)."""

    def __init__(self, inner: Any, cookie_name: str) -> None:
        self.inner = inner
        self.cookie_name = cookie_name

    def __len__(self) -> int:
        return len(self.inner)

    def __call__(self, i: int) -> Any:
        from .load._wire import Keyed

        k = self.inner(i)
        return Keyed(k.body, (*k.headers, ("Cookie", f"{self.cookie_name}={self.inner.key(i)}")))


def _check_arguments(
    policies: Sequence[str], baseline: str | None, repeats: Any, slo: Any
) -> tuple[list[str], str]:
    if isinstance(policies, str) or not isinstance(policies, Sequence):
        raise SpecError("policies", f"must be a list of policy names (got {policies!r})")
    pols = list(policies)
    for p in pols:
        if p not in _ARMS:
            import difflib

            close = difflib.get_close_matches(str(p), _ARMS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError("policies", f"has unknown policy {p!r}: known {', '.join(_ARMS)}{hint}")
    if len(set(pols)) != len(pols) or len(pols) < 2:
        raise SpecError("policies", f"must name at least two different policies (got {pols})")
    if baseline is None:
        baseline = next((p for p in pols if p not in CACHE_AWARE), pols[0])
    if baseline not in pols:
        raise SpecError("baseline", f"must be one of policies {pols} (got {baseline!r})")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 50:
        raise SpecError("repeats", f"must be an integer from 1 to 50 (got {repeats!r})")
    if not isinstance(slo, Mapping) or not slo:
        raise SpecError("slo", "must be a mapping such as {'ttft_s': 1.0} (goodput needs a bound)")
    for k, v in slo.items():
        if k not in _SLO_KEYS:
            raise SpecError("slo", f"has unknown key {k!r} (known: {', '.join(_SLO_KEYS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise SpecError(f"slo.{k}", f"must be a positive number of seconds (got {v!r})")
    return pols, baseline


def _trace_of(trace: Any) -> Any:
    from .load.trace import TraceProfile

    if isinstance(trace, str):
        from .load import trace as load_trace

        trace = load_trace(trace)
    if not isinstance(trace, TraceProfile):
        raise SpecError(
            "trace",
            f"must be a trace (ml.load.trace(...)) or a shipped trace's name (got {type(trace).__name__})",
        )
    return trace


def _has_key(trace: Any) -> bool:
    return bool(getattr(trace, "hash_ids", ()) or getattr(trace, "sessions", ()))


def compare_routing(
    fleet_or_spec: Any,
    trace: Any,
    *,
    policies: Sequence[str] = DEFAULT_POLICIES,
    baseline: str | None = None,
    repeats: int = 3,
    slo: Mapping[str, float],
    payloads: Callable[[int], Any] | None = None,
    model: str = "emulated",
    block_tokens: int | None = None,
    key: str = "auto",
    path: str = "/v1/chat/completions",
    flush: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    idle_s: float = 1.0,
    warmup_s: float = 0.0,
    confidence: float = 0.95,
    on_arm: Callable[[dict[str, Any]], None] | None = None,
    **load_kwargs: Any,
) -> RoutingComparison:
    """Replay ``trace`` against each of ``policies`` on one fleet, ``repeats`` times, and compare them.

    ``fleet_or_spec``: a launched fleet with ``set_routing`` (the local backend), or a FleetSpec, launched here on
    the local backend and closed at the end. ``baseline`` (default: the first policy that is not cache-aware) is
    what each other policy is compared with. ``payloads`` replaces the bodies built from the trace
    (:func:`mlops_lb.load.prefix_chat` with ``model``, ``block_tokens`` and ``key``); they must send the fleet's
    ``routing.key_header`` for ``consistent_hash``. ``flush`` empties the targets' prefix caches and sticky sessions
    before each arm; ``shuffle`` runs the arms in a new random order each repeat (``seed``). ``on_arm(row)`` gets
    each arm's summary as it ends. Other keywords go to ``run_load``.

    Returns a :class:`~mlops_lb.analysis.routing.RoutingComparison`: per policy goodput, TTFT/TPOT p99 (with
    intervals), error and shed shares and the prefix-cache hit rate; per cache-aware policy the comparison with the
    baseline and a verdict; and a recommendation that says when cache-aware routing is not worth its tier.

    Example::

        rc = compare_routing(fleet, load.trace("mooncake-conv-2025", duration_s=40), repeats=3,
                             slo={"ttft_s": 2.0}, block_tokens=32)
        rc.recommendation
    """
    pols, baseline = _check_arguments(policies, baseline, repeats, slo)
    trace = _trace_of(trace)
    cache_aware = [p for p in pols if p in CACHE_AWARE]
    if cache_aware and payloads is None and not _has_key(trace):
        raise SpecError(
            "trace",
            f"carries no prefix or session key, so {', '.join(cache_aware)} would have nothing to route on: use a "
            "trace with hash_ids or sessions (ml.load.trace('mooncake-conv-2025'), 'synthetic-multiturn'), give "
            "payloads= whose requests send the key header, or compare only round_robin, "
            "least_outstanding_requests and weighted_random",
        )
    from .fleet import Fleet
    from .spec import FleetSpec

    if isinstance(fleet_or_spec, FleetSpec):
        spec = fleet_or_spec
        _check_spec(spec, cache_aware)
        from .fleet import open_fleet

        with open_fleet(spec, backend="local") as fleet:
            fleet.launch()
            return compare_routing(
                fleet, trace, policies=pols, baseline=baseline, repeats=repeats, slo=slo, payloads=payloads,
                model=model, block_tokens=block_tokens, key=key, path=path, flush=flush, shuffle=shuffle,
                seed=seed, idle_s=idle_s, warmup_s=warmup_s, confidence=confidence, on_arm=on_arm, **load_kwargs,
            )  # fmt: skip
    fleet = fleet_or_spec
    if not isinstance(fleet, Fleet) or not callable(getattr(fleet, "set_routing", None)):
        raise SpecError(
            "fleet_or_spec",
            f"must be a FleetSpec or a launched fleet that can switch routing at run time (fleet.set_routing); "
            f"got {type(fleet).__name__}",
        )
    spec = fleet.spec
    _check_spec(spec, cache_aware)
    bodies = payloads if payloads is not None else _bodies(spec, trace, model, block_tokens, key)
    return _run_arms(
        fleet, trace, bodies, pols, baseline, repeats, dict(slo), path=path, flush=flush, shuffle=shuffle,
        seed=seed, idle_s=idle_s, warmup_s=warmup_s, confidence=confidence, on_arm=on_arm, load_kwargs=load_kwargs,
    )  # fmt: skip


def _check_spec(spec: Any, cache_aware: Sequence[str]) -> None:
    if cache_aware and spec.server.kind == "model":
        raise SpecError(
            "server.kind",
            f"is 'model', which has no prompt prefix or session to route on: {', '.join(cache_aware)} needs an "
            "LLM server (server.kind llm-emulator, or your own with kind command)",
        )


def _bodies(spec: Any, trace: Any, model: str, block_tokens: int | None, key: str) -> Any:
    from .load import prefix_chat

    kw: dict[str, Any] = {"model": model, "profile": trace, "key": key, "key_header": spec.routing.key_header}
    if block_tokens is not None:
        kw["block_tokens"] = block_tokens
    return _KeyedBodies(prefix_chat(**kw), spec.routing.cookie_name)


def _addresses(fleet: Any) -> list[str]:
    st = fleet.status()
    if "address" not in st.columns:
        return []
    return [str(a) for a in st.loc[st["state"] == "in_service", "address"]]


def _wait_idle(fleet: Any, min_s: float, max_s: float = 30.0) -> None:
    """At least ``min_s``, then until no request is in flight (``status()["sessions"]``): a backlog left by one arm
    must not count against the next (``experiments.wait_idle``'s rule; this module sits beside it)."""
    t0 = time.monotonic()
    time.sleep(min_s)
    while time.monotonic() - t0 < max_s:
        st = fleet.status()
        if "sessions" not in st.columns or float(st["sessions"].fillna(0).sum()) == 0:
            return
        time.sleep(0.25)


def _run_arms(
    fleet: Any,
    trace: Any,
    bodies: Any,
    pols: list[str],
    baseline: str,
    repeats: int,
    slo: dict[str, float],
    *,
    path: str,
    flush: bool,
    shuffle: bool,
    seed: int,
    idle_s: float,
    warmup_s: float,
    confidence: float,
    on_arm: Callable[[dict[str, Any]], None] | None,
    load_kwargs: Mapping[str, Any],
) -> RoutingComparison:
    from .load import run_load

    rng = random.Random(seed)
    runs: dict[str, list[Any]] = {p: [] for p in pols}
    hits: dict[str, list[float]] = {p: [] for p in pols}
    arms: list[dict[str, Any]] = []
    # Lag tolerance 100 ms, as run_trial: TTFT counts from the intended send time, so a late send still counts.
    kwargs: dict[str, Any] = {"connections": 256, "timeout_s": 30.0, "progress": False, "max_lag_p99_s": 0.1}
    kwargs.update(load_kwargs)
    cold = True
    for r in range(repeats):
        order = list(pols)
        if shuffle:
            rng.shuffle(order)
        for policy in order:
            switch_s = fleet.set_routing(policy)
            reset: dict[str, int] = {}
            if flush and callable(getattr(fleet, "reset_routing_state", None)):
                reset = fleet.reset_routing_state()
                cold = cold and reset.get("caches_reset", 0) >= reset.get("targets", 0)
            _wait_idle(fleet, idle_s)
            addresses = _addresses(fleet)
            before = prefix_cache_counters(addresses)
            t0 = time.monotonic()
            result = run_load(fleet.url + path, trace, bodies, slo=slo, **kwargs)
            after = prefix_cache_counters(addresses)
            rate = _hit_rate(before, after)
            measured = len(set(before) & set(after))
            runs[policy].append(result)
            hits[policy].append(rate)
            s = result.summary()
            row = {
                "repeat": r,
                "policy": policy,
                "switch_ms": switch_s * 1000,
                "caches_reset": reset.get("caches_reset"),
                "seconds": time.monotonic() - t0,
                "requests": s.get("requests"),
                "goodput_rps": s.get("goodput_rps"),
                "ttft_p99_s": s.get("ttft_p99_s"),
                "hit_rate": rate,
                "hit_rate_targets": measured,
                "valid": getattr(result, "valid", None),
            }
            arms.append(row)
            log.info("routing A/B repeat %d %s: %s", r, policy, row)
            if on_arm is not None:
                on_arm(row)
    rc = routing_verdicts(
        runs, hits, baseline=baseline, slo=slo, offered_rps=None, confidence=confidence, warmup_s=warmup_s
    )
    import dataclasses

    details = {
        **rc.details,
        "arms": arms,
        "cold_arms": cold if flush else False,
        "order": "random per repeat" if shuffle else "fixed",
    }
    return dataclasses.replace(rc, details=details)


def cli_routing(args: Any) -> int:
    """``mlops-lb routing SPEC --trace NAME --slo ttft_s=0.5``: run the A/B on the local fleet, print the table,
    the verdicts and the recommendation; 0 whatever the verdict, 2 on bad input (before anything starts)."""
    from .load import trace as load_trace
    from .spec import FleetSpec

    slo: dict[str, float] = {}
    for item in args.slo or []:
        k, sep, v = item.partition("=")
        try:
            slo[k.strip()] = float(v)
        except ValueError:
            sep = ""
        if not sep:
            raise SpecError("--slo", f"must look like ttft_s=0.5 (got {item!r})")
    spec = FleetSpec.from_yaml(args.spec)
    t = load_trace(args.trace, duration_s=args.duration_s) if args.duration_s else load_trace(args.trace)
    rc = compare_routing(
        spec, t, policies=[p.strip() for p in args.policies.split(",") if p.strip()], repeats=args.repeats,
        slo=slo, block_tokens=args.block_tokens,
    )  # fmt: skip
    cols = ["policy", "goodput_rps", "goodput_rps_lo", "goodput_rps_hi", "ttft_p99_s", "ttft_p99_s_lo",
            "ttft_p99_s_hi", "hit_rate", "shed_share", "error_share"]  # fmt: skip
    print(rc.table[cols].to_string(index=False))
    for p, v in rc.verdicts.items():
        print(f"{p} vs {rc.baseline}: {v}")
    print(rc.recommendation)
    return 0
