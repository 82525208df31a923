"""Analysis of load tests and scaling runs: capacity plan, what-if replay, scale-out waterfall, prices.

Everything here is a function of data (DataFrames, bundles, specs): no AWS, no processes.

Example::

    from mlops_lb.analysis import plan_capacity, replay, scale_out_waterfall
    plan = plan_capacity(result, slo_p99_s=0.1, target_total_rps=800, launch_to_ready_s=90)
    what_if = replay(request_counts, policy=ScalingPolicySpec(target_rps_per_target=30, warmup_s=120), max=8)
    scale_out_waterfall(bundle.events, bundle.requests)
"""

from __future__ import annotations

from .capacity import CapacityPlan, find_knee, plan_capacity, sweep_steps
from .goodput import goodput_steps
from .pricing import (
    RunCost,
    alb_hourly_cost,
    estimate_lcu,
    hourly_price,
    refresh_prices_from_aws,
    register_price,
    run_cost,
)
from .replay import ReplayResult, replay, reproduce
from .waterfall import scale_out_waterfall

__all__ = [
    "CapacityPlan",
    "ReplayResult",
    "RunCost",
    "alb_hourly_cost",
    "estimate_lcu",
    "find_knee",
    "goodput_steps",
    "hourly_price",
    "plan_capacity",
    "refresh_prices_from_aws",
    "register_price",
    "replay",
    "reproduce",
    "run_cost",
    "scale_out_waterfall",
    "sweep_steps",
]
