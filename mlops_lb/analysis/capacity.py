"""Capacity planning from a rate sweep: the SLO-safe rate per target, the knee, instances, policy and cost.

Input is a sweep: per step, the offered rate, the p99 latency and the error rate (``LoadResult.steps()``, a
DataFrame with ``rate, p99_s, error_rate``, or sweep intervals with ``step_rps``). From it:

* **max OK rate per target** — the highest step, walking up from the lowest, whose p99 is at most the SLO and
  whose error rate is at most the bound (for a streamed LLM run, also or instead: whose p99 time to first token
  is at most ``slo_ttft_p99_s`` and whose p99 time per output token is at most ``slo_tpot_p99_s``); steps above the first failing one are ignored (a pass after a failure is
  noise, not capacity). Rates are divided by ``targets_in_test`` to get per-target numbers.
* **knee** — "kneedle" (Satopää et al., 2011): the interior step farthest below the chord from the first to the
  last step of the p99-vs-rate curve (distances in units of the p99 range). That is where p99 bends up; a sweep
  whose p99 does not rise, or stays on or above the chord, has no knee.
* **instances needed** for ``target_total_rps``: ``ceil(total / max_ok_rate_per_target)``.
* **recommended target tracking value**: ``safety_factor x max_ok_rate`` requests/s per target, and × 60 for
  ALBRequestCountPerTarget (requests per target per *minute*); at that target the fleet would settle at
  ``instances_recommended = ceil(total / recommended_rps)``, which is what the cost assumes.
* **the same target as concurrency** (``scaling.metric: concurrency_per_target``): by Little's law a target
  serving ``recommended_rps`` requests/s that each take ``W`` seconds has ``recommended_rps x W`` requests in
  flight on average; ``W`` is the mean latency of the highest passing step (``mean_s``), or its median (``p50_s``)
  when the sweep has no mean. :meth:`CapacityPlan.scaling_policy` turns either into a ``ScalingPolicySpec``.
* **warm-up**: the measured launch-to-ready time rounded up to whole minutes (the metric has one-minute points).
* **cost**: ``instances_recommended x hourly price + ALB hour + LCU estimate``, and that divided by the requests
  served in an hour, per million.

Example::

    from mlops_lb.analysis import plan_capacity
    plan = plan_capacity(result, slo_p99_s=0.100, target_total_rps=1000, launch_to_ready_s=95)
    plan.recommended_target_value_per_minute, plan.instances_needed, plan.usd_per_million_requests
    # an LLM fleet: instances for 30 requests/s with TTFT p99 <= 500 ms and TPOT p99 <= 50 ms
    plan_capacity(streamed_sweep, slo_ttft_p99_s=0.5, slo_tpot_p99_s=0.05, target_total_rps=30).instances_needed
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from .pricing import alb_hourly_cost, hourly_price, price_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CapacityPlan", "find_knee", "plan_capacity", "sweep_steps"]

# Per-step streaming percentiles a streamed run's intervals carry (worst interval per step, like p99_s).
_STREAM_COLS = ("ttft_p99_s", "tpot_p99_s")


@dataclass(frozen=True, kw_only=True)
class CapacityPlan:
    """What a sweep says about capacity; every number is per target unless its name says total.

    Example::

        plan = plan_capacity(steps, slo_p99_s=0.05, target_total_rps=1000)
        plan.to_dict()["instances_needed"]
    """

    slo_p99_s: float | None
    slo_ttft_p99_s: float | None = None
    slo_tpot_p99_s: float | None = None
    max_error_rate: float
    targets_in_test: int
    max_ok_rate_per_target: float | None
    knee_rate_per_target: float | None
    knee_p99_s: float | None
    safety_factor: float
    recommended_rps_per_target: float | None
    recommended_target_value_per_minute: float | None
    recommended_concurrency_per_target: float | None
    target_total_rps: float | None
    instances_needed: int | None
    instances_recommended: int | None
    launch_to_ready_s: float | None
    recommended_warmup_s: int | None
    instance_type: str
    region: str
    instance_usd_per_hour: float | None
    price_as_of: str | None
    usd_per_hour: float | None
    usd_per_million_requests: float | None
    usd_per_million_output_tokens: float | None = None
    router_usd_per_hour: float | None = (
        None  # the router tier's instances (AWS consistent_hash), in usd_per_hour
    )
    notes: tuple[str, ...] = ()
    steps: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the scalar fields (no ``steps`` frame), JSON-serialisable."""
        d = asdict(self)
        d.pop("steps", None)
        d["notes"] = list(self.notes)
        return d

    def scaling_policy(self, metric: str = "request_count_per_target", *, warmup_s: int | None = None) -> Any:
        """The recommended target as a ``ScalingPolicySpec`` tracking ``metric`` (SpecError when the plan has none).

        Example::

            spec = spec.replace(scaling=plan.scaling_policy("concurrency_per_target"))
        """
        from ..spec import SCALING_METRICS, ScalingPolicySpec

        if metric not in SCALING_METRICS:
            raise SpecError("metric", f"must be one of {', '.join(SCALING_METRICS)} (got {metric!r})")
        warm = warmup_s if warmup_s is not None else (self.recommended_warmup_s or 300)
        if metric == "concurrency_per_target":
            if self.recommended_concurrency_per_target is None:
                raise SpecError(
                    "metric",
                    "concurrency_per_target needs the sweep's latency (mean_s or p50_s per step) and a passing step",
                )
            return ScalingPolicySpec(
                metric="concurrency_per_target",
                target_concurrency_per_target=round(self.recommended_concurrency_per_target, 3),
                warmup_s=warm,
            )
        if self.recommended_rps_per_target is None:
            raise SpecError("metric", "the plan has no passing step, so no target to recommend")
        return ScalingPolicySpec(
            target_rps_per_target=round(self.recommended_rps_per_target, 3), warmup_s=warm
        )

    def _bounds(self) -> list[str]:
        return [
            f"{name} p99 <= {v * 1000:g} ms"
            for name, v in (
                ("latency", self.slo_p99_s),
                ("TTFT", self.slo_ttft_p99_s),
                ("TPOT", self.slo_tpot_p99_s),
            )
            if v is not None
        ]

    def _lines(self) -> list[tuple[str, str]]:
        def f(v: float | None, fmt: str, unit: str = "") -> str:
            return "n/a" if v is None else f"{v:{fmt}}{unit}"

        rows = [
            ("SLO", ", ".join([*self._bounds(), f"errors <= {self.max_error_rate:.2%}"])),
            ("max OK rate per target", f(self.max_ok_rate_per_target, ".1f", " rps")),
            (
                "knee",
                f(self.knee_rate_per_target, ".1f", " rps")
                + (f" (p99 {self.knee_p99_s * 1000:.1f} ms)" if self.knee_p99_s is not None else ""),
            ),
            (
                "target tracking value",
                f(self.recommended_rps_per_target, ".1f", " rps/target")
                + " = "
                + f(self.recommended_target_value_per_minute, ".0f", " ALBRequestCountPerTarget (per minute)")
                + f" at safety factor {self.safety_factor:g}",
            ),
            (
                "as concurrency",
                f(self.recommended_concurrency_per_target, ".2f", " in-flight requests per target")
                + " (ConcurrencyPerTarget, Little's law)",
            ),
        ]
        if self.target_total_rps is not None:
            rows.append(
                (
                    "instances for " + f"{self.target_total_rps:g} rps",
                    f"{f(self.instances_needed, 'd')} needed, {f(self.instances_recommended, 'd')} at the target value",
                )
            )
        rows.append(
            (
                "warm-up",
                f(self.recommended_warmup_s, "d", " s")
                + (
                    f" (launch-to-ready {self.launch_to_ready_s:.0f} s)"
                    if self.launch_to_ready_s is not None
                    else ""
                ),
            )
        )
        rows.append(
            (
                "cost",
                f(self.usd_per_hour, ".4f", " USD/h")
                + ", "
                + f(self.usd_per_million_requests, ".4f", " USD per million requests")
                + (
                    ", " + f(self.usd_per_million_output_tokens, ".4f", " USD per million output tokens")
                    if self.usd_per_million_output_tokens is not None
                    else ""
                )
                + f" ({self.instance_type}, {self.region}, prices as of {self.price_as_of or 'n/a'})",
            )
        )
        rows.extend(("note", n) for n in self.notes)
        return rows

    def __repr__(self) -> str:
        body = "\n".join(f"  {k}: {v}" for k, v in self._lines())
        return f"CapacityPlan(\n{body}\n)"

    def _repr_html_(self) -> str:
        from ..summary import captioned_table

        return captioned_table("Capacity plan", self._lines())


