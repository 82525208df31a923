"""Issue 27's closing demo on the local LLM-emulator fleet: a capacity search and a sweep of four variants with its
Pareto plot and recommendation, costs per 1M good tokens as if priced at g6.xlarge. (The A/A and A/B comparisons
come from ``bench/bench_compare.py``.) Takes about 5 minutes on two cores.

    PYTHONPATH=$PWD python bench/bench_compare_demo.py --out /tmp/econ-demo
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

import mlops_lb as ml

SLO = {"ttft_s": 0.5, "tpot_s": 0.05}


def base_spec() -> ml.FleetSpec:
    return ml.FleetSpec.from_dict({
        "name": "which-fleet",
        "capacity": {"min": 1, "desired": 1, "max": 1},
        "health_check": {"path": "/health", "interval_s": 5, "timeout_s": 2, "healthy_threshold": 2,
                         "unhealthy_threshold": 2, "grace_period_s": 60},
        "target_group": {"algorithm": "least_outstanding_requests"},
        "server": {"kind": "llm-emulator", "llm": {"max_num_seqs": 4, "decode_ms_per_token": 10, "seed": 1}},
        "local": {"period_s": 1.0},
    })  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/econ-demo")
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    if not args.skip_search:
        t0 = time.monotonic()
        with ml.open_fleet(base_spec()) as fleet:
            fleet.launch(on_output=None)
            r = ml.capacity_search(fleet, slo=SLO, instances=1, start_rps=4, duration_s=15, resolution=0.1,
                                   price_as="g6.xlarge")  # fmt: skip
        print(r)
        cols = ["rate_rps", "verdict", "good_fraction", "ttft_p99_s", "tpot_p99_s", "usd_per_million_good_tokens",
                "stopped_early", "seconds"]  # fmt: skip
        print(r.trials_frame()[cols].to_string(index=False))
        print(f"capacity search took {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    variants = [
        {"name": "1 x seqs4", "replicas": 1, "max_num_seqs": 4},
        {"name": "1 x seqs8", "replicas": 1, "max_num_seqs": 8},
        {"name": "2 x seqs4", "replicas": 2, "max_num_seqs": 4},
        {"name": "2 x seqs4 rr", "replicas": 2, "max_num_seqs": 4, "algorithm": "round_robin"},
        {"name": "3 x seqs4", "replicas": 3, "max_num_seqs": 4},
    ]
    s = ml.sweep_configs(base_spec(), variants=variants, profile=ml.load.constant(12, 20), slo=SLO,
                         price_as="g6.xlarge")  # fmt: skip
    cols = ["variant", "instances", "good_fraction", "ttft_p99_s", "tpot_p50_s", "tokens_per_s_per_user",
            "tokens_per_s_per_instance", "usd_per_million_output_tokens", "usd_per_million_good_tokens",
            "usd_per_million_tokens_gke", "pareto_cost_ttft", "pareto_throughput", "met_slo", "seconds"]  # fmt: skip
    print(s.frame[cols].to_string(index=False))
    print(s.recommendation)
    s.frame.to_csv(out / "sweep.csv", index=False)
    s.pareto_plot().savefig(out / "pareto.png", dpi=90, bbox_inches="tight")
    print(f"sweep took {time.monotonic() - t0:.0f} s; wrote {out / 'sweep.csv'} and {out / 'pareto.png'}")


if __name__ == "__main__":
    main()
