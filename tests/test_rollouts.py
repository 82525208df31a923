"""The backend-neutral rollout types: strategies' steps and bounds, the guard's pure decision, what may change.

Bounds are SageMaker's TrafficRoutingConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
API_TrafficRoutingConfig.html, read 2026-12-07): WaitIntervalInSeconds 0-3600, CanarySize <= 50 %, LinearStepSize
10-50 %.
"""

from __future__ import annotations

import math

import pytest

from mlops_lb.errors import SpecError
from mlops_lb.rollouts import (
    ROLLOUT_STATES,
    AllAtOnce,
    Canary,
    Guard,
    Linear,
    VariantStats,
    check_guard,
    guard_decision,
    judge_interval,
    new_spec,
    rollout_event,
    strategy_from_dict,
)
from mlops_lb.spec import FleetSpec

# (strategy, field, value, allowed-by-the-rule)
RULES = [
    (Canary, "percent", 50, True),  # CanarySize <= 50 %
    (Canary, "percent", 50.5, False),
    (Canary, "percent", 0, False),  # a canary of nothing tests nothing
    (Linear, "step_percent", 10, True),  # LinearStepSize 10-50 %
    (Linear, "step_percent", 9.9, False),
    (Linear, "step_percent", 50, True),
    (Linear, "step_percent", 51, False),
    (AllAtOnce, "bake_s", 3600, True),  # WaitIntervalInSeconds 0-3600
    (AllAtOnce, "bake_s", 3601, False),
    (AllAtOnce, "bake_s", -1, False),
]


class TestStrategies:
    @pytest.mark.parametrize(("cls", "name", "value", "ok"), RULES)
    def test_documented_bounds_both_ways(self, cls, name, value, ok):
        """Each bound accepts its edge and refuses just past it, naming the field."""
        if ok:
            assert getattr(cls(**{name: value}), name) == value
        else:
            with pytest.raises(SpecError, match=rf"strategy\.{name}"):
                cls(**{name: value})

    def test_steps(self):
        """Canary: two shifts; linear: equal steps ending at 100; all at once: one."""
        assert Canary(percent=10, bake_s=5).steps() == ((10.0, 5.0), (100.0, 5.0))
        assert [p for p, _ in Linear(step_percent=30, bake_s=1).steps()] == [30, 60, 90, 100]
        assert [p for p, _ in Linear(step_percent=25, bake_s=1).steps()] == [25, 50, 75, 100]
        assert AllAtOnce(bake_s=2).steps() == ((100.0, 2.0),)

    def test_from_dict_round_trip_and_typo(self):
        """A strategy written as a mapping comes back equal; a typo'd key gets a suggestion."""
        s = strategy_from_dict({"kind": "linear", "step_percent": 20, "bake_s": 5})
        assert s == Linear(step_percent=20, bake_s=5)
        with pytest.raises(SpecError, match="did you mean 'percent'"):
            strategy_from_dict({"kind": "canary", "precent": 10})
        with pytest.raises(SpecError, match=r"strategy\.kind"):
            strategy_from_dict({"kind": "bluegreen"})


