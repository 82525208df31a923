"""The capacity planner against hand-worked sweeps."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from mlops_lb.analysis import CapacityPlan, find_knee, plan_capacity, sweep_steps
from mlops_lb.errors import SpecError


class TestHandWorked:
    def test_plan_numbers(self, synthetic: Any) -> None:
        """Sweep 100..500 rps, p99 10/11/12/20/100 ms, errors 0/0/0/0.1%/5%, SLO 50 ms, 1 % errors:

        * max OK rate: 400 (500 fails p99 100 > 50 and errors 5 % > 1 %);
        * knee (kneedle): chord from (100, 10 ms) to (500, 100 ms) = 10 + (rate - 100) x 0.225 ms: 32.5, 55, 77.5 at
          200/300/400; chord - p99 = 21.5, 43, 57.5 -> 400 rps (p99 20 ms);
        * instances for 1000 rps: ceil(1000 / 400) = 3; at the target: ceil(1000 / 280) = 4;
        * target value: 0.7 x 400 = 280 rps per target = 280 x 60 = 16800 per minute;
        * warm-up: 95 s launch-to-ready -> 120 s (whole minutes);
        * cost: LCU at 1000 rps = max(1000/100/25 = 0.4, 10 x 60/3000 = 0.2, 1000 x 2000 x 3600/1e9 = 7.2) = 7.2;
          4 x 0.0208 + 0.0225 + 7.2 x 0.008 = 0.0832 + 0.0801 = 0.1633 USD/h;
          per million: 0.1633 / (1000 x 3600) x 1e6 = 0.045361 USD.
        """
        plan = plan_capacity(
            synthetic.sweep_steps(), slo_p99_s=0.050, target_total_rps=1000, launch_to_ready_s=95
        )
        assert plan.max_ok_rate_per_target == 400.0
        assert plan.knee_rate_per_target == 400.0
        assert plan.knee_p99_s == pytest.approx(0.020)
        assert plan.instances_needed == 3
        assert plan.instances_recommended == 4
        assert plan.recommended_rps_per_target == pytest.approx(280.0)
        assert plan.recommended_target_value_per_minute == pytest.approx(16800.0)
        assert plan.recommended_warmup_s == 120
        assert plan.instance_usd_per_hour == 0.0208
        assert plan.usd_per_hour == pytest.approx(0.1633)
        assert plan.usd_per_million_requests == pytest.approx(0.1633 / 3600 * 1000)
        assert plan.price_as_of == "2026-12-06"
        assert plan.notes == ()

    def test_per_target_division_and_error_bound(self) -> None:
        """Two targets in test: rates halve. 600 rps total passes p99 but has 2 % errors > 1 %, so the limit is
        400 total = 200 per target; 0.5 x 200 = 100 rps -> 6000/min; 900 rps -> ceil(900/200) = 5 instances."""
        steps = pd.DataFrame(
            {"rate": [200.0, 400.0, 600.0], "p99_s": [0.01, 0.012, 0.015], "error_rate": [0.0, 0.005, 0.02]}
        )
        plan = plan_capacity(steps, slo_p99_s=0.1, targets_in_test=2, safety_factor=0.5, target_total_rps=900)
        assert plan.max_ok_rate_per_target == 200.0
        assert plan.recommended_target_value_per_minute == 6000.0
        assert plan.instances_needed == 5
        assert plan.instances_recommended == 9

    def test_pass_after_failure_is_ignored(self) -> None:
        """A step passing above a failing one does not raise the limit, and the plan says so."""
        steps = pd.DataFrame(
            {"rate": [100.0, 200.0, 300.0], "p99_s": [0.01, 0.2, 0.02], "error_rate": [0, 0, 0]}
        )
        plan = plan_capacity(steps, slo_p99_s=0.05)
        assert plan.max_ok_rate_per_target == 100.0
        assert any("noise" in n for n in plan.notes)

    def test_nothing_passes(self) -> None:
        """No passing step: no limit, no instances, no cost, and a note on what to do."""
        steps = pd.DataFrame({"rate": [100.0, 200.0], "p99_s": [0.5, 0.9], "error_rate": [0, 0]})
        plan = plan_capacity(steps, slo_p99_s=0.05, target_total_rps=500)
        assert plan.max_ok_rate_per_target is None and plan.instances_needed is None
        assert plan.usd_per_hour is None
        assert "no step met the SLO" in plan.notes[0]

    def test_without_total_prices_one_instance(self, synthetic: Any) -> None:
        """Without target_total_rps the cost is one instance at the recommended 280 rps:
        LCU = max(0.112, 0.056, 2.016) = 2.016; 0.0208 + 0.0225 + 2.016 x 0.008 = 0.059428 USD/h."""
        plan = plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05)
        assert plan.instances_needed is None
        assert plan.usd_per_hour == pytest.approx(0.059428)
        assert plan.recommended_warmup_s is None


class TestKnee:
    def test_linear_has_no_knee(self) -> None:
        """A straight line bends nowhere."""
        assert find_knee([1, 2, 3, 4], [1, 2, 3, 4]) is None

    def test_too_few_points(self) -> None:
        """Two points are not enough for a knee."""
        assert find_knee([1, 2], [1, 5]) is None

    def test_not_rising_has_no_knee(self) -> None:
        """p99 that ends lower than it starts, or bulges above the chord, has no knee (a noisy fast server)."""
        assert find_knee([100, 300, 500], [0.003, 0.016, 0.006]) is None
        assert find_knee([100, 300, 500], [0.003, 0.016, 0.017]) is None

    def test_hockey_stick(self) -> None:
        """Flat then steep: the knee is the last flat point."""
        assert find_knee([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 5, 20]) == 3


class TestInputs:
    def test_sweep_intervals_aggregate_per_step(self) -> None:
        """Sweep intervals group by step_rps: worst p99 of the step, errors / sent."""
        iv = pd.DataFrame(
            {
                "step_rps": [100.0, 100.0, 200.0, 200.0, float("nan")],
                "p99_s": [0.01, 0.03, 0.02, 0.04, 9.0],
                "sent": [100, 100, 200, 200, 5],
                "errors": [0, 2, 0, 0, 5],
            }
        )
        s = sweep_steps(iv)
        assert list(s["rate"]) == [100.0, 200.0]
        assert list(s["p99_s"]) == [0.03, 0.04]
        assert list(s["error_rate"]) == [0.01, 0.0]

    def test_result_with_steps_method(self, synthetic: Any) -> None:
        """A LoadResult-like object with steps() is accepted."""

        class Result:
            def steps(self) -> pd.DataFrame:
                return synthetic.sweep_steps()

        assert plan_capacity(Result(), slo_p99_s=0.05).max_ok_rate_per_target == 400.0

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"slo_p99_s": 0}, "slo_p99_s"),
            ({"slo_p99_s": 0.1, "safety_factor": 1.5}, "safety_factor"),
            ({"slo_p99_s": 0.1, "targets_in_test": 0}, "targets_in_test"),
            ({"slo_p99_s": 0.1, "max_error_rate": 2}, "max_error_rate"),
            ({"slo_p99_s": 0.1, "instance_type": "z9.huge"}, "instance_type"),
        ],
    )
    def test_bad_arguments_name_the_field(self, synthetic: Any, kwargs: dict[str, Any], field: str) -> None:
        """Invalid arguments raise SpecError naming the field."""
        with pytest.raises(SpecError) as exc:
            plan_capacity(synthetic.sweep_steps(), **kwargs)
        assert exc.value.field == field

    def test_wrong_frame(self) -> None:
        """A frame without sweep columns is a SpecError listing what is needed."""
        with pytest.raises(SpecError, match="rate, p99_s, error_rate"):
            plan_capacity(pd.DataFrame({"x": [1]}), slo_p99_s=0.1)


class TestPlanObject:
    def test_repr_dict_and_html(self, synthetic: Any) -> None:
        """The plan is frozen, has a readable repr, an HTML table, and a JSON-friendly dict without the frame."""
        plan = plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05, target_total_rps=1000)
        assert isinstance(plan, CapacityPlan)
        text = repr(plan)
        assert (
            "16800 ALBRequestCountPerTarget (per minute)" in text
            and "3 needed, 4 at the target value" in text
        )
        assert "<table>" in plan._repr_html_() and "Capacity plan" in plan._repr_html_()
        d = plan.to_dict()
        assert "steps" not in d and d["instances_needed"] == 3 and isinstance(d["notes"], list)
        with pytest.raises(AttributeError):
            plan.instances_needed = 9  # type: ignore[misc]
        assert not math.isnan(d["usd_per_hour"])


class TestLlmBounds:
    """How many instances for R requests/s within TTFT p99 <= a and TPOT p99 <= b, from a streamed sweep."""

    STEPS = pd.DataFrame(
        {
            "rate": [4.0, 8.0, 12.0, 16.0],
            "p99_s": [2.0, 2.5, 3.5, 9.0],
            "error_rate": [0.0, 0.0, 0.0, 0.0],
            "ttft_p99_s": [0.20, 0.30, 0.45, 3.00],
            "tpot_p99_s": [0.020, 0.030, 0.060, 0.090],
        }
    )

    def test_hand_worked(self) -> None:
        """Two targets in the test: 2/4/6/8 rps per target. TTFT p99 <= 500 ms passes 2, 4 and 6; TPOT p99 <= 50 ms
        passes 2 and 4 only: the limit is 4 rps per target. For 30 rps: ceil(30 / 4) = 8 instances; at the 0.7
        safety factor 2.8 rps per target -> ceil(30 / 2.8) = ceil(10.71) = 11. Either bound alone: TTFT gives 6
        (ceil(30 / 6) = 5 instances); TPOT gives 4."""
        plan = plan_capacity(
            self.STEPS, slo_ttft_p99_s=0.5, slo_tpot_p99_s=0.05, targets_in_test=2, target_total_rps=30
        )
        assert plan.max_ok_rate_per_target == 4.0
        assert plan.instances_needed == 8 and plan.instances_recommended == 11
        assert plan.recommended_rps_per_target == pytest.approx(2.8)
        assert plan.steps is not None and plan.steps["passed"].tolist() == [True, True, False, False]
        assert plan.slo_p99_s is None and (plan.slo_ttft_p99_s, plan.slo_tpot_p99_s) == (0.5, 0.05)
        assert "TTFT p99 <= 500 ms, TPOT p99 <= 50 ms" in repr(plan)
        ttft_only = plan_capacity(self.STEPS, slo_ttft_p99_s=0.5, targets_in_test=2, target_total_rps=30)
        assert ttft_only.max_ok_rate_per_target == 6.0 and ttft_only.instances_needed == 5
        # with the end-to-end bound too: 3.5 s > 3 s fails the 12 rps step, so TTFT + p99 also stop at 8 rps
        both = plan_capacity(self.STEPS, slo_p99_s=3.0, slo_ttft_p99_s=0.5, targets_in_test=2)
        assert both.max_ok_rate_per_target == 4.0

    def test_from_streamed_sweep_intervals(self) -> None:
        """Intervals of a streamed sweep: the worst interval's TTFT/TPOT p99 per step (conservative)."""
        t = pd.date_range("2026-01-01", periods=4, freq="1s", tz="UTC")
        iv = pd.DataFrame(
            {
                "interval_start": t,
                "step_rps": [5.0, 5.0, 10.0, 10.0],
                "p99_s": [1.0, 1.1, 1.5, 1.6],
                "sent": [5, 5, 10, 10],
                "errors": [0, 0, 0, 0],
                "ttft_p99_s": [0.1, 0.3, 0.2, 0.9],
                "tpot_p99_s": [0.01, 0.01, 0.02, 0.02],
            }
        )
        steps = sweep_steps(iv)
        assert steps["ttft_p99_s"].tolist() == [0.3, 0.9]
        plan = plan_capacity(iv, slo_ttft_p99_s=0.5, target_total_rps=12)
        assert plan.max_ok_rate_per_target == 5.0 and plan.instances_needed == 3

    def test_bad_bounds_are_named(self) -> None:
        with pytest.raises(SpecError, match=r"slo_p99_s.*is required unless slo_ttft_p99_s"):
            plan_capacity(self.STEPS)
        with pytest.raises(SpecError, match="slo_tpot_p99_s"):
            plan_capacity(self.STEPS, slo_tpot_p99_s=-1)
        no_stream = self.STEPS.drop(columns=["ttft_p99_s", "tpot_p99_s"])
        with pytest.raises(SpecError, match="needs ttft_p99_s per step"):
            plan_capacity(no_stream, slo_ttft_p99_s=0.5)


class TestTokenPricedPlan:
    def test_usd_per_million_output_tokens(self) -> None:
        """A streamed sweep (20 tokens per request) prices the planned tokens: hand-worked.

        max OK 400 rps (as above), 1000 rps total -> 4 x 0.0208 + ALB 0.0801 = 0.1633 USD/h; tokens per hour
        1000 x 20 x 3600 = 72e6 -> 0.1633 / 72 = 0.0022681 USD per million output tokens.
        """
        steps = pd.DataFrame(
            {
                "rate": [100, 200, 300, 400, 500],
                "p99_s": [0.010, 0.012, 0.015, 0.020, 0.100],
                "error_rate": [0, 0, 0, 0, 0.05],
                "tokens_per_request": [20.0] * 5,
            }
        )
        plan = plan_capacity(steps, slo_p99_s=0.050, target_total_rps=1000)
        assert plan.usd_per_million_output_tokens == pytest.approx(0.1633 / 72)
        assert "USD per million output tokens" in repr(plan)
        # a request-only sweep keeps no token figure
        plan2 = plan_capacity(
            steps.drop(columns="tokens_per_request"), slo_p99_s=0.050, target_total_rps=1000
        )
        assert plan2.usd_per_million_output_tokens is None
