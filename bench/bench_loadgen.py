"""Benchmark: the open-loop engine's highest clean rate on one core vs wrk and Locust, same nginx target.

Starts nginx (config in a temp dir) on 127.0.0.1 serving a fixed 2-byte response, pinned to core 0 when the
machine has two or more; the clients are pinned to the last core. Measures, in one run:

* wrk -t1 -c32 -d5s (closed loop, C): its requests/s, before and after the engine search (the mean is the
  reference: the machine is shared and wrk alone swings by 2x between runs);
* mlops_lb.load.run_load, 32 connections: the highest constant rate that stays *clean* (>= 99 % of the schedule
  sent and schedule-lag p99 <= 3 ms), found by doubling then bisecting 3 s runs;
* Locust FastHttpUser, one worker process, 32 users (closed loop): its requests/s.

Prints a table and the ratios engine/wrk and engine/Locust (goals: >= 0.5 and >= 8). Bounded: about 2 minutes.

``--quick`` (about 30 s) runs wrk once and the engine at fixed rates (3 s each), no Locust: the before/after check
of an engine change; ``--code DIR`` imports mlops_lb from DIR (e.g. ``git archive`` of the previous commit), so
two versions can be compared in one sitting.

    .venv/bin/python bench/bench_loadgen.py
    .venv/bin/python bench/bench_loadgen.py --quick [--code /tmp/old] [--rates 10000,20000,40000]
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ add_header X-Target-Id nginx; return 200 "ok"; }}
    }}
}}
"""

BODY = [b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}']
TRIAL_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[str, int]:
    n = os.cpu_count() or 1
    return ("0", n - 1) if n >= 2 else ("0", 0)


