"""Spot interruptions at steady load on the local fleet: client-visible errors per interruption (goal 0), notice ->
deregistration, notice -> replacement healthy, and the run's cost against all on-demand.

Desired 3 (one on-demand base, two spot), capacity rebalancing on, interruptions on a schedule (AWS seconds on the
compressed clock), a steady open-loop load from mlops_lb.load. Times are printed in local seconds and in AWS
seconds (local / time_scale). Prices: mlops_lb/data/prices.csv (spot rows are dated snapshots, with sources).

The run goes through a RunSession into a run bundle (under --out) whose report has the spot section: the same
per-interruption rows (errors attributed from the load records, notice -> deregistered / replacement healthy) and
the cost incurred against all on-demand are printed here from the bundle.

Run:  PYTHONPATH=. .venv/bin/python bench/bench_spot.py [--interruptions 6] [--rps 40] [--period 2] [--out runs]
      add --no-agent to see what the agent prevents (the same run, the notice unanswered).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time

import mlops_lb as ml
from mlops_lb.analysis.spot import (
    expected_mix_cost,
    interruption_errors,
    ledger_cost,
    run_spot_cost,
    spot_prices,
)
from mlops_lb.bundle import RunBundle
from mlops_lb.load import constant
from mlops_lb.local.spot import SpotController
from mlops_lb.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interruptions", type=int, default=6)
    ap.add_argument("--every", type=float, default=25.0, help="local seconds between interruptions")
    ap.add_argument("--rps", type=float, default=40.0)
    ap.add_argument("--period", type=float, default=2.0)
    ap.add_argument("--no-agent", action="store_true")
    ap.add_argument("--out", default=None, help="bundle root (default: a temporary folder)")
    args = ap.parse_args()
    scale = args.period / 60.0
    # Interruptions are sent with fleet.interrupt() once the load is sending (the open-loop engines take seconds to
    # start on a loaded machine: a schedule from launch() put the first ones before the run), `first` s in.
    first = 10.0
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
        # The load covers every interruption plus two notices.
        duration = first + args.every * args.interruptions + 10
        out_root = args.out or tempfile.mkdtemp(prefix="bench-spot-")
        sending = threading.Event()  # the first interval summary: the engines are sending
        session = ml.RunSession(fleet, constant(args.rps, duration), out=out_root, report=False,
                                connections=16, timeout_s=10, on_interval=lambda _: sending.set()).start()  # fmt: skip
        sending.wait(120)
        t_send = time.monotonic()
        for k in range(args.interruptions):
            time.sleep(max(0.0, t_send + first + k * args.every - time.monotonic()))
            fleet.interrupt()  # type: ignore[attr-defined]  # the oldest spot target in service
        outcome = session.finish()
        result = outcome.result
        RunBundle(outcome.bundle_path).capture(fleet, tables=("spot", "events"))  # replacements known by now
        df = fleet.spot_interruptions()
        ev = fleet.events()
    report = write_report(outcome.bundle_path)
    b = RunBundle.load(outcome.bundle_path)
    per = interruption_errors(b.spot_interruptions, b.requests, events=b.events)
    win = b.window
    assert win is not None
    incurred = ledger_cost(b.spot_ledger, start=win[0], end=win[1])
    print("report rows (from the bundle):")
    print(per.to_string(index=False))
    print(f"errors outside any interruption: {per.attrs['unattributed']}; report: {report}")
    print(
        f"cost incurred in the run window: {incurred.usd:.5f} USD vs {incurred.all_on_demand_usd:.5f} all on-demand "
        f"({100 * incurred.saving_share:.1f} % saved)"
    )
    s = result.summary()
    errors = sum(n for kind, n in s["errors_by_kind"].items() if kind != "cancelled")
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
        "errors_per_interruption_attributed": float(per["client_errors"].mean()) if len(per) else None,
        "agent": not args.no_agent,
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
