"""What hashing the primary's response bodies costs (``run_load(..., shadow_compare="body")``).

Two runs of the same open-loop load against the same loopback test target, alternated three times; each has a
shadow whose one connection hangs, so (almost) every copy is dropped and the shadow costs the same on both sides.
The only difference is the primary engine hashing each body (``"body"``) or not (``"status"``). Printed: this
process's CPU seconds per 1,000 primary requests and the schedule lag p99, and their ratios body/status.

    python bench/bench_shadow_hash.py [--rate 2000] [--seconds 5] [--kib 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlops_lb.load import constant, run_load

SERVER = Path(__file__).resolve().parents[1] / "tests" / "load" / "_server.py"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--kib", type=int, default=4, help="response body size (the /ok?out=... text)")
    a = p.parse_args()
    procs = [
        subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        primary, shadow = (f"http://127.0.0.1:{int(pr.stdout.readline())}" for pr in procs)  # type: ignore[union-attr]
        url = f"{primary}/ok?out={'x' * (a.kib * 1024)}"
        rows: dict[str, list[tuple[float, float]]] = {"status": [], "body": []}
        for _ in range(3):
            for mode in ("status", "body"):
                cpu = time.process_time()
                r = run_load(url, constant(a.rate, a.seconds), payloads=[b"x"], progress=False,
                             shadow=shadow + "/hang", shadow_connections=1, shadow_compare=mode, timeout_s=2)  # fmt: skip
                cpu = time.process_time() - cpu
                n = len(r.requests())
                rows[mode].append((1000 * cpu / n, float(r.requests()["lag_s"].quantile(0.99))))
                if mode == "body":
                    assert len(r.shadow.primary_hashes) == n
        med = {
            m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
            for m, v in rows.items()
        }
        for m, (c, lag) in med.items():
            print(f"{m:6s}: {c:.3f} CPU s per 1000 requests, lag p99 {lag * 1e3:.2f} ms (median of 3)")
        print(
            f"ratio body/status: CPU {med['body'][0] / med['status'][0]:.3f}, lag p99 {med['body'][1] / med['status'][1]:.2f}"
        )
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(10)


if __name__ == "__main__":
    main()