def start_nginx(tmp: Path, port: int, server_core: str) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp, port=port))
    cmd = ["nginx", "-c", str(conf), "-p", str(tmp)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", server_core, *cmd]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


def run_wrk(url: str, client_core: int) -> float:
    cmd = ["wrk", "-t1", "-c32", "-d5s", url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(client_core), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")


def engine_trial(url: str, rps: float) -> tuple[bool, float, float, float]:
    from mlops_lb.load import constant, run_load

    r = run_load(url, constant(rps, TRIAL_S), BODY, connections=32, progress=False, timeout_s=5)
    s = r.summary()
    return r.valid, s["requests"] / max(s["scheduled"], 1), s["lag_p99_s"], s["achieved_rps"]


def engine_search(
    url: str, budget_s: float = 75
) -> tuple[float, float, list[tuple[float, bool, float, float]]]:
    """Highest clean rate found (and its lag p99) by doubling from 10k rps, then bisecting."""
    t_end = time.monotonic() + budget_s
    trials: list[tuple[float, bool, float, float]] = []
    best, best_lag, lo, hi = 0.0, float("nan"), 0.0, None
    rps = 10000.0
    while time.monotonic() < t_end:
        ok, frac, lag, ach = engine_trial(url, rps)
        if not ok:  # the machine is shared: one retry so a neighbour's burst does not decide the result
            ok, frac, lag, ach = engine_trial(url, rps)
        trials.append((rps, ok, frac, lag))
        print(
            f"  engine {rps:>9,.0f} rps: {'clean' if ok else 'NOT clean'} (sent {frac:.1%}, lag p99 "
            f"{lag * 1e3:.2f} ms, achieved {ach:,.0f})",
            flush=True,
        )
        if ok:
            best = lo = rps
            best_lag = lag
        else:
            hi = rps
        if hi is None:
            rps *= 2
        else:
            if hi - lo <= max(0.05 * hi, 1000):
                break
            rps = (lo + hi) / 2
    return best, best_lag, trials


def run_locust_bench(url: str) -> float:
    from mlops_lb.load import run_locust

    res = run_locust(url, users=32, spawn_rate=32, duration_s=8, workers=1, payloads=BODY)
    return float(res.summary()["achieved_rps"])


def quick(rates: list[float]) -> int:
    """wrk once, then the engine at each fixed rate: sent fraction, lag p99 and achieved rate per trial."""
    import mlops_lb

    server_core, client_core = cores()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {client_core})
    print(f"mlops_lb from {Path(mlops_lb.__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as d:
        port = free_port()
        nginx = start_nginx(Path(d), port, server_core)
        url = f"http://127.0.0.1:{port}/"
        try:
            wrk = run_wrk(url, client_core)
            print(f"  wrk -t1 -c32 -d5s: {wrk:,.0f} rps (load average {os.getloadavg()[0]:.2f})", flush=True)
            import resource

            for rps in rates:
                # CPU time per request is the load-robust number on a shared machine (lag is not)
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                ok, frac, lag, ach = engine_trial(url, rps)
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                print(
                    f"  engine {rps:>9,.0f} rps: {'clean' if ok else 'NOT clean'} (sent {frac:.1%}, lag p99 "
                    f"{lag * 1e3:.2f} ms, achieved {ach:,.0f}, CPU {cpu / (rps * TRIAL_S) * 1e6:.1f} µs/request)",
                    flush=True,
                )
        finally:
            os.killpg(nginx.pid, signal.SIGTERM)
            try:
                nginx.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(nginx.pid, signal.SIGKILL)
    return 0


def main() -> int:
    server_core, client_core = cores()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {client_core})  # the engine thread runs in this process
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as d:
        tmp = Path(d)
        port = free_port()
        nginx = start_nginx(tmp, port, server_core)
        url = f"http://127.0.0.1:{port}/"
        try:
            print(f"nginx on core {server_core}, clients on core {client_core}, target {url}", flush=True)
            load0 = os.getloadavg()[0]
            wrk1 = run_wrk(url, client_core)
            print(f"  wrk -t1 -c32 -d5s: {wrk1:,.0f} rps (load average {load0:.2f})", flush=True)
            engine, engine_lag, _ = engine_search(url)
            wrk2 = run_wrk(url, client_core)
            print(f"  wrk -t1 -c32 -d5s again: {wrk2:,.0f} rps", flush=True)
            wrk = (wrk1 + wrk2) / 2
            # Raw capacity at the goal rate, whatever the lag: shows whether CPU or timing precision is the limit.
            raw_rps = round(wrk / 2, -3)
            ok, frac, lag, ach = engine_trial(url, raw_rps)
            print(
                f"  engine at 0.5 x wrk = {raw_rps:,.0f} rps: sent {frac:.1%}, achieved {ach:,.0f}, lag p99 "
                f"{lag * 1e3:.1f} ms ({'clean' if ok else 'not clean'})",
                flush=True,
            )
            locust = run_locust_bench(url)
            print(f"  locust FastHttpUser (1 worker, 32 users, 8 s): {locust:,.0f} rps", flush=True)
            load1 = os.getloadavg()[0]
        finally:
            os.killpg(nginx.pid, signal.SIGTERM)
            try:
                nginx.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(nginx.pid, signal.SIGKILL)
    print()
    print("| client (one core, 32 connections) | rps | engine / client |")
    print("|---|---|---|")
    print(f"| wrk (C, closed loop), mean of {wrk1:,.0f} and {wrk2:,.0f} | {wrk:,.0f} | {engine / wrk:.2f} |")
    print(
        f"| mlops_lb engine, highest clean open-loop rate (lag p99 {engine_lag * 1e3:.2f} ms) | {engine:,.0f} | 1 |"
    )
    print(f"| Locust FastHttpUser, 1 worker (closed loop) | {locust:,.0f} | {engine / locust:.1f} |")
    print(
        f"\nengine/wrk = {engine / wrk:.2f} (goal >= 0.5); engine/Locust = {engine / locust:.1f} (goal >= 8); "
        f"bench took {time.monotonic() - t0:.0f} s; load average {load0:.2f} at start, {load1:.2f} at end"
    )
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="wrk once and fixed engine rates, about 30 s")
    ap.add_argument("--rates", default="10000,20000,40000,60000", help="engine rates for --quick")
    ap.add_argument("--code", help="import mlops_lb from this directory (compare two versions)")
    args = ap.parse_args()
    sys.path.insert(0, args.code or str(Path(__file__).resolve().parents[1]))
    if args.quick:
        sys.exit(quick([float(x) for x in args.rates.split(",")]))
    sys.exit(main())
