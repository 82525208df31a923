"""A server the way a user writes one: the standard library only, nothing from mlops_lb, no X-Target-Id header.

Listens on $PORT (or --port), answers GET /health and POST /predict (after SLEEP_S seconds, default 0), logs every
request to stderr and its start and SIGTERM to stdout. On SIGTERM it stops accepting and exits 0 after the
requests in flight have finished, unless IGNORE_TERM=1 (then only SIGKILL ends it).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
args = parser.parse_args()
SLEEP_S = float(os.environ.get("SLEEP_S", "0"))
in_flight = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        global in_flight
        with lock:
            in_flight += 1
        try:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(SLEEP_S)
            self._reply(200, {"predictions": [1]})
            print(f"done {self.path}", flush=True)
        finally:
            with lock:
                in_flight -= 1


server = ThreadingHTTPServer((args.host, args.port), Handler)
server.daemon_threads = True  # idle keep-alive connections must not keep the process alive


def on_term(*_: object) -> None:
    print("got SIGTERM", flush=True)
    if os.environ.get("IGNORE_TERM") != "1":
        threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)
print(f"listening on {args.host}:{args.port} as {os.environ.get('TARGET_ID')}", flush=True)
server.serve_forever()
server.server_close()
while in_flight:  # the graceful part: requests in flight finish before the process exits
    time.sleep(0.01)
print("exiting", flush=True)
sys.exit(0)
