"""Spot interruptions at steady load on the local fleet: client-visible errors per interruption (goal 0), notice ->
deregistration, notice -> replacement healthy, and the run's cost against all on-demand.

Desired 3 (one on-demand base, two spot), capacity rebalancing on, interruptions on a schedule (AWS seconds on the
compressed clock), a steady open-loop load from mlops_lb.load. Times are printed in local seconds and in AWS
seconds (local / time_scale). Prices: mlops_lb/data/prices.csv (spot rows are dated snapshots, with sources).

Run:  PYTHONPATH=. .venv/bin/python bench/bench_spot.py [--interruptions 6] [--rps 40] [--period 2]
      add --no-agent to see what the agent prevents (the same run, the notice unanswered).
"""

from __future__ import annotations

import argparse
import json
import statistics

import mlops_lb as ml
from mlops_lb.analysis.spot import expected_mix_cost, run_spot_cost, spot_prices
from mlops_lb.load import constant, run_load
from mlops_lb.local.spot import SpotController


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interruptions", type=int, default=6)
    ap.add_argument("--every", type=float, default=25.0, help="local seconds between interruptions")
    ap.add_argument("--rps", type=float, default=40.0)
    ap.add_argument("--period", type=float, default=2.0)
    ap.add_argument("--no-agent", action="store_true")
    args = ap.parse_args()
    scale = args.period / 60.0
    first = 30.0  # after launch() returns (targets boot in ~20 s here): every scheduled one has a spot target
    at_aws = [(first + k * args.every) / scale for k in range(args.interruptions)]
    spec = ml.FleetSpec(
        name="bench-spot",
        region="us-east-1",
        instance={"type": "t3.small"},
        capacity={
            "min": 3,
            "desired": 3,
            "max": 5,
            "spot": {
                "on_demand_base": 1,
                "on_demand_percent": 0,
                "instance_types": ["t3.small"],
                "capacity_rebalance": True,
                "local_interrupt_at_s": at_aws,
            },
        },
        health_check={"interval_s": 10, "timeout_s": 5, "healthy_threshold": 2, "unhealthy_threshold": 2},
        target_group={"deregistration_delay_s": 60},
        scaling={"target_rps_per_target": 10_000, "warmup_s": 60, "scale_in_enabled": False},
        local={"period_s": args.period, "slots": 4, "min_service_ms": 20},
    )
    if args.no_agent:
        SpotController.run_agents = False
    print("planner:", spot_prices(spec).to_string(index=False))
    mix = expected_mix_cost(spec)
    print(
        f"planner: desired {mix.capacity}: {mix.on_demand_units} on-demand + {mix.spot_units} spot = "
        f"{mix.usd_per_hour:.4f} USD/h vs {mix.all_on_demand_usd_per_hour:.4f} all on-demand "
        f"(saving {100 * mix.saving_share:.1f} %; {mix.spot_basis})"
    )
    with ml.open_fleet(spec, backend="local") as fleet:
        fleet.launch()
        # The spot controller's clock started at launch(); the load covers every scheduled interruption + 2 notices.
        duration = first + args.every * args.interruptions + 10
        result = run_load(
            fleet.url + "/predict", constant(args.rps, duration), connections=16, progress=False, timeout_s=10
        )
        df = fleet.spot_interruptions()
        ev = fleet.events()
    s = result.summary()
    errors = int(s["errors"])
    n = len(df)
    ledger = df.attrs["ledger"]
    cost = run_spot_cost(
        ledger, end_s=df.attrs["now_s"], time_scale=scale, interruptions=n, client_errors=errors
    )
    print(
        f"load: {s['requests']} requests at {args.rps:g} rps for {duration:.0f} s; errors {errors} {s['errors_by_kind']}"
    )
    cols = ["target", "notice_s", "deregistered_s", "terminated_s", "replacement", "replacement_healthy_s",
            "notice_to_deregistered_s", "notice_to_replacement_healthy_s"]  # fmt: skip
    print(df[cols].to_string(index=False))
    d = df["notice_to_deregistered_s"].dropna()
    r = df["notice_to_replacement_healthy_s"].dropna()
    out = {
        "interruptions": n,
        "client_errors": errors,
        "errors_per_interruption": cost.errors_per_interruption,
        "notice_to_deregistered_local_s": {"median": statistics.median(d), "max": max(d)} if len(d) else None,
        "notice_to_deregistered_aws_s": {"median": statistics.median(d) / scale, "max": max(d) / scale} if len(d) else None,
        "notice_to_replacement_healthy_local_s": {"median": statistics.median(r), "max": max(r)} if len(r) else None,
        "notice_to_replacement_healthy_aws_s": {"median": statistics.median(r) / scale, "max": max(r) / scale} if len(r) else None,
        "run_usd": cost.usd,
        "all_on_demand_usd": cost.all_on_demand_usd,
        "saving_share": cost.saving_share,
        "spot_instance_hours": cost.spot_instance_hours,
        "on_demand_instance_hours": cost.on_demand_instance_hours,
        "events": {k: int(v) for k, v in ev["kind"].value_counts().items() if str(k).startswith("spot")},
        "agent": not args.no_agent,
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
