"""The routing A/B's verdicts and recommendation, as pure functions of measured runs (no fleet, no processes).

:func:`mlops_lb.routing_ab.compare_routing` replays one trace against each routing policy on the same fleet and
hands its runs here. Per policy: goodput, TTFT/TPOT p99, errors, requests shed (429/503) and the prefix-cache hit
rate, each with an interval; per cache-aware policy: :func:`mlops_lb.analysis.compare.compare` against the
baseline (least outstanding requests by default, what an ALB does best), and a recommendation:

* **worth it**: goodput or TTFT p99 significantly better, neither significantly worse, and no more shedding or
  errors than the baseline (more than ``shed_margin`` = 1 percentage point more is a win *bought by shedding*: a
  router that answers 503 to the requests it cannot place fast looks good on the ones it keeps);
* **not worth its tier**: no significant difference (e.g. a cache large enough to hold every prefix on every
  target, or a trace with no sharing): stay with the ALB's own algorithm, which needs no router instances;
* **worse**: a figure significantly worse (hot keys piling on one target when the bound is loose).

``consistent_hash`` on AWS needs the router tier (instances behind the ALB); ``sticky_cookie`` is the ALB's own
application-cookie stickiness (no extra infrastructure); the text says which.

Example::

    rc = routing_verdicts(runs, hit_rates, baseline="least_outstanding_requests", slo={"ttft_s": 1.0})
    rc.table, rc.recommendation
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpecError
from .compare import Comparison, compare, run_intervals, t_quantile

__all__ = ["CACHE_AWARE", "RoutingComparison", "arm_counts", "recommend_routing", "routing_verdicts"]

CACHE_AWARE = ("consistent_hash", "sticky_cookie")
SHED_CODES = ("429", "503")
# Which figures decide: goodput (share of offered requests that met the SLO) and TTFT p99.
DECIDING = ("good_fraction", "ttft_p99_s")


def arm_counts(run: Any) -> dict[str, float]:
    """Requests sent, failed and shed (HTTP 429 or 503: the fleet refused them) of one run, and their shares.

    Example::

        arm_counts(result)      # {'requests': 600, 'errors': 3, 'shed': 2, 'error_share': 0.005, ...}
    """
    req = run.requests() if hasattr(run, "requests") and callable(run.requests) else run
    n = len(req)
    err = req["error"].astype(str) if "error" in req.columns else None
    failed = 0 if err is None else int((~err.isin(["", "None", "nan"])).sum())
    shed = 0
    if "status" in req.columns:
        shed = int(req["status"].astype(str).str.split(".").str[0].isin(SHED_CODES).sum())
    return {
        "requests": float(n),
        "errors": float(failed),
        "shed": float(shed),
        "error_share": failed / n if n else math.nan,
        "shed_share": shed / n if n else math.nan,
    }


def _mean_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """Mean and its t interval over repeats (one value: no interval)."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = t_quantile(1 - (1 - confidence) / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - half, m + half


