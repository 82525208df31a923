"""Benchmark: peak RSS per request of a load run, a short run vs a run three times as long (issue 17, item 1).

Each run is a fresh subprocess (``--child``) against nginx (bench_loadgen's config): it imports mlops_lb, notes its
RSS, runs ``constant(rps, duration)`` without a bundle, builds the summary, and reports its peak RSS
(``ru_maxrss``). Bytes per request = (peak - RSS after imports) / requests; the growth between the two runs is the number that
matters (fixed costs cancel). ``--code DIR`` measures another version
of mlops_lb (``git archive <commit> mlops_lb | tar -x -C DIR``). About 45 s with the defaults.

    .venv/bin/python bench/bench_memory.py [--rps 5000] [--durations 6,30] [--code /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(url: str, rps: float, duration: float) -> None:
    import hdrh.histogram  # noqa: F401  - what a run imports anyway, so the base is the process before records
    import pandas  # noqa: F401
    import pyarrow.dataset
    import pyarrow.feather
    import pyarrow.parquet  # noqa: F401

    import mlops_lb.load as load

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = load.run_load(url, load.constant(rps, duration), [b"{}"], connections=32, progress=False, timeout_s=5)
    s = r.summary()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "base_kb": base,
                "peak_kb": peak,
                "requests": s["scheduled"],
                "responses": s["responses"],
                "lag_p99_ms": r.lag_p99_s * 1e3,
                "valid": r.valid,
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--rps", type=float, default=5000)
    ap.add_argument("--durations", default="6,30")
    ap.add_argument("--code")
    args = ap.parse_args()
    sys.path.insert(0, args.code or str(HERE.parent))
    if args.child:
        child(args.child[0], float(args.child[1]), float(args.child[2]))
        return 0
    sys.path.insert(0, str(HERE))
    from bench_loadgen import cores, free_port, start_nginx

    server_core, _ = cores()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d:
        port = free_port()
        nginx = start_nginx(Path(d), port, server_core)
        try:
            print(
                f"mlops_lb from {args.code or HERE.parent}; {args.rps:g} rps; load average {os.getloadavg()[0]:.2f}"
            )
            print("| duration s | requests | responses | lag p99 ms | valid | RSS after imports MB | peak RSS MB | "
                  "bytes per request |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|")
            points = []
            for dur in (float(x) for x in args.durations.split(",")):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"http://127.0.0.1:{port}/",
                    str(args.rps),
                    str(dur),
                ]
                if args.code:
                    cmd += ["--code", args.code]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 60, check=True).stdout
                m = json.loads(out.strip().splitlines()[-1])
                per = (m["peak_kb"] - m["base_kb"]) * 1024 / max(m["requests"], 1)
                print(f"| {dur:g} | {m['requests']:,} | {m['responses']:,} | {m['lag_p99_ms']:.2f} | {m['valid']} | "
                      f"{m['base_kb'] / 1024:.0f} | {m['peak_kb'] / 1024:.0f} | {per:.0f} |", flush=True)  # fmt: skip
                points.append((m["requests"], m["peak_kb"] * 1024))
            (n0, p0), (n1, p1) = points[0], points[-1]
            print(
                f"\ngrowth between the runs: {(p1 - p0) / max(n1 - n0, 1):.0f} bytes of peak RSS per extra request; "
                f"peak RSS {p0 / 2**20:.0f} MB -> {p1 / 2**20:.0f} MB ({(p1 - p0) / 2**20:+.0f} MB)"
            )
        finally:
            os.killpg(nginx.pid, signal.SIGTERM)
            nginx.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
