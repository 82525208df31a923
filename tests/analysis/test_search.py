"""The SLO capacity search strategy, driven by a fake fleet whose goodput falls above a known capacity."""

from __future__ import annotations

import math

import pytest

from mlops_lb.analysis.search import SloSearch, judge_trial
from mlops_lb.errors import SpecError


def _summary(rate: float, capacity: float, *, valid: bool = True) -> dict[str, object]:
    # a fleet serving `capacity` rps: above it the excess misses the SLO
    good = min(rate, capacity) if rate <= capacity else capacity * 0.9
    return {
        "valid": valid,
        "offered_rps": rate,
        "goodput_rps": good,
        "invalid_reasons": [] if valid else ["late"],
    }


def _drive(search: SloSearch, capacity: float, invalid_at: set[float] | None = None):  # type: ignore[no-untyped-def]
    trials = []
    while (rate := search.next_rate(trials)) is not None:
        trials.append(judge_trial(rate, _summary(rate, capacity, valid=rate not in (invalid_at or set()))))
    return search.result(trials)


class TestJudge:
    def test_both_directions(self) -> None:
        """99.5 % goodput passes at 99 %, 98 % fails; INVALID never counts; stopped early is a fail."""
        assert judge_trial(10, {"valid": True, "offered_rps": 10, "goodput_rps": 9.95}).verdict == "pass"
        assert judge_trial(10, {"valid": True, "offered_rps": 10, "goodput_rps": 9.8}).verdict == "fail"
        t = judge_trial(
            10, {"valid": False, "offered_rps": 10, "goodput_rps": 10, "invalid_reasons": ["late"]}
        )
        assert t.verdict == "invalid" and not t.counts and "late" in t.reason
        assert judge_trial(10, {"valid": False, "offered_rps": 10}, stopped_early=True).verdict == "fail"


class TestSearch:
    def test_finds_capacity_in_few_trials(self) -> None:
        """Capacity 37 rps from start 8: 8, 16, 32 pass, 64 fails, bisect to within 5 %: answer in [35.2, 37]."""
        r = _drive(SloSearch(start_rps=8, resolution=0.05), capacity=37)
        assert 37 / 1.05 <= r.capacity_rps <= 37 and r.upper_rps > 37
        assert len(r.trials) <= 9 and "within 5%" in r.stop_reason
        assert [t.rate_rps for t in r.trials[:4]] == [8, 16, 32, 64]

    def test_shrinks_when_start_is_too_high(self) -> None:
        """Start above capacity: halve until a pass, then bisect."""
        r = _drive(SloSearch(start_rps=40, resolution=0.1), capacity=7)
        assert 7 / 1.1 <= r.capacity_rps <= 7 and r.trials[0].verdict == "fail"

    def test_invalid_is_repeated_then_stops(self) -> None:
        """An INVALID trial is retried at the same rate; twice INVALID ends the search and says why."""
        r = _drive(SloSearch(start_rps=8), capacity=100, invalid_at={16.0})
        assert [t.verdict for t in r.trials] == ["pass", "invalid", "invalid"]
        assert "two INVALID trials at 16" in r.stop_reason and r.capacity_rps == 8

    def test_limits(self) -> None:
        """Passing at max_rps or failing at min_rps ends the search with that statement."""
        assert "at least" in _drive(SloSearch(start_rps=8, max_rps=16), capacity=1000).stop_reason
        r = _drive(SloSearch(start_rps=8, min_rps=2), capacity=0.5)
        assert "below" in r.stop_reason and math.isnan(r.capacity_rps)

    def test_bad_arguments(self) -> None:
        """Bad knobs name the field."""
        for kw in ({"start_rps": 0}, {"start_rps": 1, "fraction": 1.5}, {"start_rps": 1, "growth": 1}):
            with pytest.raises(SpecError):
                SloSearch(**kw)  # type: ignore[arg-type]