def find_knee(rates: Any, p99s: Any) -> int | None:
    """Index of the knee of p99 vs rate by the kneedle rule, or None (fewer than 3 points, or no bend up).

    Example::

        find_knee([100, 200, 300, 400, 500], [.010, .011, .012, .020, .100])   # 3 (400 rps)
    """
    import numpy as np

    x = np.asarray(rates, dtype=float)
    y = np.asarray(p99s, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(ok)
    if len(idx) < 3:
        return None
    x, y = x[ok], y[ok]
    order = np.argsort(x, kind="stable")
    x, y, idx = x[order], y[order], idx[order]
    if x[-1] == x[0] or y[-1] <= y[0]:
        return None  # p99 does not rise over the sweep: nothing bends up
    # Distance below the chord from the first to the last step, in units of the p99 range; the endpoints are 0,
    # so the knee is always an interior step.
    chord = y[0] + (x - x[0]) * (y[-1] - y[0]) / (x[-1] - x[0])
    diff = (chord - y) / (y.max() - y.min())
    best = int(np.argmax(diff[1:-1])) + 1
    if diff[best] <= 0:
        return None
    return int(idx[best])


def sweep_steps(source: Any) -> pd.DataFrame:
    """Normalise a sweep to a DataFrame ``rate, p99_s, error_rate`` sorted by rate.

    Accepts a LoadResult (``.steps()``), a bundle (``.intervals`` with ``step_rps``), a steps DataFrame, or a sweep
    intervals DataFrame; per-step p99 from intervals is the worst interval's p99 (conservative). ``mean_s``,
    ``p50_s``, ``ttft_p99_s`` and ``tpot_p99_s`` come along when the input has them (the worst interval's, too).

    Example::

        sweep_steps(result).head()
    """
    import pandas as pd

    obj = source
    if not isinstance(obj, pd.DataFrame):
        steps = getattr(obj, "steps", None)
        if callable(steps):
            obj = steps()
        elif isinstance(getattr(obj, "intervals", None), pd.DataFrame):
            obj = obj.intervals
        elif callable(getattr(obj, "intervals", None)):
            obj = obj.intervals()
        else:
            raise SpecError(
                "steps_or_result",
                f"must be a steps/intervals DataFrame, a LoadResult or a RunBundle "
                f"(got {type(source).__name__})",
            )
    df = obj
    latency_cols = [c for c in ("mean_s", "p50_s") if c in df.columns]
    latency_cols += [c for c in _STREAM_COLS if c in df.columns]
    if {"rate", "p99_s", "error_rate"} <= set(df.columns):
        extra = ["tokens_per_request"] if "tokens_per_request" in df.columns else []
        out = df[["rate", "p99_s", "error_rate", *latency_cols, *extra]].astype(float)
    elif {"step_rps", "p99_s", "sent", "errors"} <= set(df.columns):
        d = df[df["step_rps"].notna()]
        if d.empty:
            raise SpecError(
                "steps_or_result", "has no sweep steps (step_rps is empty): run a sweep profile first"
            )
        g = d.groupby("step_rps")
        sent = g["sent"].sum().astype(float)
        out = pd.DataFrame(
            {
                "rate": g["step_rps"].first().astype(float),
                "p99_s": g["p99_s"].max().astype(float),
                "error_rate": (g["errors"].sum() / sent.where(sent > 0)).fillna(1.0).astype(float),
                **{c: g[c].max().astype(float) for c in latency_cols},
            }
        )
        if "output_tokens" in d.columns:
            # output tokens per successful request at each step: what a token-priced plan needs (issue 27)
            ok = (g["sent"].sum() - g["errors"].sum()).astype(float)
            out["tokens_per_request"] = (g["output_tokens"].sum() / ok.where(ok > 0)).astype(float)
    else:
        raise SpecError(
            "steps_or_result",
            f"needs columns rate, p99_s, error_rate (or step_rps, p99_s, sent, errors); "
            f"got {list(df.columns)}",
        )
    return out.sort_values("rate", kind="stable").reset_index(drop=True)


def plan_capacity(
    steps_or_result: Any,
    *,
    slo_p99_s: float | None = None,
    slo_ttft_p99_s: float | None = None,
    slo_tpot_p99_s: float | None = None,
    max_error_rate: float = 0.01,
    target_total_rps: float | None = None,
    instance_type: str = "t3.small",
    region: str = "us-east-1",
    safety_factor: float = 0.7,
    launch_to_ready_s: float | None = None,
    targets_in_test: int = 1,
    router_instance_type: str | None = None,
    routers: int = 0,
) -> CapacityPlan:
    """Turn a sweep into a :class:`CapacityPlan` (method in the module docstring).

    At least one bound: ``slo_p99_s`` (end-to-end latency), ``slo_ttft_p99_s`` (time to first token) or
    ``slo_tpot_p99_s`` (time per output token), each on the step's p99. The streaming bounds need a streamed run's
    intervals (a LoadResult's are used instead of its ``steps()``, which has no TTFT).

    Example::

        plan_capacity(result.steps(), slo_p99_s=0.05, target_total_rps=1000, launch_to_ready_s=95)
        plan_capacity(result, slo_ttft_p99_s=0.5, slo_tpot_p99_s=0.05, target_total_rps=30)
        plan_capacity(result, slo_ttft_p99_s=0.5, target_total_rps=30,      # with an AWS router tier
                      router_instance_type=spec.routing.router.instance_type, routers=spec.routing.router.desired)

    ``routers`` instances of ``router_instance_type`` (the router tier of ``routing.policy: consistent_hash`` on
    AWS) are priced from the same table and added to ``usd_per_hour``: a cache-aware win has to pay for them.
    """
    import pandas as pd

    bounds = {"slo_p99_s": slo_p99_s, "slo_ttft_p99_s": slo_ttft_p99_s, "slo_tpot_p99_s": slo_tpot_p99_s}
    if all(v is None for v in bounds.values()):
        raise SpecError("slo_p99_s", "is required unless slo_ttft_p99_s or slo_tpot_p99_s is given (seconds)")
    for name, v in bounds.items():
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise SpecError(name, f"must be a positive number of seconds (got {v!r})")
    if not 0 <= max_error_rate <= 1:
        raise SpecError("max_error_rate", f"must be between 0 and 1 (got {max_error_rate!r})")
    if not 0 < safety_factor <= 1:
        raise SpecError("safety_factor", f"must be in (0, 1] (got {safety_factor!r})")
    if isinstance(targets_in_test, bool) or not isinstance(targets_in_test, int) or targets_in_test < 1:
        raise SpecError("targets_in_test", f"must be an integer >= 1 (got {targets_in_test!r})")
    if target_total_rps is not None and not target_total_rps > 0:
        raise SpecError("target_total_rps", f"must be > 0 (got {target_total_rps!r})")
    if isinstance(routers, bool) or not isinstance(routers, int) or routers < 0:
        raise SpecError("routers", f"must be an integer >= 0 (got {routers!r})")
    if routers and not router_instance_type:
        raise SpecError("router_instance_type", "is required with routers > 0 (e.g. t3.small)")
    if launch_to_ready_s is not None and not launch_to_ready_s >= 0:
        raise SpecError("launch_to_ready_s", f"must be >= 0 seconds (got {launch_to_ready_s!r})")

    source = steps_or_result
    streamed = slo_ttft_p99_s is not None or slo_tpot_p99_s is not None
    if streamed and not isinstance(source, pd.DataFrame) and callable(getattr(source, "intervals", None)):
        source = source.intervals()  # LoadResult.steps() has no streaming percentiles; its intervals do
    steps = sweep_steps(source).copy()
    steps["rate_per_target"] = steps["rate"] / targets_in_test
    passed = steps["error_rate"] <= max_error_rate
    for col, bound in (("p99_s", slo_p99_s), ("ttft_p99_s", slo_ttft_p99_s), ("tpot_p99_s", slo_tpot_p99_s)):
        if bound is None:
            continue
        if col not in steps.columns:
            raise SpecError(
                f"slo_{col}",
                f"needs {col} per step, which this input lacks: pass a streamed run (a LoadResult, a bundle or its "
                "intervals from a sweep or step profile with stream=True request bodies)",
            )
        passed &= steps[col] <= bound  # NaN (a step with no streamed response) fails the bound
    steps["passed"] = passed
    notes: list[str] = []

    max_ok: float | None = None
    for _, row in steps.iterrows():
        if not bool(row["passed"]):
            break
        max_ok = float(row["rate_per_target"])
    if max_ok is None:
        notes.append("no step met the SLO: sweep lower rates or relax the SLO")
    elif bool(steps["passed"].all()):
        notes.append("every step met the SLO: the true limit is higher; extend the sweep")
    if max_ok is not None and (~steps["passed"]).any() and steps["passed"][steps["passed"].idxmin() :].any():
        notes.append("a step passed above a failing one; it was ignored as noise")

    k = find_knee(steps["rate_per_target"], steps["p99_s"])
    knee_rate = None if k is None else float(steps["rate_per_target"].iloc[k])
    knee_p99 = None if k is None else float(steps["p99_s"].iloc[k])

    rec_rps = None if max_ok is None else safety_factor * max_ok
    rec_min = None if rec_rps is None else rec_rps * 60.0  # ALBRequestCountPerTarget is per minute
    rec_conc = None
    if rec_rps is not None:
        ok = steps[steps["rate_per_target"] == max_ok].iloc[0]
        w = next((float(ok[c]) for c in ("mean_s", "p50_s") if c in steps.columns and ok[c] == ok[c]), None)
        rec_conc = None if w is None else rec_rps * w  # Little's law: in flight = rate x time in the system
    needed = recommended = None
    if target_total_rps is not None and max_ok and rec_rps:
        needed = math.ceil(target_total_rps / max_ok)
        recommended = math.ceil(target_total_rps / rec_rps)
    warmup = None if launch_to_ready_s is None else max(60, 60 * math.ceil(launch_to_ready_s / 60.0))

    price = next((p for p in price_table() if p.region == region and p.instance_type == instance_type), None)
    inst_price = hourly_price(instance_type, region)  # raises a SpecError naming how to add a missing price
    router_usd = routers * hourly_price(str(router_instance_type), region) if routers else None
    usd_h = usd_m = None
    if rec_rps:
        # Without a total, price one instance running at the recommended rate.
        total = target_total_rps if target_total_rps is not None else rec_rps
        n = recommended if recommended is not None else 1
        usd_h = n * inst_price + alb_hourly_cost(total, region) + (router_usd or 0.0)
        usd_m = usd_h / (total * 3600.0) * 1e6
    usd_tok = None
    if usd_h is not None and "tokens_per_request" in steps.columns:
        # a streamed sweep: price the tokens the planned rate produces (tokens per request at the max-OK step)
        tpr = float(steps.loc[steps["rate_per_target"] == max_ok, "tokens_per_request"].iloc[0])
        if tpr == tpr and tpr > 0:
            usd_tok = usd_h / (total * tpr * 3600.0) * 1e6

    if router_usd is not None:
        notes.append(
            f"router tier: {routers} x {router_instance_type} = ${router_usd:.4f}/h, included in usd_per_hour"
        )
    return CapacityPlan(
        slo_p99_s=None if slo_p99_s is None else float(slo_p99_s),
        slo_ttft_p99_s=None if slo_ttft_p99_s is None else float(slo_ttft_p99_s),
        slo_tpot_p99_s=None if slo_tpot_p99_s is None else float(slo_tpot_p99_s),
        max_error_rate=float(max_error_rate),
        targets_in_test=targets_in_test,
        max_ok_rate_per_target=max_ok,
        knee_rate_per_target=knee_rate,
        knee_p99_s=knee_p99,
        safety_factor=float(safety_factor),
        recommended_rps_per_target=rec_rps,
        recommended_target_value_per_minute=rec_min,
        recommended_concurrency_per_target=rec_conc,
        target_total_rps=None if target_total_rps is None else float(target_total_rps),
        instances_needed=needed,
        instances_recommended=recommended,
        launch_to_ready_s=None if launch_to_ready_s is None else float(launch_to_ready_s),
        recommended_warmup_s=warmup,
        instance_type=instance_type,
        region=region,
        instance_usd_per_hour=inst_price,
        price_as_of=price.as_of if price else None,
        usd_per_hour=usd_h,
        usd_per_million_requests=usd_m,
        usd_per_million_output_tokens=usd_tok,
        router_usd_per_hour=router_usd,
        notes=tuple(notes),
        steps=steps,
    )
