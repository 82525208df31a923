"""SLO-bounded capacity search, the pure part: which rate to try next, how to judge a trial, what the answer is.

The question: the highest arrival rate at which the fleet's goodput (requests meeting every SLO bound) stays at or
above ``fraction`` (default 99 %) of the offered load, for one configuration at a pinned capacity. The strategy is
a locust-shape-style seam: the runner (``mlops_lb.experiments.capacity_search``) asks :meth:`SloSearch.next_rate`
with the trials so far and stops when it answers None; the strategy never runs anything.

Strategy (bracket, then bisect):

1. Try ``start_rps``. While every trial passed, multiply the rate by ``growth`` (up to ``max_rps``); while every
   trial failed, divide it (down to ``min_rps``).
2. Once a passing rate ``lo`` and a failing rate ``hi`` are known, bisect until ``hi - lo <= resolution x lo``.
3. A trial counts only if its run is VALID (the generator kept its schedule; see ``LoadResult.verdict``): an INVALID
   trial is repeated once at the same rate; a second INVALID trial ends the search, saying so. A trial the runner
   stopped early because the fleet was over-saturated is a FAIL (that is what stopping early means).

Example::

    s = SloSearch(start_rps=8, fraction=0.99)
    s.next_rate([])                                    # 8.0
    s.next_rate([judge_trial(8, summary)])             # 16.0 if it passed, 4.0 if it failed
    s.result(trials).capacity_rps
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import SpecError

__all__ = ["SearchResult", "SloSearch", "Trial", "judge_trial"]


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One run at one rate, judged. ``verdict`` is ``pass``, ``fail`` or ``invalid``; ``reason`` says why.

    Example::

        judge_trial(12.0, result.summary(), fraction=0.99).verdict
    """

    rate_rps: float
    verdict: str
    reason: str
    valid: bool
    offered_rps: float
    goodput_rps: float
    good_fraction: float
    stopped_early: bool = False
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)
    seconds: float = math.nan

    @property
    def counts(self) -> bool:
        """Whether the trial is evidence for the search (VALID, or stopped by us for over-saturation)."""
        return self.verdict in ("pass", "fail")

    def to_dict(self) -> dict[str, Any]:
        """Flat values for a frame (the summary's headline latencies included)."""
        d = asdict(self)
        s = d.pop("summary")
        for k in (
            "ttft_p99_s",
            "tpot_p99_s",
            "p99_s",
            "output_tokens_per_s",
            "requests",
            "requests_meeting_slo",
            "usd_per_million_good_tokens",
            "usd_per_million_output_tokens",
            "usd_per_million_tokens_gke",
        ):
            d[k] = s.get(k, math.nan)
        return d


def judge_trial(
    rate_rps: float,
    summary: Mapping[str, Any],
    *,
    fraction: float = 0.99,
    stopped_early: bool = False,
    seconds: float = math.nan,
) -> Trial:
    """Judge one run: pass when VALID and requests meeting the SLO ≥ ``fraction`` × requests due.

    ``summary`` is ``LoadResult.summary()`` of a run with ``slo=`` given (``requests_meeting_slo``, ``goodput_rps``,
    ``offered_rps``, ``valid``). ``stopped_early`` (the runner stopped an over-saturated run) makes it a fail.

    Example::

        judge_trial(10, {"valid": True, "offered_rps": 10, "goodput_rps": 9.95}).verdict   # 'pass'
    """
    offered = float(summary.get("offered_rps", math.nan))
    good = float(summary.get("goodput_rps", math.nan))
    frac = good / offered if offered and offered > 0 and math.isfinite(offered) else math.nan
    valid = bool(summary.get("valid", False))
    if stopped_early:
        verdict, reason = (
            "fail",
            "over-saturated: stopped early (the SLO was being missed interval after interval)",
        )
    elif not valid:
        why = "; ".join(str(r) for r in summary.get("invalid_reasons", []) or []) or "the run was INVALID"
        verdict, reason = "invalid", f"does not count: {why}"
    elif frac >= fraction:
        verdict, reason = "pass", f"goodput {frac:.1%} of offered ≥ {fraction:.1%}"
    else:
        verdict, reason = "fail", f"goodput {frac:.1%} of offered < {fraction:.1%}"
    return Trial(
        rate_rps=float(rate_rps),
        verdict=verdict,
        reason=reason,
        valid=valid,
        offered_rps=offered,
        goodput_rps=good,
        good_fraction=frac,
        stopped_early=stopped_early,
        summary=dict(summary),
        seconds=seconds,
    )


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """The answer and the evidence: ``capacity_rps`` (highest passing rate, NaN if none passed), the bracket, every
    trial in order, and why the search stopped.

    Example::

        r = ml.capacity_search(fleet, slo={"ttft_s": 0.5}, ...)
        r.capacity_rps, r.trials_frame()
    """

    capacity_rps: float
    lower_rps: float
    upper_rps: float
    fraction: float
    stop_reason: str
    trials: tuple[Trial, ...]
    instances: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_instance_rps(self) -> float:
        """Capacity divided by the pinned instance count (NaN when unknown)."""
        return self.capacity_rps / self.instances if self.instances else math.nan

    def trials_frame(self) -> Any:
        """One row per trial, in the order they ran."""
        import pandas as pd

        return pd.DataFrame([t.to_dict() for t in self.trials])

    def __repr__(self) -> str:
        cap = "none passed" if math.isnan(self.capacity_rps) else f"{self.capacity_rps:.3g} rps"
        steps = ", ".join(f"{t.rate_rps:.3g}:{t.verdict}" for t in self.trials)
        return f"SearchResult(capacity {cap} at ≥{self.fraction:.0%} goodput; {self.stop_reason}; trials {steps})"


