"""Analysis of load tests and scaling runs: capacity plan, what-if replay, scale-out waterfall, prices.

Everything here is a function of data (DataFrames, bundles, specs): no AWS, no processes.

Example::

    from mlops_lb.analysis import plan_capacity, replay, scale_out_waterfall
    plan = plan_capacity(result, slo_p99_s=0.1, target_total_rps=800, launch_to_ready_s=90)
    what_if = replay(request_counts, policy=ScalingPolicySpec(target_rps_per_target=30, warmup_s=120), max=8)
    scale_out_waterfall(bundle.events, bundle.requests)
    compare(run_a, run_b, slo={"ttft_s": 1.0}).verdict        # differences with intervals (compare.py)
    token_cost(instance_type="g5.xlarge", instance_seconds=3600, output_tokens=2e6, requests=1e4)
"""

from __future__ import annotations

from .capacity import CapacityPlan, find_knee, plan_capacity, sweep_steps
from .compare import Comparison, compare, run_intervals
from .economics import TokenCost, good_tokens, token_cost
from .goodput import goodput_steps
from .pricing import (
    RunCost,
    alb_hourly_cost,
    estimate_lcu,
    hourly_price,
    prices,
    refresh_prices_from_aws,
    refresh_spot_prices_from_aws,
    register_price,
    run_cost,
    spot_snapshot,
)
from .replay import ReplayResult, replay, reproduce
from .search import SearchResult, SloSearch, Trial, judge_trial
from .slo_cost import scale_out_slo_cost
from .waterfall import scale_out_waterfall

__all__ = [
    "CapacityPlan",
    "Comparison",
    "ReplayResult",
    "RunCost",
    "SearchResult",
    "SloSearch",
    "TokenCost",
    "Trial",
    "alb_hourly_cost",
    "compare",
    "estimate_lcu",
    "find_knee",
    "good_tokens",
    "goodput_steps",
    "hourly_price",
    "judge_trial",
    "plan_capacity",
    "prices",
    "refresh_prices_from_aws",
    "refresh_spot_prices_from_aws",
    "register_price",
    "replay",
    "reproduce",
    "run_cost",
    "run_intervals",
    "scale_out_slo_cost",
    "scale_out_waterfall",
    "spot_snapshot",
    "sweep_steps",
    "token_cost",
]