class TestGuardDecision:
    G = Guard(p99_s=0.1, max_error_share=0.01, min_requests=10, breach_intervals=2)
    GOOD = VariantStats(requests=50, errors=0, p99_s=0.05)
    SLOW = VariantStats(requests=50, errors=0, p99_s=0.3)

    def test_two_consecutive_breaches_roll_back_one_does_not(self):
        """breach_intervals=2: one slow interval continues, the second in a row rolls back with the evidence."""
        one = guard_decision(self.G, [{"new": self.GOOD}, {"new": self.SLOW}])
        assert one.action == "continue"
        two = guard_decision(self.G, [{"new": self.GOOD}, {"new": self.SLOW}, {"new": self.SLOW}])
        assert two.action == "rollback"
        assert "p99 0.300 s > guard.p99_s 0.100 s" in two.reason
        assert [e["interval"] for e in two.evidence] == [1, 2]
        assert two.evidence[0]["stats"]["new"]["p99_s"] == 0.3

    def test_a_clean_interval_breaks_the_run(self):
        """slow, good, slow is not two consecutive breaches."""
        d = guard_decision(self.G, [{"new": self.SLOW}, {"new": self.GOOD}, {"new": self.SLOW}])
        assert d.action == "continue"

    def test_errors_breach_and_small_intervals_are_not_judged(self):
        """An error share above the bound breaches; an interval under min_requests is not judged either way."""
        bad = VariantStats(requests=100, errors=2, p99_s=0.01)
        assert judge_interval(self.G, {"new": bad}).breaches[0].startswith("error share 2.0%")
        assert not judge_interval(self.G, {"new": VariantStats(requests=100, errors=1, p99_s=0.01)}).breached
        tiny = VariantStats(requests=3, errors=3, p99_s=9.0)
        assert not judge_interval(self.G, {"new": tiny}).judged
        # unjudged intervals between two breaches neither reset nor count
        d = guard_decision(self.G, [{"new": self.SLOW}, {"new": tiny}, {"new": self.SLOW}])
        assert d.action == "rollback"

    def test_bake_over_promotes_only_with_evidence(self):
        """At the bake's end: clean judged intervals promote; no judged interval at all rolls back."""
        assert guard_decision(self.G, [{"new": self.GOOD}] * 3, bake_over=True).action == "promote"
        none = guard_decision(self.G, [{"new": VariantStats(2, 0, 0.01)}] * 3, bake_over=True)
        assert none.action == "rollback" and "no evidence" in none.reason

    def test_relative_to_old(self):
        """p99_vs_old compares against the old variant's p99 in the same interval."""
        g = Guard(p99_vs_old=1.5, min_requests=10, breach_intervals=1)
        old = VariantStats(100, 0, 0.1)
        assert guard_decision(g, [{"new": VariantStats(50, 0, 0.14), "old": old}]).action == "continue"
        assert guard_decision(g, [{"new": VariantStats(50, 0, 0.16), "old": old}]).action == "rollback"

    def test_nan_latency_is_no_breach(self):
        """A variant whose p99 is unknown (NaN) is judged on errors only."""
        v = judge_interval(self.G, {"new": VariantStats(50, 0, math.nan)})
        assert v.judged and not v.breached


class TestValidation:
    def test_guard_fields(self):
        """Out-of-range guard fields name themselves."""
        with pytest.raises(SpecError, match=r"guard\.max_error_share"):
            Guard(max_error_share=1.5)
        with pytest.raises(SpecError, match=r"guard\.breach_intervals"):
            Guard(breach_intervals=3)
        with pytest.raises(SpecError, match="did you mean 'p99_s'"):
            check_guard({"p99": 0.1}, FleetSpec(name="x"))

    def test_ttft_needs_a_streaming_workload_and_the_client(self):
        """TTFT on the model server (no streaming) is refused; on the LLM emulator it is fine from the client only."""
        with pytest.raises(SpecError, match=r"guard\.ttft_p99_s needs a streaming server"):
            check_guard(Guard(ttft_p99_s=0.5), FleetSpec(name="x"))
        llm = FleetSpec(name="x", server={"kind": "llm-emulator"})
        assert check_guard(Guard(ttft_p99_s=0.5), llm).ttft_p99_s == 0.5
        with pytest.raises(SpecError, match="measured by the client only"):
            check_guard(Guard(ttft_p99_s=0.5), llm, source="fleet")

    def test_new_spec_parts(self):
        """Only model/server/instance/local may change; a no-op and a shared part are refused."""
        cur = FleetSpec(name="x")
        assert new_spec(cur, {"local": {"min_service_ms": 40}}).local.min_service_ms == 40
        with pytest.raises(SpecError, match=r"new\.health_check cannot change"):
            new_spec(cur, {"health_check": {"path": "/x"}})
        with pytest.raises(SpecError, match="changes nothing"):
            new_spec(cur, {"local": {"min_service_ms": cur.local.min_service_ms}})
        with pytest.raises(SpecError, match=r"new\.name cannot change"):
            new_spec(cur, FleetSpec(name="y"))
        with pytest.raises(SpecError, match=r"local\.min_service_ms"):
            new_spec(cur, {"local": {"min_service_ms": -1}})

    def test_event_shape(self):
        """Events carry the agreed keys; unknown kinds and states are refused."""
        ev = rollout_event("interval", "baking", step=1, percent=10, stats={"new": VariantStats(5)})
        assert set(ev) == {"timestamp", "kind", "state", "step", "percent", "detail", "stats", "evidence"}
        assert ev["stats"]["new"]["requests"] == 5
        assert "interrupted" in ROLLOUT_STATES
        with pytest.raises(SpecError, match="state"):
            rollout_event("shift", "shifting", step=0, percent=1)  # type: ignore[arg-type]
