"""Benchmark of the LLM emulator's prefix cache on a trace with prefix structure (docs/traces.md, "Measured here").

One emulator per setting (``--prefill-ms-per-token 0.2 --max-num-seqs 16``), the first ``--requests`` requests of
the labelled synthetic ``synthetic-multiturn`` trace replayed as recorded with ``prefix_chat``; prints hit rate,
TTFT p50/p99, errors and the verdict per cache size, and the TTFT p99 ratio against the cache turned off.

Run:  .venv/bin/python bench/bench_prefix_cache.py [--requests 300] [--sizes 0,64,4096]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request

from mlops_lb import load


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _counter(text: str, name: str) -> float:
    return float(next(ln for ln in text.splitlines() if ln.startswith(name)).rsplit(" ", 1)[1])


def run(blocks: int, requests: int) -> dict[str, float]:
    """Replay on a fresh emulator with ``blocks`` cache blocks; the run's summary plus its hit rate."""
    port = _free_port()
    argv = [sys.executable, "-m", "mlops_lb", "serve", "--llm", "--port", str(port),
            "--prefix-cache-blocks", str(blocks), "--prefill-ms-per-token", "0.2", "--max-num-seqs", "16"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        t = load.trace("synthetic-multiturn").head(requests)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        r = load.run_load(
            url, t, payloads=load.prefix_chat(model="m", profile=t), progress=False, connections=64
        )
        s = r.summary()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        q = _counter(text, "vllm:prefix_cache_queries_total")
        h = _counter(text, "vllm:prefix_cache_hits_total")
        return {**s, "hit_rate": h / q if q else 0.0}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--sizes", default="0,64,4096")
    args = ap.parse_args()
    rows = {int(b): run(int(b), args.requests) for b in args.sizes.split(",")}
    base = rows.get(0)
    print(f"{'blocks':>7} {'hit rate':>9} {'TTFT p50':>9} {'TTFT p99':>9} {'errors':>7}  verdict  p99 vs off")
    for b, s in rows.items():
        ratio = f"{s['ttft_p99_s'] / base['ttft_p99_s']:.3f}" if base else "-"
        print(f"{b:>7} {s['hit_rate']:>9.1%} {s['ttft_p50_s'] * 1000:>7.0f}ms {s['ttft_p99_s'] * 1000:>7.0f}ms "
              f"{s['errors']:>7}  {'VALID' if s['valid'] else 'INVALID':7}  {ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
