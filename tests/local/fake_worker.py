"""A stdlib stand-in for ``mlops-lb serve`` with the same HTTP contract, for tests that run before/without it.

/health (503 until ready, then 200; SIGUSR1 toggles failing), /predict (POST, slots + min service time),
/metrics (Prometheus text with mlops_requests_total, mlops_request_duration_seconds, mlops_in_flight_requests),
X-Target-Id on every response, SIGTERM stops. Run: python fake_worker.py --port P --target-id ID
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--target-id", default="fake")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--min-service-ms", type=float, default=0.0)
    p.add_argument("--model", default="demo")
    p.add_argument("--ready-after-s", type=float, default=0.2)
    a = p.parse_args()

    reg = CollectorRegistry()
    reqs = Counter("mlops_requests_total", "requests", ["path", "status"], registry=reg)
    dur = Histogram("mlops_request_duration_seconds", "duration", ["path"], buckets=BUCKETS, registry=reg)
    inflight = Gauge("mlops_in_flight_requests", "in flight", registry=reg)
    slots = threading.Semaphore(a.slots)
    started = time.monotonic()
    failing = [False]

    def toggle(*_: object) -> None:
        failing[0] = not failing[0]

    signal.signal(signal.SIGUSR1, toggle)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Target-Id", a.target_id)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                ok = time.monotonic() - started >= a.ready_after_s and not failing[0]
                reqs.labels("/health", "200" if ok else "503").inc()
                self._send(200 if ok else 503, b'{"ok": true}' if ok else b'{"ok": false}')
            elif self.path == "/metrics":
                self._send(200, generate_latest(reg), "text/plain; version=0.0.4")
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            t0 = time.perf_counter()
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            inflight.inc()
            with slots:
                rows = json.loads(body or b"{}").get("rows", [[0.0]])
                spent = time.perf_counter() - t0
                time.sleep(max(0.0, a.min_service_ms / 1000.0 - spent))
            inflight.dec()
            self._send(200, json.dumps({"predictions": [0] * len(rows)}).encode())
            reqs.labels("/predict", "200").inc()
            dur.labels("/predict").observe(time.perf_counter() - t0)

    srv = ThreadingHTTPServer((a.host, a.port), H)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