@dataclass(frozen=True, kw_only=True)
class RoutingComparison:
    """What :func:`mlops_lb.routing_ab.compare_routing` measured: one row per policy, the pairwise comparisons
    with the baseline, a verdict per cache-aware policy and the recommendation.

    Example::

        rc.table[["policy", "goodput_rps", "goodput_rps_lo", "goodput_rps_hi", "ttft_p99_s", "hit_rate"]]
        rc.verdicts["consistent_hash"], rc.recommendation
        rc.comparisons["consistent_hash"].table     # compare(): b - a with intervals, per figure
    """

    table: Any
    baseline: str
    comparisons: Mapping[str, Comparison]
    verdicts: Mapping[str, str]
    recommendation: str
    method: str
    runs: Mapping[str, tuple[Any, ...]] = field(repr=False, default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        cols = ["policy", "goodput_rps", "ttft_p99_s", "hit_rate", "shed_share"]
        lines = [f"RoutingComparison(baseline {self.baseline}; {self.method})"]
        for _, r in self.table.iterrows():
            lines.append(
                "  " + "  ".join(f"{c}={r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols)
            )
        lines += [f"  {p}: {v}" for p, v in self.verdicts.items()]
        lines.append(f"  -> {self.recommendation}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return (
            f"<b>{html.escape(self.recommendation)}</b>"
            + self.table.to_html(index=False, float_format=lambda x: f"{x:.4g}")
            + "<ul>"
            + "".join(f"<li>{html.escape(p)}: {html.escape(v)}</li>" for p, v in self.verdicts.items())
            + "</ul>"
        )


def routing_verdicts(
    runs: Mapping[str, Sequence[Any]],
    hit_rates: Mapping[str, Sequence[float]],
    *,
    baseline: str,
    slo: Mapping[str, float],
    offered_rps: float | None = None,
    confidence: float = 0.95,
    block_s: float = 10.0,
    warmup_s: float = 0.0,
    shed_margin: float = 0.01,
    n_boot: int = 1000,
    seed: int = 0,
) -> RoutingComparison:
    """Tables, comparisons and verdicts from each policy's runs (``runs[policy]``: its repeats, LoadResults or
    bundle folders) and prefix-cache hit rates (``hit_rates[policy]``: one per repeat, NaN when not measured).

    ``offered_rps`` turns the goodput share into requests per second (default: requests / duration of each run).
    """
    import pandas as pd

    if baseline not in runs:
        raise SpecError("baseline", f"must be one of the compared policies {list(runs)} (got {baseline!r})")
    if not 0 <= shed_margin < 1:
        raise SpecError("shed_margin", f"must be a share in [0, 1) (got {shed_margin!r})")
    rows = []
    comparisons: dict[str, Comparison] = {}
    counts: dict[str, dict[str, float]] = {}
    method = ""
    # one SLO, warm-up and bootstrap for each policy's intervals and for every comparison with the baseline
    stats: dict[str, Any] = {
        "slo": slo,
        "confidence": confidence,
        "block_s": block_s,
        "warmup_s": warmup_s,
        "n_boot": n_boot,
        "seed": seed,
    }
    for policy, rs in runs.items():
        rs = list(rs)
        iv = run_intervals(rs if len(rs) > 1 else rs[0], **stats).set_index("figure")
        method = str(iv["method"].iloc[0])
        per = [arm_counts(r) for r in rs]
        c = {k: float(np.nanmean([p[k] for p in per])) for k in per[0]}
        counts[policy] = c
        rate = offered_rps
        if rate is None:
            durs = [float(r.summary().get("duration_s") or math.nan) for r in rs if hasattr(r, "summary")]
            rate = (
                float(np.nanmean([p["requests"] / d for p, d in zip(per, durs, strict=False) if d]))
                if durs
                else math.nan
            )
        hr, hr_lo, hr_hi = _mean_interval(list(hit_rates.get(policy, [])), confidence)
        g = iv.loc["good_fraction"]
        rows.append(
            {
                "policy": policy,
                "repeats": len(rs),
                "goodput_rps": g["estimate"] * rate,
                "goodput_rps_lo": g["lo"] * rate,
                "goodput_rps_hi": g["hi"] * rate,
                "good_fraction": g["estimate"],
                **{
                    f"{f}{s}": iv.loc[f][k]
                    for f in ("ttft_p99_s", "tpot_p99_s")
                    for s, k in (("", "estimate"), ("_lo", "lo"), ("_hi", "hi"))
                },
                "hit_rate": hr,
                "hit_rate_lo": hr_lo,
                "hit_rate_hi": hr_hi,
                "error_share": c["error_share"],
                "shed_share": c["shed_share"],
            }
        )
        if policy != baseline:
            comparisons[policy] = compare(
                list(runs[baseline]),
                rs,
                **stats,
                figures=("good_fraction", "ttft_p99_s", "tpot_p99_s", "latency_p99_s"),
                names=(baseline, policy),
            )
    verdicts = {
        p: _verdict(comparisons[p], counts[p], counts[baseline], shed_margin) for p in runs if p != baseline
    }
    table = pd.DataFrame(rows)
    return RoutingComparison(
        table=table,
        baseline=baseline,
        comparisons=comparisons,
        verdicts=verdicts,
        recommendation=recommend_routing(verdicts, baseline=baseline, table=table),
        method=method,
        runs={p: tuple(r) for p, r in runs.items()},
        details={"counts": counts, "shed_margin": shed_margin, "confidence": confidence},
    )


def _verdict(c: Comparison, cand: Mapping[str, float], base: Mapping[str, float], shed_margin: float) -> str:
    """``worth it`` / ``bought by shedding`` / ``not worth its tier`` / ``worse``, with the figures that say so."""
    v = c.table.set_index("figure")["verdict"]
    better = [f for f in DECIDING if v.get(f) == "better"]
    worse = [f for f in DECIDING if v.get(f) == "worse"]
    shed_more = cand["shed_share"] - base["shed_share"]
    err_more = cand["error_share"] - base["error_share"]
    if better and (shed_more > shed_margin or err_more > shed_margin):
        return (
            f"bought by shedding: {', '.join(better)} better, but {max(shed_more, err_more):.1%} more requests "
            f"shed or failed than {c.name_a}"
        )
    if worse:
        return f"worse: {', '.join(worse)} significantly worse than {c.name_a}"
    if better:
        return f"worth it: {', '.join(better)} significantly better than {c.name_a}, no more shedding"
    return f"not worth its tier: no significant difference from {c.name_a} on goodput or TTFT p99"


def recommend_routing(verdicts: Mapping[str, str], *, baseline: str, table: Any = None) -> str:
    """One sentence: which policy to deploy, and on AWS what it costs in infrastructure.

    Example::

        recommend_routing({"consistent_hash": "not worth its tier: ..."}, baseline="least_outstanding_requests")
    """
    wins = [p for p, v in verdicts.items() if v.startswith("worth it")]
    if not wins:
        why = "; ".join(f"{p} {v.split(':', 1)[0]}" for p, v in verdicts.items()) or "nothing else compared"
        return (
            f"Stay with {baseline}: no cache-aware policy was worth it on this trace ({why}). On AWS that is the "
            "ALB's own algorithm, with no router tier to pay for."
        )
    best = wins[0]
    if table is not None and len(wins) > 1:
        t = table.set_index("policy")
        best = max(wins, key=lambda p: (t.loc[p, "good_fraction"], -t.loc[p, "ttft_p99_s"]))
    on_aws = (
        "on AWS it needs the router tier (routing.router: HAProxy instances behind the ALB, priced in the plan)"
        if best == "consistent_hash"
        else "on AWS it is the ALB's application-cookie stickiness, no extra infrastructure"
        if best == "sticky_cookie"
        else "on AWS it is a target-group setting"
    )
    return f"Use {best}: {verdicts[best].split(': ', 1)[1]}; {on_aws}."
