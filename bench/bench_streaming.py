"""Benchmark: the engine reading SSE streams — token throughput, and lag from a token's write to the engine's stamp.

A minimal SSE server (this file, ``--serve``: uvloop, OpenAI chat-completion chunks over chunked transfer, one
event per write) runs in a subprocess pinned to core 0; the engine is pinned to the last core. Every stream has
``--tokens`` tokens ``--gap-ms`` apart, the first after ``--gap-ms``. The server names each stream in its
X-Target-Id header (the engine records it) and logs the wall-clock time it wrote the first and the last token, so
the engine's TTFT/last-token stamps are joined to the server's writes: *lag* = engine stamp − server write (same
machine, same clock). Per rate it prints streams/s, output tokens/s, first- and last-token lag p50/p99/max and the
engine process's CPU per token. Bounded: about 30 s with the defaults.

    .venv/bin/python bench/bench_streaming.py [--rates 50,200,400] [--tokens 64] [--gap-ms 5] [--duration-s 4]
    .venv/bin/python bench/bench_streaming.py --truth     # measured vs known schedule (tests/load/_server.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- the minimal SSE server
def serve(log_path: str, tokens: int, gap_s: float) -> None:
    counter = [0]
    out = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the server

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def event(k: int) -> bytes:
        obj = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"t{k}"}}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    class Handler(asyncio.Protocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.t = transport
            self.buf = b""

        def data_received(self, data):  # type: ignore[no-untyped-def]
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                n = 0
                i = head.find(b"content-length:")
                if i >= 0:
                    n = int(head[i + 15 :].split(b"\r\n", 1)[0])
                if len(self.buf) < end + 4 + n:
                    return
                self.buf = self.buf[end + 4 + n :]
                self.start()

        def start(self) -> None:
            counter[0] += 1
            sid = counter[0]
            t = self.t
            t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                    b"X-Target-Id: s%d\r\n\r\n" % sid)  # fmt: skip
            loop = asyncio.get_running_loop()
            stamps: list[float] = []

            def put(k: int) -> None:
                if t.is_closing():
                    return
                t.write(chunk(event(k)))
                if k == 0 or k == tokens - 1:
                    stamps.append(time.time())
                if k == tokens - 1:
                    t.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                    out.write(f"s{sid} {stamps[0]:.6f} {stamps[-1]:.6f}\n")

            for k in range(tokens):
                loop.call_later(gap_s * (k + 1), put, k)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    import uvloop

    uvloop.install()
    asyncio.run(main())


# --------------------------------------------------------------------------- the measurement
def trial(url: str, log_path: Path, rps: float, duration_s: float, tokens: int) -> dict[str, float]:
    import pandas as pd

    from mlops_lb.load import constant, run_load

    log_path.write_text("")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    r = run_load(url, constant(rps, duration_s), [b'{"stream": true}'], connections=512, timeout_s=10,
                 progress=False, max_lag_p99_s=10.0)  # fmt: skip
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.2)  # the server's last log lines
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    df = r.requests()
    srv = pd.read_csv(log_path, sep=" ", names=["target", "first_w", "last_w"])
    m = df.merge(srv, on="target")
    first_e = (m["intended_at"].astype("int64") / 1e9) + m["ttft_s"]
    last_e = (m["done_at"].astype("int64") / 1e9) - 0  # the last token arrives with (or just before) the end
    lag_first = (first_e - m["first_w"]).to_numpy()
    lag_last = (last_e - m["last_w"]).to_numpy()
    s = r.summary()
    ok = int((df["error"] == "").sum())
    return {
        "streams_ok": ok,
        "scheduled": s["scheduled"],
        "tokens_per_s": s["output_tokens_per_s"],
        "exact_tokens": float((df["output_tokens"] == tokens).mean()),
        "lag_first_p50_ms": float(np.percentile(lag_first, 50) * 1e3),
        "lag_first_p99_ms": float(np.percentile(lag_first, 99) * 1e3),
        "lag_last_p50_ms": float(np.percentile(lag_last, 50) * 1e3),
        "lag_last_p99_ms": float(np.percentile(lag_last, 99) * 1e3),
        "lag_max_ms": float(max(lag_first.max(), lag_last.max()) * 1e3),
        "cpu_us_per_token": cpu / max(s["output_tokens"], 1) * 1e6,
        "sched_lag_p99_ms": s["lag_p99_s"] * 1e3,
    }


def truth() -> int:
    """The engine's TTFT/ITL/TPOT/tokens against tests/load/_server.py's known schedule, with and without a stall."""
    from mlops_lb.load import constant, run_load

    root = Path(__file__).resolve().parents[1]
    srv = subprocess.Popen([sys.executable, str(root / "tests/load/_server.py")], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    try:
        assert srv.stdout is not None
        base = f"http://127.0.0.1:{int(srv.stdout.readline())}"
        n, ttft, gap = 10, 0.2, 0.05
        print("| case | metric | truth | engine p50 | engine max |")
        print("|---|---|---|---|---|")
        for label, stall in (("no stall", 0.0), ("1 s stall before token 6", 1.0)):
            q = f"/sse?tokens={n}&ttft={ttft}&gap={gap}&usage=1" + (
                f"&stall_at=5&stall_s={stall}" if stall else ""
            )
            r = run_load(base + q, constant(4, 2), [b'{"stream": true}'], connections=8, progress=False,
                         max_lag_p99_s=10.0)  # fmt: skip
            df = r.requests()
            truths = {
                "ttft_s": ttft,
                "itl_mean_s": ((n - 1) * gap + stall) / (n - 1),
                "itl_max_s": gap + stall,
                "tpot_s": ((n - 1) * gap + stall) / (n - 1),
                "output_tokens": n,
            }
            for col, t in truths.items():
                v = df[col]
                print(f"| {label} ({len(df)} streams, errors {int((df['error'] != '').sum())}) | {col} | {t:.4g} | "
                      f"{v.median():.4g} | {v.max():.4g} |")  # fmt: skip
            s = r.summary()
            print(f"| {label} | summary itl_p50_s / itl_max_s | {gap:g} / {gap + stall:g} | {s['itl_p50_s']:.4g} | "
                  f"{s['itl_max_s']:.4g} |")  # fmt: skip
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(5)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--truth", action="store_true")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--rates", default="50,200,400")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--duration-s", type=float, default=4.0)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.tokens, args.gap_ms / 1e3)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.truth:
        return truth()
    n = os.cpu_count() or 1
    if hasattr(os, "sched_setaffinity") and n >= 2:
        os.sched_setaffinity(0, {n - 1})
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as d:
        log_path = Path(d) / "server.log"
        cmd = [sys.executable, __file__, "--serve", str(log_path), "--tokens", str(args.tokens), "--gap-ms",
               str(args.gap_ms)]  # fmt: skip
        if n >= 2:
            cmd = ["taskset", "-c", "0", *cmd]
        srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert srv.stdout is not None
            url = f"http://127.0.0.1:{int(srv.stdout.readline())}/v1/chat/completions"
            print(f"SSE server on core 0, engine on core {n - 1}; {args.tokens} tokens per stream, "
                  f"{args.gap_ms:g} ms apart; load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
            print(
                "| streams/s | streams ok / scheduled | output tokens/s | exact token count | first-token lag "
                "p50 / p99 ms | last-token lag p50 / p99 ms | lag max ms | engine CPU µs/token |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for rps in (float(x) for x in args.rates.split(",")):
                t = trial(url, log_path, rps, args.duration_s, args.tokens)
                print(f"| {rps:g} | {t['streams_ok']:,} / {t['scheduled']:,} | {t['tokens_per_s']:,.0f} | "
                      f"{t['exact_tokens']:.0%} | {t['lag_first_p50_ms']:.2f} / {t['lag_first_p99_ms']:.2f} | "
                      f"{t['lag_last_p50_ms']:.2f} / {t['lag_last_p99_ms']:.2f} | {t['lag_max_ms']:.1f} | "
                      f"{t['cpu_us_per_token']:.1f} |", flush=True)  # fmt: skip
        finally:
            os.killpg(srv.pid, signal.SIGTERM)
            srv.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
