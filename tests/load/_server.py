"""A tiny HTTP/1.1 test target for the load engine (run as a subprocess: python _server.py [--stall-at S]).

Paths: /ok (200 with X-Target-Id), /404, /500, /close (closes mid-response), /hang (never answers),
/__count (requests seen so far, not counted itself). With --stall-at S --stall-s D every answer that falls in
[S, S+D) seconds after the first request is held until S+D: a 1 s server stall.
Prints its port on the first stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, ClassVar


class Handler(asyncio.Protocol):
    state: ClassVar[dict[str, Any]] = {"count": 0, "first": None}
    args: argparse.Namespace

    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            path = head.split(" ", 2)[1]
            self.handle(path)

    def handle(self, path):
        if path == "/__count":
            body = str(self.state["count"]).encode()
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        self.state["count"] += 1
        now = time.monotonic()
        if self.state["first"] is None:
            self.state["first"] = now
        if path.startswith("/hang"):
            return
        if path.startswith("/close"):
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            self.t.close()
            return
        status = {"/404": b"404 Not Found", "/500": b"500 Internal Server Error"}.get(path, b"200 OK")
        resp = b"HTTP/1.1 %s\r\nX-Target-Id: t-1\r\nContent-Length: 2\r\n\r\nok" % status
        a = self.args
        rel = now - self.state["first"]
        if a.stall_at is not None and a.stall_at <= rel < a.stall_at + a.stall_s:
            asyncio.get_running_loop().call_later(a.stall_at + a.stall_s - rel, self.t.write, resp)
        else:
            self.t.write(resp)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stall-at", type=float)
    p.add_argument("--stall-s", type=float, default=1.0)
    Handler.args = p.parse_args()
    server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
