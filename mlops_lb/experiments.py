"""Experiments that run load many times: the SLO capacity search, repeated runs, configuration sweeps.

This module sits at the session layer: it drives a fleet and ``run_load``; every decision (which rate next, whether
a trial passed, what a run cost per token, which variant is best) is a pure function in :mod:`mlops_lb.analysis`.

* :func:`capacity_search` — the highest arrival rate whose goodput stays ≥ ``fraction`` of offered load under the
  SLO, for one configuration at a pinned capacity (min = desired = max), the fleet reused and left idle between
  trials; a trial counts only if its run is VALID; an over-saturated trial is stopped early; every trial reported.
* :func:`run_repeats` — the same run ``repeats`` times, with an interval for every headline figure.
* :func:`sweep_configs` — each variant of a spec (local: replicas, ``max_num_seqs``, routing, scaling target, server
  flags; AWS: also instance types, costed and confirmed before anything launches) searched or loaded with one
  profile; a tidy frame, Pareto plots and a recommendation that states its reasoning.

Example::

    import mlops_lb as ml
    with ml.open_fleet(spec) as fleet:
        fleet.launch()
        r = ml.capacity_search(fleet, slo={"ttft_s": 0.5, "tpot_s": 0.05}, instances=1, start_rps=4,
                               price_as="g6.xlarge")
    r.capacity_rps, r.trials_frame()
    sweep = ml.sweep_configs(spec, variants=[{"name": "2 replicas", "replicas": 2}, ...],
                             profile=ml.load.constant(10, 20), slo={"ttft_s": 0.5})
    sweep.frame, sweep.recommendation, sweep.pareto_plot()
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis.economics import good_tokens, token_cost
from .analysis.pricing import _lookup
from .analysis.search import SearchResult, SloSearch, Trial, judge_trial
from .errors import SpecError

__all__ = [
    "DEFAULT_WORKLOAD",
    "SweepResult",
    "capacity_search",
    "estimate_sweep_cost",
    "recommend",
    "run_repeats",
    "run_trial",
    "sweep_configs",
    "wait_for_capacity",
    "wait_idle",
]

log = logging.getLogger(__name__)

# Chat requests like notebook 05's: short prompts, 8-48 output tokens, streamed with usage.
DEFAULT_WORKLOAD: Mapping[str, Any] = {
    "model": "emulated",
    "prompt_tokens": 64,
    "max_tokens": (8, 48),
    "seed": 1,
    "stream": True,
}


# --------------------------------------------------------------------------- one trial
def _bodies(workload: Mapping[str, Any], n: int, seed_offset: int = 0) -> tuple[list[bytes], list[int]]:
    from .load import openai_chat
    from .serving.llm_app import count_tokens

    wl = dict(workload)
    wl["seed"] = int(wl.get("seed", 0)) + seed_offset
    bodies = openai_chat(n=max(1, n), **wl)
    prompt_tokens = [count_tokens(json.loads(b)["messages"][-1]["content"]) for b in bodies]
    return bodies, prompt_tokens


def wait_for_capacity(fleet: Any, n: int, *, timeout_s: float = 120.0) -> float:
    """Pin capacity at ``n`` (min = desired = max) and wait until ``n`` targets are in service and healthy.

    Returns the seconds it took; raises TimeoutError naming what it saw.

    Example::

        wait_for_capacity(fleet, 2)
    """
    t0 = time.monotonic()
    fleet.scale(min=n, desired=n, max=n)
    seen = -1
    while time.monotonic() - t0 < timeout_s:
        st = fleet.status()
        seen = int(((st["state"] == "in_service") & (st["health"] == "healthy")).sum())
        live = int((st["state"] != "terminated").sum())
        if seen == n and live == n:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise TimeoutError(f"capacity pinned at {n} but {seen} targets were healthy after {timeout_s:g} s")


def wait_idle(fleet: Any, *, min_s: float = 1.0, max_s: float = 30.0) -> float:
    """Wait until no request is in flight on any target (``status()["sessions"]`` sums to 0, where the backend
    reports it), at least ``min_s`` and at most ``max_s`` seconds: an over-saturated trial leaves a backlog that
    would otherwise count against the next one. Returns the seconds waited.

    Example::

        wait_idle(fleet)
    """
    t0 = time.monotonic()
    time.sleep(min_s)
    while time.monotonic() - t0 < max_s:
        try:
            st = fleet.status()
        except Exception:  # a status read failing must not fail the experiment; the fixed wait stands
            break
        if "sessions" not in st.columns or float(st["sessions"].fillna(0).sum()) == 0:
            break
        time.sleep(0.25)
    return time.monotonic() - t0


def run_trial(
    fleet: Any,
    rate_rps: float,
    *,
    duration_s: float,
    slo: Mapping[str, float],
    workload: Mapping[str, Any] = DEFAULT_WORKLOAD,
    path: str = "/v1/chat/completions",
    instances: int = 1,
    fraction: float = 0.99,
    early_stop: bool = True,
    seed_offset: int = 0,
    arrival: str = "poisson",
    run: Callable[..., Any] | None = None,
    **load_kwargs: Any,
) -> tuple[Trial, Any]:
    """One constant-rate run against ``fleet``, judged (:func:`mlops_lb.analysis.search.judge_trial`).

    With ``early_stop`` the run is stopped once three consecutive intervals (after the first three) have a TTFT
    p99 above four times the SLO's TTFT bound (or E2E p99 above four times ``latency_s``): the fleet is
    over-saturated, and waiting out the rest of the run would only queue more. The trial's summary gains
    ``good_output_tokens``, ``input_tokens`` and ``instance_seconds`` for the token cost.

    Example::

        trial, result = run_trial(fleet, 8.0, duration_s=20, slo={"ttft_s": 0.5})
    """
    from .load import constant
    from .load import run_load as _run_load

    run = run or _run_load
    # Poisson arrivals with a seed per trial: repeated runs differ as real traffic would (an A/A pair of
    # identical schedules would understate run-to-run variation).
    profile = constant(rate_rps, duration_s, arrival=arrival, seed=seed_offset)
    n = max(1, math.ceil(rate_rps * duration_s * 1.2) + 10)
    bodies, prompt_tokens = _bodies(workload, n, seed_offset)
    stop = threading.Event()
    bound_key, bound = (
        ("ttft_p99_s", slo.get("ttft_s")) if "ttft_s" in slo else ("p99_s", slo.get("latency_s"))
    )
    over: dict[str, Any] = {"n": 0, "seen": 0, "stopped": False}

    def on_interval(row: dict[str, Any]) -> None:
        over["seen"] += 1
        v = row.get(bound_key)
        if bound and over["seen"] > 3 and v is not None and v == v and v > 4 * bound:
            over["n"] += 1
            if over["n"] >= 3 and not stop.is_set():
                over["stopped"] = True
                log.info("trial at %.3g rps over-saturated: stopping early", rate_rps)
                stop.set()
        else:
            over["n"] = 0

    # Lag tolerance 100 ms: LLM SLOs are hundreds of ms and TTFT is measured from the *intended* send time, so a
    # late send still counts against the fleet; a shared 2-core laptop misses run_load's 3 ms default at 4 rps.
    kwargs: dict[str, Any] = {"connections": 256, "timeout_s": 30.0, "progress": False, "max_lag_p99_s": 0.1}
    kwargs.update(load_kwargs)
    t0 = time.monotonic()
    result = run(
        fleet.url + path,
        profile,
        bodies,
        slo=dict(slo),
        on_interval=on_interval if early_stop else None,
        stop=stop,
        **kwargs,
    )
    seconds = time.monotonic() - t0
    summary = dict(result.summary())
    req = result.requests()
    _, good = good_tokens(req, slo)
    sent = int(summary.get("requests", 0))
    summary["good_output_tokens"] = good
    summary["input_tokens"] = int(sum(prompt_tokens[i % len(prompt_tokens)] for i in range(sent)))
    summary["instance_seconds"] = instances * float(summary.get("duration_s", duration_s))
    summary["instances"] = instances
    trial = judge_trial(
        rate_rps, summary, fraction=fraction, stopped_early=bool(over["stopped"]), seconds=seconds
    )
    return trial, result


# --------------------------------------------------------------------------- capacity search
def _price_check(price_as: str | None, region: str) -> None:
    if price_as is not None:
        _lookup(price_as, region)  # raises a SpecError naming how to add the price, before anything runs


def _trial_cost(trial: Trial, price_as: str | None, region: str, local: bool) -> dict[str, float]:
    if price_as is None:
        return {}
    s = trial.summary
    c = token_cost(
        instance_type=price_as,
        region=region,
        instance_seconds=float(s.get("instance_seconds", 0.0)),
        output_tokens=int(s.get("output_tokens", 0)),
        good_output_tokens=int(s.get("good_output_tokens", 0)),
        input_tokens=int(s.get("input_tokens", 0)),
        requests=int(s.get("requests", 0)),
        good_requests=int(s.get("requests_meeting_slo", 0)),
        local=local,
    )
    return {
        "usd_per_million_output_tokens": c.usd_per_million_output_tokens,
        "usd_per_million_good_tokens": c.usd_per_million_good_output_tokens,
        "usd_per_million_tokens_gke": c.usd_per_million_tokens_gke,
        "usd_per_million_requests": c.usd_per_million_requests,
        "cost_basis": c.label,  # type: ignore[dict-item]
    }


def capacity_search(
    fleet: Any,
    *,
    slo: Mapping[str, float],
    instances: int = 1,
    fraction: float = 0.99,
    start_rps: float = 4.0,
    duration_s: float = 20.0,
    resolution: float = 0.1,
    growth: float = 2.0,
    min_rps: float | None = None,
    max_rps: float | None = None,
    max_trials: int = 10,
    idle_s: float = 3.0,
    workload: Mapping[str, Any] = DEFAULT_WORKLOAD,
    path: str = "/v1/chat/completions",
    price_as: str | None = None,
    region: str = "us-east-1",
    on_trial: Callable[[Trial], None] | None = None,
    repeats: int = 1,
    run: Callable[..., Any] | None = None,
    **load_kwargs: Any,
) -> SearchResult:
    """Find the highest rate at which goodput ≥ ``fraction`` × offered under ``slo``, at ``instances`` pinned.

    The fleet must be launched; its capacity is pinned (min = desired = max = ``instances``) before the first trial
    and, between trials, left idle for ``idle_s`` seconds and until no request is in flight (:func:`wait_idle`), so
    one trial's queue does not leak into the next. The
    strategy is :class:`mlops_lb.analysis.search.SloSearch` (bracket, then bisect). ``price_as`` (an instance type in
    the price table) adds each trial's cost per 1M good tokens — "as if priced at" that type on a local fleet.
    ``repeats`` > 1 runs the whole search again and reports the capacities' mean and interval in ``extra``.

    Example::

        r = capacity_search(fleet, slo={"ttft_s": 0.5, "tpot_s": 0.05}, start_rps=4, price_as="g6.xlarge")
        r.capacity_rps, r.trials_frame()[["rate_rps", "verdict", "good_fraction", "usd_per_million_good_tokens"]]
    """
    if not slo:
        raise SpecError(
            "slo", "must bound at least one of ttft_s, tpot_s, latency_s: capacity is 'under the SLO'"
        )
    if not (isinstance(instances, int) and instances >= 1):
        raise SpecError("instances", f"must be an integer >= 1 (got {instances!r})")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise SpecError("repeats", f"must be an integer >= 1 (got {repeats!r})")
    _price_check(price_as, region)
    local = type(fleet).__name__ != "AwsFleet"
    wait_for_capacity(fleet, instances)
    results: list[SearchResult] = []
    for rep in range(repeats):
        search = SloSearch(
            start_rps=start_rps,
            fraction=fraction,
            growth=growth,
            resolution=resolution,
            min_rps=min_rps,
            max_rps=max_rps,
            max_trials=max_trials,
        )
        trials: list[Trial] = []
        while (rate := search.next_rate(trials)) is not None:
            trial, _ = run_trial(
                fleet,
                rate,
                duration_s=duration_s,
                slo=slo,
                workload=workload,
                path=path,
                instances=instances,
                fraction=fraction,
                seed_offset=100 * rep + len(trials),
                run=run,
                **load_kwargs,
            )
            cost = _trial_cost(trial, price_as, region, local)
            if cost:
                trial = Trial(**{**trial.__dict__, "summary": {**trial.summary, **cost}})
            trials.append(trial)
            log.info("trial %d at %.3g rps: %s (%s)", len(trials), rate, trial.verdict, trial.reason)
            if on_trial is not None:
                on_trial(trial)
            wait_idle(fleet, min_s=idle_s)
        results.append(search.result(trials, instances=instances, price_as=price_as, region=region))
    first = results[0]
    if repeats == 1:
        return first
    caps = [r.capacity_rps for r in results if not math.isnan(r.capacity_rps)]
    from .analysis.compare import t_quantile

    mean = sum(caps) / len(caps) if caps else math.nan
    sd = (sum((c - mean) ** 2 for c in caps) / (len(caps) - 1)) ** 0.5 if len(caps) > 1 else math.nan
    half = t_quantile(0.975, len(caps) - 1) * sd / len(caps) ** 0.5 if len(caps) > 1 else math.nan
    all_trials = tuple(t for r in results for t in r.trials)
    return SearchResult(
        capacity_rps=mean,
        lower_rps=min(caps) if caps else math.nan,
        upper_rps=max(r.upper_rps for r in results),
        fraction=fraction,
        stop_reason=f"{repeats} searches; capacities {[round(c, 3) for c in caps]}",
        trials=all_trials,
        instances=instances,
        extra={
            "capacities": caps,
            "capacity_ci95": (mean - half, mean + half),
            "method": f"across {len(caps)} searches (mean ± t x standard error)",
            "price_as": price_as,
        },
    )


def run_repeats(
    fleet: Any,
    rate_rps: float,
    *,
    repeats: int,
    duration_s: float,
    slo: Mapping[str, float],
    usd_per_hour: float | None = None,
    idle_s: float = 3.0,
    **trial_kwargs: Any,
) -> tuple[list[Any], Any]:
    """Run the same constant-rate load ``repeats`` times; return the results and the interval table
    (:func:`mlops_lb.analysis.compare.run_intervals`: within-run blocks below 5 repeats, across runs from 5).

    Example::

        results, table = run_repeats(fleet, 8, repeats=5, duration_s=30, slo={"ttft_s": 0.5})
    """
    from .analysis.compare import run_intervals

    if not (isinstance(repeats, int) and repeats >= 1):
        raise SpecError("repeats", f"must be an integer >= 1 (got {repeats!r})")
    results: list[Any] = []
    for i in range(repeats):
        _, res = run_trial(fleet, rate_rps, duration_s=duration_s, slo=slo, seed_offset=i, **trial_kwargs)
        results.append(res)
        wait_idle(fleet, min_s=idle_s)
    return results, run_intervals(results if repeats > 1 else results[0], slo=slo, usd_per_hour=usd_per_hour)


# --------------------------------------------------------------------------- sweeps
_SHORTCUTS = {
    "max_num_seqs": "server.llm.max_num_seqs",
    "decode_ms_per_token": "server.llm.decode_ms_per_token",
    "algorithm": "target_group.algorithm",
    "instance_type": "instance.type",
    "target_concurrency_per_target": "scaling.target_concurrency_per_target",
    "target_rps_per_target": "scaling.target_rps_per_target",
}


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _variant_spec(spec: Any, variant: Mapping[str, Any]) -> tuple[str, Any, int]:
    from .spec import FleetSpec

    name = str(variant.get("name") or ", ".join(f"{k}={v}" for k, v in variant.items()))
    d = copy.deepcopy(spec.to_dict())
    replicas = variant.get("replicas")
    for k, v in variant.items():
        if k in ("name", "replicas"):
            continue
        _set_dotted(d, _SHORTCUTS.get(k, k), v)
    if replicas is not None:
        d.setdefault("capacity", {})
        d["capacity"].update({"min": replicas, "desired": replicas, "max": replicas})
    try:
        vspec = FleetSpec.from_dict(d)
    except SpecError as exc:
        raise SpecError(f"variants[{name!r}]", f"is not a valid spec: {exc}") from exc
    return name, vspec, int(vspec.capacity.desired)


def estimate_sweep_cost(
    spec: Any,
    variants: Sequence[Mapping[str, Any]],
    *,
    seconds_per_variant: float,
    launch_overhead_s: float = 600.0,
) -> Any:
    """AWS cost of a sweep before anything launches: per variant, instances × hourly price × (run time + launch
    overhead, default 10 min for boot, health checks and teardown), plus the ALB hour. Raises SpecError naming the
    variant for a type the price table does not know.

    Example::

        estimate_sweep_cost(spec, [{"instance_type": "g5.xlarge"}, {"instance_type": "g6.xlarge"}],
                            seconds_per_variant=600)["usd"].sum()
    """
    import pandas as pd

    from .analysis.pricing import ALB_HOUR

    region = spec.region or "us-east-1"
    rows = []
    for v in variants:
        name, vspec, n = _variant_spec(spec, v)
        try:
            price = _lookup(vspec.instance.type, region)
        except SpecError as exc:
            raise SpecError(f"variants[{name!r}].instance_type", str(exc)) from exc
        try:
            alb = _lookup(ALB_HOUR, region).usd_per_hour
        except SpecError:
            alb = 0.0
        hours = (seconds_per_variant + launch_overhead_s) / 3600.0
        rows.append(
            {
                "variant": name,
                "instance_type": vspec.instance.type,
                "instances": n,
                "usd_per_hour": price.usd_per_hour,
                "hours": hours,
                "usd": n * price.usd_per_hour * hours + alb * hours,
                "price_source": price.source,
                "price_as_of": price.as_of,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """A sweep's tidy frame (one row per variant), its Pareto fronts and a recommendation with its reasoning.

    Example::

        s = sweep_configs(spec, variants=[...], profile=ml.load.constant(10, 20), slo={"ttft_s": 0.5})
        s.frame[["variant", "ttft_p99_s", "usd_per_million_good_tokens", "pareto_cost_ttft"]]
        print(s.recommendation)
        s.pareto_plot()
    """

    frame: Any
    recommendation: str
    recommended: str | None
    backend: str
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def pareto_plot(self) -> Any:
        """Two panels: cost per 1M good tokens vs TTFT p99 (both lower is better); tokens/s per user vs tokens/s
        per instance (both higher is better). Pareto-optimal variants are filled and joined."""
        from matplotlib.figure import Figure

        f = self.frame
        fig = Figure(figsize=(11, 4.5))
        ax1, ax2 = fig.subplots(1, 2)
        panels = (
            (ax1, "ttft_p99_s", "usd_per_million_good_tokens", "pareto_cost_ttft", "TTFT p99 (s)",
             "$ / 1M good output tokens"),
            (ax2, "tokens_per_s_per_instance", "tokens_per_s_per_user", "pareto_throughput",
             "output tokens/s per instance", "output tokens/s per user"),
        )  # fmt: skip
        for ax, x, y, flag, xl, yl in panels:
            for _, r in f.iterrows():
                on = bool(r.get(flag, False))
                ax.scatter(r[x], r[y], s=60, color="tab:green" if on else "tab:gray", zorder=3)
                ax.annotate(
                    str(r["variant"]), (r[x], r[y]), textcoords="offset points", xytext=(5, 5), fontsize=8
                )
            front = f[f[flag].astype(bool)].sort_values(x)
            ax.plot(front[x], front[y], color="tab:green", alpha=0.6)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
        basis = self.details.get("cost_basis", "")
        fig.suptitle(f"Which fleet? {self.recommended or 'none met the SLO'}  ({basis})", fontsize=10)
        return fig

    def __repr__(self) -> str:
        return f"SweepResult({len(self.frame)} variants on {self.backend}; {self.recommendation})"


def _pareto(df: Any, x: str, y: str, *, minimize: tuple[bool, bool]) -> list[bool]:
    import numpy as np

    xs = df[x].to_numpy(dtype=float) * (1 if minimize[0] else -1)
    ys = df[y].to_numpy(dtype=float) * (1 if minimize[1] else -1)
    out = []
    for i in range(len(df)):
        if np.isnan(xs[i]) or np.isnan(ys[i]):
            out.append(False)
            continue
        dominated = any(
            (xs[j] <= xs[i] and ys[j] <= ys[i] and (xs[j] < xs[i] or ys[j] < ys[i]))
            for j in range(len(df))
            if j != i and not (np.isnan(xs[j]) or np.isnan(ys[j]))
        )
        out.append(not dominated)
    return out


def recommend(frame: Any, *, backend: str, price_as: str | None, fraction: float) -> tuple[str | None, str]:
    """Pick the variant with the lowest $ per 1M good tokens among those that met the SLO; say why, in words.

    Example::

        name, why = recommend(sweep.frame, backend="local", price_as="g6.xlarge", fraction=0.99)
    """
    f = frame
    ok = f[f["met_slo"].astype(bool)]
    excluded = [str(v) for v in f.loc[~f["met_slo"].astype(bool), "variant"]]
    if ok.empty:
        return None, (
            f"No variant kept goodput ≥ {fraction:.0%} of offered under the SLO"
            + (f" (excluded: {', '.join(excluded)})" if excluded else "")
            + ". Loosen the SLO, lower the rate or add capacity."
        )
    ranked = ok.sort_values(["usd_per_million_good_tokens", "ttft_p99_s"])
    best = ranked.iloc[0]
    parts = [
        f"Recommended: {best['variant']} — lowest $ per 1M good output tokens "
        f"({best['usd_per_million_good_tokens']:.4g}) among the {len(ok)} variant(s) that met the SLO "
        f"(goodput {best['good_fraction']:.1%} of offered, TTFT p99 {best['ttft_p99_s']:.3g} s)."
    ]
    if len(ranked) > 1:
        nxt = ranked.iloc[1]
        rel = nxt["usd_per_million_good_tokens"] / best["usd_per_million_good_tokens"] - 1
        parts.append(
            f"Runner-up: {nxt['variant']} costs {rel:+.0%} per good token"
            f" with TTFT p99 {nxt['ttft_p99_s']:.3g} s."
        )
    if excluded:
        parts.append(f"Excluded for missing the SLO: {', '.join(excluded)}.")
    if backend == "local":
        parts.append(
            f"Costs are as if priced at {price_as}: a local run compares configurations on this machine and never "
            "recommends an instance type."
        )
    return str(best["variant"]), " ".join(parts)


def sweep_configs(
    spec: Any,
    *,
    variants: Sequence[Mapping[str, Any]],
    slo: Mapping[str, float],
    profile: Any = None,
    search: Mapping[str, Any] | None = None,
    backend: str = "local",
    price_as: str | None = None,
    region: str | None = None,
    fraction: float = 0.99,
    workload: Mapping[str, Any] = DEFAULT_WORKLOAD,
    path: str = "/v1/chat/completions",
    budget_usd: float | None = None,
    confirm: Callable[[Any], bool] | None = None,
    repeats: int = 1,
    idle_s: float = 2.0,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
    open_fleet: Callable[..., Any] | None = None,
    **load_kwargs: Any,
) -> SweepResult:
    """Run each variant of ``spec`` and compare them on cost per good token, latency and throughput.

    A variant is a dict of overrides: ``name``, ``replicas`` (pins min = desired = max), ``max_num_seqs``,
    ``decode_ms_per_token``, ``algorithm``, ``target_concurrency_per_target``, ``target_rps_per_target``,
    ``instance_type`` (AWS only), or any dotted spec path (``"server.llm.prefill_ms_per_token": 2``). Either
    ``profile`` (a constant-rate profile; every variant gets the same load) or ``search`` (keyword arguments for
    :func:`capacity_search`; every variant is searched and judged at its capacity) says what each variant runs.

    Everything is validated before any fleet starts: bad overrides name the variant; a GPU instance type on the
    local backend is refused (this machine has no GPU, and a local run never recommends a type); on AWS the whole
    sweep is costed first (:func:`estimate_sweep_cost`), refused when above ``budget_usd``, and run only if
    ``confirm(estimate)`` returns True (there is no default: an AWS sweep without ``confirm`` is refused).
    ``repeats`` > 1 runs each variant's profile that many times and adds interval columns.

    Example::

        s = sweep_configs(spec, variants=[{"name": "1x4", "replicas": 1, "max_num_seqs": 4},
                                          {"name": "2x4", "replicas": 2, "max_num_seqs": 4}],
                          profile=ml.load.constant(12, 20), slo={"ttft_s": 0.5, "tpot_s": 0.05},
                          price_as="g6.xlarge")
    """
    import pandas as pd

    from .spec import is_gpu_instance_type

    if (profile is None) == (search is None):
        raise SpecError("profile", "give exactly one of profile= (same load for every variant) or search=")
    if not variants:
        raise SpecError("variants", "must list at least one variant (a dict of spec overrides)")
    if not slo:
        raise SpecError("slo", "must bound at least one of ttft_s, tpot_s, latency_s")
    if backend not in ("local", "aws"):
        raise SpecError("backend", f"must be 'local' or 'aws' (got {backend!r})")
    region = region or spec.region or "us-east-1"
    rate = duration = 0.0
    if profile is not None:
        rate, duration = _constant_of(profile)
    # ---- validate every variant before anything launches
    built = []
    names = set()
    for v in variants:
        name, vspec, n = _variant_spec(spec, v)
        if name in names:
            raise SpecError("variants", f"has two variants named {name!r}: give each a distinct 'name'")
        names.add(name)
        if backend == "local" and ("instance_type" in v or "instance.type" in v):
            kind = "a GPU type" if is_gpu_instance_type(vspec.instance.type) else "an instance type"
            raise SpecError(
                f"variants[{name!r}].instance_type",
                f"is {kind} ({vspec.instance.type}) but the local backend runs every target on this machine: "
                "it cannot run or compare instance types. Fix: drop instance_type from local variants "
                "(use price_as= to price them) or run the sweep with backend='aws'.",
            )
        built.append((name, vspec, n, v))
    price_label = price_as if backend == "local" else None
    if backend == "local":
        if price_as is None:
            raise SpecError(
                "price_as", "name the instance type local costs are 'as if priced at' (e.g. 'g6.xlarge')"
            )
        _price_check(price_as, region)
    else:
        secs = (duration or 0) * repeats if profile is not None else _search_seconds(search or {})
        estimate = estimate_sweep_cost(spec, variants, seconds_per_variant=secs)
        total = float(estimate["usd"].sum())
        if budget_usd is not None and total > budget_usd:
            worst = estimate.sort_values("usd").iloc[-1]
            raise SpecError(
                "budget_usd",
                f"the sweep is estimated at {total:.2f} USD, above the budget of {budget_usd:.2f} USD "
                f"(most expensive variant: {worst['variant']!r} at {worst['usd']:.2f} USD). Fix: fewer or smaller "
                "variants, shorter runs, or a higher budget_usd.",
            )
        if confirm is None or not confirm(estimate):
            raise SpecError(
                "confirm",
                f"the AWS sweep ({total:.2f} USD estimated) was not confirmed: pass confirm=lambda est: True after "
                "reading the estimate (estimate_sweep_cost)",
            )
    if open_fleet is None:
        from .fleet import open_fleet as _open

        open_fleet = _open
    rows = []
    for name, vspec, n, v in built:
        t0 = time.monotonic()
        row: dict[str, Any] = {"variant": name, "instances": n, "overrides": json.dumps(dict(v), default=str)}
        itype = vspec.instance.type if backend == "aws" else price_label
        with open_fleet(vspec, backend=backend) as fleet:
            fleet.launch(on_output=None)
            trials: list[Trial] = []
            results: list[Any] = []
            if search is not None:
                sr = capacity_search(fleet, slo=slo, instances=n, fraction=fraction, workload=workload, path=path,
                                     price_as=itype, region=region, idle_s=idle_s, **dict(search))  # fmt: skip
                passing = [t for t in sr.trials if t.verdict == "pass" and t.rate_rps == sr.capacity_rps]
                trial = passing[-1] if passing else (sr.trials[-1] if sr.trials else None)
                row["capacity_rps"] = sr.capacity_rps
                row["trials"] = len(sr.trials)
                if trial is None:
                    raise SpecError("search", f"variant {name!r}: the search ran no trial")
                trials = [trial]
            else:
                wait_for_capacity(fleet, n)
                for i in range(repeats):
                    tr, res = run_trial(fleet, rate, duration_s=duration, slo=slo, workload=workload, path=path,
                                        instances=n, fraction=fraction, seed_offset=i, **load_kwargs)  # fmt: skip
                    cost = _trial_cost(tr, itype, region, backend == "local")
                    trials.append(Trial(**{**tr.__dict__, "summary": {**tr.summary, **cost}}))
                    results.append(res)
                    wait_idle(fleet, min_s=idle_s)
        row.update(_row_figures(trials, itype, region, backend == "local"))
        if repeats > 1 and results:
            from .analysis.compare import run_intervals

            price_h = _lookup(itype, region).usd_per_hour * n if itype else None
            ci = run_intervals(results, slo=slo, usd_per_hour=price_h).set_index("figure")
            for fig_name in ("ttft_p99_s", "usd_per_million_good_tokens", "output_tokens_per_s"):
                row[f"{fig_name}_lo"] = ci.loc[fig_name, "lo"]
                row[f"{fig_name}_hi"] = ci.loc[fig_name, "hi"]
            row["ci_method"] = ci["method"].iloc[0]
        row["met_slo"] = bool(row["good_fraction"] >= fraction and row["valid"])
        row["seconds"] = time.monotonic() - t0
        rows.append(row)
        log.info("variant %s: %s", name, {k: row[k] for k in ("good_fraction", "ttft_p99_s")})
        if on_variant is not None:
            on_variant(row)
    frame = pd.DataFrame(rows)
    frame["pareto_cost_ttft"] = _pareto(
        frame, "ttft_p99_s", "usd_per_million_good_tokens", minimize=(True, True)
    )
    frame["pareto_throughput"] = _pareto(
        frame, "tokens_per_s_per_instance", "tokens_per_s_per_user", minimize=(False, False)
    )
    best, why = recommend(frame, backend=backend, price_as=price_label, fraction=fraction)
    basis = frame["cost_basis"].iloc[0] if "cost_basis" in frame.columns and len(frame) else ""
    return SweepResult(frame=frame, recommendation=why, recommended=best, backend=backend,
                       details={"cost_basis": basis, "slo": dict(slo), "fraction": fraction})  # fmt: skip


def _constant_of(profile: Any) -> tuple[float, float]:
    rate = getattr(profile, "rps", None) if getattr(profile, "kind", "") == "constant" else None
    duration = getattr(profile, "duration_s", None)
    if rate is None or duration is None:
        raise SpecError("profile", "must be a constant-rate profile such as ml.load.constant(10, 30)")
    return float(rate), float(duration)


def _search_seconds(search: Mapping[str, Any]) -> float:
    return float(search.get("max_trials", 10)) * (float(search.get("duration_s", 20.0)) + 3.0)


def _row_figures(trials: Sequence[Trial], itype: str | None, region: str, local: bool) -> dict[str, Any]:
    import numpy as np

    def mean(key: str) -> float:
        vals = [float(t.summary.get(key, np.nan)) for t in trials]
        vals = [v for v in vals if v == v]
        return float(np.mean(vals)) if vals else math.nan

    n = int(trials[0].summary.get("instances", 1)) if trials else 1
    tpot = mean("tpot_p50_s")
    out = {
        "rate_rps": mean("offered_rps"),
        "valid": all(t.valid or t.stopped_early for t in trials),
        "good_fraction": float(np.mean([t.good_fraction for t in trials])),
        "ttft_p50_s": mean("ttft_p50_s"),
        "ttft_p99_s": mean("ttft_p99_s"),
        "tpot_p50_s": tpot,
        "tpot_p99_s": mean("tpot_p99_s"),
        "output_tokens_per_s": mean("output_tokens_per_s"),
        "tokens_per_s_per_instance": mean("output_tokens_per_s") / n,
        "tokens_per_s_per_user": 1.0 / tpot if tpot and tpot == tpot else math.nan,
        "goodput_rps": mean("goodput_rps"),
    }
    for key in ("usd_per_million_output_tokens", "usd_per_million_good_tokens", "usd_per_million_tokens_gke",
                "usd_per_million_requests"):  # fmt: skip
        out[key] = mean(key)
    if trials and "cost_basis" in trials[0].summary:
        out["cost_basis"] = trials[0].summary["cost_basis"]
    return out


# --------------------------------------------------------------------------- command line
def _slo_arg(items: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items or []:
        key, sep, val = it.partition("=")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise SpecError("--slo", f"must look like ttft_s=0.5 (got {it!r})") from None
        if not sep:
            raise SpecError("--slo", f"must look like ttft_s=0.5 (got {it!r})")
    return out


def cli_compare(args: Any) -> int:
    """``mlops-lb compare RUN_A RUN_B``: print the comparison; 0 whatever the verdict, 2 on bad input."""
    from .analysis.compare import compare

    c = compare(args.run_a, args.run_b, slo=_slo_arg(args.slo) or None, usd_per_hour=args.usd_per_hour,
                confidence=args.confidence)  # fmt: skip
    print(repr(c))
    if args.html:
        print(f"comparison report: {c.to_html(args.html)}")
    return 0


def cli_sweep(args: Any) -> int:
    """``mlops-lb sweep SPEC --variants FILE``: run the sweep on the local fleet, print the recommendation."""
    from pathlib import Path

    import yaml

    from .load import constant
    from .spec import FleetSpec

    path = Path(args.variants)
    if not path.is_file():
        raise SpecError("--variants", f"no such file: {path}")
    variants = yaml.safe_load(path.read_text())
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise SpecError("--variants", "must hold a list of mappings (one per variant)")
    spec = FleetSpec.from_yaml(args.spec)
    res = sweep_configs(spec, variants=variants, profile=constant(args.rps, args.duration_s),
                        slo=_slo_arg(args.slo), price_as=args.price_as)  # fmt: skip
    cols = ["variant", "instances", "good_fraction", "ttft_p99_s", "tpot_p50_s", "output_tokens_per_s",
            "usd_per_million_good_tokens", "pareto_cost_ttft", "met_slo"]  # fmt: skip
    print(res.frame[cols].to_string(index=False))
    print(res.recommendation)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res.frame.to_csv(out / "sweep.csv", index=False)
        res.pareto_plot().savefig(out / "pareto.png", dpi=90, bbox_inches="tight")
        print(f"wrote {out / 'sweep.csv'} and {out / 'pareto.png'}")
    return 0