class SloSearch:
    """Bracket-then-bisect over arrival rate (see the module docstring); a pure strategy the runner asks.

    Example::

        s = SloSearch(start_rps=4, fraction=0.99, resolution=0.1, max_trials=10)
        rate = s.next_rate(trials)    # None when done; s.result(trials) then says why
    """

    def __init__(
        self,
        *,
        start_rps: float,
        fraction: float = 0.99,
        growth: float = 2.0,
        resolution: float = 0.1,
        min_rps: float | None = None,
        max_rps: float | None = None,
        max_trials: int = 12,
    ) -> None:
        if not (isinstance(start_rps, (int, float)) and start_rps > 0 and math.isfinite(start_rps)):
            raise SpecError("start_rps", f"must be a number > 0 (got {start_rps!r})")
        if not (0 < fraction <= 1):
            raise SpecError("fraction", f"must be in (0, 1] (got {fraction!r})")
        if not (growth > 1):
            raise SpecError("growth", f"must be > 1 (got {growth!r})")
        if not (0 < resolution < 1):
            raise SpecError("resolution", f"must be in (0, 1) (got {resolution!r})")
        if not (isinstance(max_trials, int) and max_trials >= 1):
            raise SpecError("max_trials", f"must be an integer >= 1 (got {max_trials!r})")
        self.start_rps = float(start_rps)
        self.fraction = float(fraction)
        self.growth = float(growth)
        self.resolution = float(resolution)
        self.min_rps = float(min_rps) if min_rps is not None else self.start_rps / self.growth**4
        self.max_rps = float(max_rps) if max_rps is not None else self.start_rps * self.growth**6
        if not (0 < self.min_rps <= self.start_rps <= self.max_rps):
            raise SpecError("start_rps", f"must lie in [min_rps, max_rps] = [{self.min_rps}, {self.max_rps}]")
        self.max_trials = max_trials
        self._stop = ""

    @staticmethod
    def _bracket(trials: Sequence[Trial]) -> tuple[float, float]:
        passes = [t.rate_rps for t in trials if t.verdict == "pass"]
        fails = [t.rate_rps for t in trials if t.verdict == "fail"]
        lo = max(passes) if passes else math.nan
        # the lowest failure above the best pass (a fail below a pass is noise at a lower rate: the pass wins there)
        above = [f for f in fails if not passes or f > lo]
        hi = min(above) if above else math.nan
        return lo, hi

    def next_rate(self, trials: Sequence[Trial]) -> float | None:
        """The next rate to try, or None when the search is over (``result`` says why)."""
        if not trials:
            return self.start_rps
        last = trials[-1]
        if last.verdict == "invalid":
            if len(trials) >= 2 and trials[-2].verdict == "invalid" and trials[-2].rate_rps == last.rate_rps:
                self._stop = (
                    f"two INVALID trials at {last.rate_rps:.3g} rps: the generator cannot keep this rate"
                )
                return None
            if len(trials) >= self.max_trials:
                self._stop = f"max_trials ({self.max_trials}) reached"
                return None
            return last.rate_rps
        if len(trials) >= self.max_trials:
            self._stop = f"max_trials ({self.max_trials}) reached"
            return None
        lo, hi = self._bracket(trials)
        if math.isnan(hi):  # nothing failed yet: grow
            if lo >= self.max_rps:
                self._stop = f"passed at max_rps ({self.max_rps:.3g}): capacity is at least that"
                return None
            return min(lo * self.growth, self.max_rps)
        if math.isnan(lo):  # nothing passed yet: shrink
            if hi <= self.min_rps:
                self._stop = f"failed at min_rps ({self.min_rps:.3g}): capacity is below that"
                return None
            return max(hi / self.growth, self.min_rps)
        if hi - lo <= self.resolution * lo:
            self._stop = f"bracket [{lo:.3g}, {hi:.3g}] rps within {self.resolution:.0%}"
            return None
        return (lo + hi) / 2

    def result(self, trials: Sequence[Trial], **extra: Any) -> SearchResult:
        """The answer from the trials run (call after ``next_rate`` returned None, or at any point)."""
        lo, hi = self._bracket(trials)
        instances = extra.pop("instances", None)
        return SearchResult(
            capacity_rps=lo,
            lower_rps=lo,
            upper_rps=hi,
            fraction=self.fraction,
            stop_reason=self._stop or "stopped by the caller",
            trials=tuple(trials),
            instances=instances,
            extra=extra,
        )
