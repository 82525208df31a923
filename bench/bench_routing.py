"""The routing A/B on the local fleet (issue 28 item 5): a case where cache-aware routing wins, one where it does not.

Not part of the test command (a few minutes on two cores). Both cases run on IDENTICAL emulator settings (3 LLM
emulators, each with a prefix cache of ``--cache-blocks`` blocks of 16 tokens, prefill ``--prefill-ms`` per uncached
token); only the trace differs:

* ``sharing``: the labelled synthetic multi-turn trace (``ml.load.multiturn``): sessions share 4 system prompts and
  each turn resends the whole conversation, so a target that saw a session's last turn has most of the next
  prompt cached — if the next turn comes back to it.
* ``no-sharing``: the same generator with one turn per session and as many system prompts as sessions: no prompt
  shares a block with another, so no policy can find anything in a cache.

Each case: ``ml.compare_routing`` over least_outstanding_requests (the ALB's best), consistent_hash and
sticky_cookie, ``--repeats`` repeats in random order with caches flushed before every arm. Prints the table (goodput,
TTFT p99 with intervals, hit rate, shed share), each verdict and the recommendation, as markdown for docs/routing.md.

    PYTHONPATH=$PWD python bench/bench_routing.py --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Any

import mlops_lb as ml


def spec(args: argparse.Namespace) -> ml.FleetSpec:
    return ml.FleetSpec.from_dict({
        "name": "bench-routing",
        "capacity": {"min": args.targets, "desired": args.targets, "max": args.targets},
        "health_check": {"interval_s": 5, "timeout_s": 2, "healthy_threshold": 2, "unhealthy_threshold": 2,
                         "grace_period_s": 60},
        "server": {"kind": "llm-emulator", "llm": {
            "max_num_seqs": args.seqs, "prefill_ms_per_token": args.prefill_ms, "decode_ms_per_token": args.decode_ms,
            "prefix_cache_blocks": args.cache_blocks, "block_size": 16, "max_model_len": 8192, "seed": 1}},
        "routing": {"hash_balance_factor": args.hash_factor},
        "local": {"period_s": 1.0},
    })  # fmt: skip


def trace(case: str, args: argparse.Namespace) -> Any:
    if case == "sharing":
        return ml.load.multiturn(
            sessions=args.sessions, session_rate=args.session_rate, turns=(4, 6), think_s=args.think_s,
            system_prompts=4, system_blocks=2, turn_blocks=(2, 4), output_tokens=(8, 32), block_tokens=32,
            max_prompt_tokens=2048, seed=args.seed,
        )  # fmt: skip
    # The same generator, nothing shared: one turn per session, a system prompt of its own for each, prompts of
    # about the same length and requests at about the same rate.
    return ml.load.multiturn(
        sessions=args.sessions * 4, session_rate=args.session_rate * 4, turns=(1, 1), think_s=args.think_s,
        system_prompts=args.sessions * 4, system_blocks=2, turn_blocks=(6, 12), output_tokens=(8, 32),
        block_tokens=32, max_prompt_tokens=2048, seed=args.seed,
    )  # fmt: skip


def fmt(v: float, lo: float | None = None, hi: float | None = None, pct: bool = False) -> str:
    if v != v:
        return "n/a"
    f = (lambda x: f"{100 * x:.1f} %") if pct else (lambda x: f"{x:.3g}")
    if lo is None or hi is None or lo != lo:
        return f(v)
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def markdown(case: str, rc: Any, t: Any, seconds: float) -> str:
    lines = [
        f"**{case}** ({len(t.offsets)} requests over {t.duration_s:.0f} s per arm; {rc.method}; {seconds:.0f} s)",
        "",
        "| policy | goodput (req/s) | TTFT p99 (s) | TPOT p99 (s) | prefix-cache hit rate | shed (429/503) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in rc.table.iterrows():
        lines.append(
            f"| {r['policy']} | {fmt(r['goodput_rps'], r['goodput_rps_lo'], r['goodput_rps_hi'])} "
            f"| {fmt(r['ttft_p99_s'], r['ttft_p99_s_lo'], r['ttft_p99_s_hi'])} "
            f"| {fmt(r['tpot_p99_s'], r['tpot_p99_s_lo'], r['tpot_p99_s_hi'])} "
            f"| {fmt(r['hit_rate'], r['hit_rate_lo'], r['hit_rate_hi'], pct=True)} "
            f"| {fmt(r['shed_share'], pct=True)} | {fmt(r['error_share'], pct=True)} |"
        )
    lines.append("")
    for p, v in rc.verdicts.items():
        lines.append(f"* {p} vs {rc.baseline}: {v}")
    lines += ["", f"Recommendation: {rc.recommendation}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("sharing", "no-sharing", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--targets", type=int, default=3)
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--prefill-ms", type=float, default=1.0)
    ap.add_argument("--decode-ms", type=float, default=10.0)
    ap.add_argument("--cache-blocks", type=int, default=160)
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--session-rate", type=float, default=1.0)
    ap.add_argument("--think-s", type=float, default=4.0)
    ap.add_argument("--ttft-slo", type=float, default=0.5)
    ap.add_argument("--hash-factor", type=int, default=125, help="routing.hash_balance_factor (0: unbounded)")
    ap.add_argument("--policies", default="least_outstanding_requests,consistent_hash,sticky_cookie")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = ("sharing", "no-sharing") if args.case == "both" else (args.case,)
    out = []
    with ml.open_fleet(spec(args), backend="local") as fleet:
        fleet.launch()
        for case in cases:
            t = trace(case, args)
            t0 = time.monotonic()
            rc = ml.compare_routing(
                fleet, t, policies=args.policies.split(","), repeats=args.repeats,
                slo={"ttft_s": args.ttft_slo}, seed=args.seed,
                on_arm=lambda row: print(
                    f"  repeat {row['repeat']} {row['policy']:<27} hit {row['hit_rate']:.2f} "
                    f"ttft p99 {row['ttft_p99_s'] or math.nan:.3f} s, goodput {row['goodput_rps'] or math.nan:.2f}/s, "
                    f"switch {row['switch_ms']:.1f} ms, caches reset {row['caches_reset']}, targets read {row['hit_rate_targets']}", flush=True),
            )  # fmt: skip
            out.append(markdown(case, rc, t, time.monotonic() - t0))
            print(out[-1], flush=True)
    print("\n".join(out))


if __name__ == "__main__":
    main()
