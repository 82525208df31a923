"""Calibrate ml.compare on the local LLM-emulator fleet (issue 27): A/A false positives and a +25 % decode change.

Not part of the test command (it takes ~20 minutes on two cores). It launches one real fleet (HAProxy + one
emulator target), runs ``--pairs`` A/A pairs of the same configuration (Poisson arrivals, a fresh seed per run) and
compares each pair; then relaunches with ``decode_ms_per_token`` x 1.25 and compares ``--detect`` runs of it with A
runs. Prints per-figure and family-wise false-positive rates (the stated level is 5 % family-wise, Bonferroni) and
whether the decode change was detected (TPOT worse with an interval excluding 0), with every interval.

    PYTHONPATH=$PWD python bench/bench_compare.py --pairs 10 --duration-s 50 --rps 6
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter

import mlops_lb as ml
from mlops_lb.analysis.compare import compare
from mlops_lb.experiments import run_trial, wait_for_capacity

PRICE = "g6.xlarge"


def spec(decode_ms: float, seqs: int) -> ml.FleetSpec:
    return ml.FleetSpec.from_dict({
        "name": "bench-compare",
        "capacity": {"min": 1, "desired": 1, "max": 1},
        "health_check": {"path": "/health", "interval_s": 5, "timeout_s": 2, "healthy_threshold": 2,
                         "unhealthy_threshold": 2, "grace_period_s": 60},
        "server": {"kind": "llm-emulator", "llm": {"max_num_seqs": seqs, "decode_ms_per_token": decode_ms, "seed": 1}},
        "local": {"period_s": 1.0},
    })  # fmt: skip


def runs(decode_ms: float, seqs: int, n: int, args: argparse.Namespace, seed0: int) -> list:
    out = []
    with ml.open_fleet(spec(decode_ms, seqs)) as fleet:
        fleet.launch(on_output=None)
        wait_for_capacity(fleet, 1)
        for i in range(n):
            t0 = time.monotonic()
            trial, res = run_trial(
                fleet, args.rps, duration_s=args.duration_s, slo=SLO, seed_offset=seed0 + i
            )
            print(f"  run {seed0 + i}: {trial.verdict} valid={trial.valid} good={trial.good_fraction:.3f} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
            out.append(res)
            time.sleep(2)
    return out


SLO = {"ttft_s": 0.5, "tpot_s": 0.05}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--detect", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=50.0)
    ap.add_argument("--rps", type=float, default=6.0)
    ap.add_argument("--decode-ms", type=float, default=10.0)
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    usd_h = ml.analysis.hourly_price(PRICE, "us-east-1")
    t0 = time.monotonic()
    print(
        f"A: decode {args.decode_ms} ms/token, max_num_seqs {args.seqs}, {args.rps} rps x {args.duration_s} s"
    )
    a = runs(args.decode_ms, args.seqs, 2 * args.pairs, args, 0)
    per_fig: Counter[str] = Counter()
    family = 0
    out: dict = {"aa": [], "detect": []}
    for i in range(args.pairs):
        c = compare(a[2 * i], a[2 * i + 1], slo=SLO, usd_per_hour=usd_h, names=(f"A{2 * i}", f"A{2 * i + 1}"))
        flagged = list(c.table.loc[c.table["verdict"].isin(["better", "worse"]), "figure"])
        per_fig.update(flagged)
        family += bool(flagged)
        print(f"A/A pair {i}: {c.verdict} {flagged}")
        out["aa"].append({"verdict": c.verdict, "flagged": flagged, "table": c.table.to_dict("records")})
    print(
        f"A/A family-wise false positives: {family}/{args.pairs} (stated level 5 %); per figure: {dict(per_fig)}"
    )
    print(f"B: decode {args.decode_ms * 1.25} ms/token (+25 %)")
    b = runs(args.decode_ms * 1.25, args.seqs, args.detect, args, 1000)
    detected = 0
    for i in range(args.detect):
        c = compare(a[i], b[i], slo=SLO, usd_per_hour=usd_h, names=(f"A{i}", f"B{i}"))
        row = c.table.set_index("figure").loc["tpot_p50_s"]
        hit = row["verdict"] == "worse"
        detected += hit
        print(c)
        out["detect"].append({"verdict": c.verdict, "table": c.table.to_dict("records")})
    print(f"+25 % decode_ms_per_token detected (TPOT p50 worse) in {detected}/{args.detect} pairs")
    print(f"took {time.monotonic() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, default=str, indent=1)


if __name__ == "__main__":
    main()
