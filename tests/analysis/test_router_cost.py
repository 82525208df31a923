"""The router tier's cost in the capacity plan (issue 28 item 4): instance price x count, from data/prices.csv."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_lb.analysis import plan_capacity
from mlops_lb.analysis.pricing import hourly_price
from mlops_lb.errors import SpecError


class TestRouterTierCost:
    def test_routers_are_added_to_the_hourly_cost(self, synthetic: Any) -> None:
        """usd_per_hour grows by exactly routers x the router type's price; per-request cost follows."""
        base = plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05, target_total_rps=1000)
        tier = plan_capacity(
            synthetic.sweep_steps(),
            slo_p99_s=0.05,
            target_total_rps=1000,
            router_instance_type="t3.small",
            routers=2,
        )
        price = hourly_price("t3.small", "us-east-1")
        assert tier.router_usd_per_hour == pytest.approx(2 * price)
        assert tier.usd_per_hour == pytest.approx(base.usd_per_hour + 2 * price)
        assert tier.usd_per_million_requests > base.usd_per_million_requests
        assert any("router tier: 2 x t3.small" in n for n in tier.notes)
        assert base.router_usd_per_hour is None

    def test_bad_router_arguments_are_refused(self, synthetic: Any) -> None:
        with pytest.raises(SpecError, match="router_instance_type"):
            plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05, routers=1)
        with pytest.raises(SpecError, match="routers"):
            plan_capacity(
                synthetic.sweep_steps(), slo_p99_s=0.05, routers=-1, router_instance_type="t3.small"
            )
        with pytest.raises(SpecError, match="prices"):  # a type without a price names how to add one
            plan_capacity(synthetic.sweep_steps(), slo_p99_s=0.05, routers=1, router_instance_type="zz9.huge")
