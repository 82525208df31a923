"""A tiny HTTP/1.1 test target for the load engine (run as a subprocess: python _server.py [--stall-at S]).

Paths: /ok (200 with X-Target-Id; ``?out=TEXT`` answers TEXT instead of ``ok``), /404, /500, /close (closes mid-response), /hang (never answers),
/__count (requests seen so far, not counted itself), and streams with a known schedule (query parameters):
/sse (OpenAI chat-completion chunks as SSE over chunked transfer) and /chunked (one token per chunk, not SSE):
``tokens`` (10), ``ttft`` (s to the first token, 0.2), ``gap`` (s between tokens, 0.05), ``stall_at`` (index of
the token held back by ``stall_s`` more, none), ``role`` (1: a role-only first delta at once), ``usage`` (1: a
usage chunk with completion_tokens; N > 1: one that claims N), ``split`` (1: every event written in two chunks, cut inside its JSON),
``bad`` (1: one event whose data is not JSON), ``truncate`` (1: end with half an event and close the
connection; 2: half an event, then the end of the chunked body). With --stall-at S --stall-s D every answer that falls in
[S, S+D) seconds after the first request is held until S+D: a 1 s server stall. With --delay-s D every plain answer
(/ok, /404, /500) is written exactly D seconds after its request (a timer per request): a fixed-latency server.
Prints its port on the first stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(**delta: Any) -> bytes:
    obj = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


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
        if path.startswith(("/sse", "/chunked")):
            self.stream(path)
            return
        if path.startswith("/close"):
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            self.t.close()
            return
        status = {"/404": b"404 Not Found", "/500": b"500 Internal Server Error"}.get(path, b"200 OK")
        # /ok?out=TEXT answers TEXT instead of "ok": another model's output, for shadow body comparisons
        out = dict(parse_qsl(urlsplit(path).query)).get("out", "ok").encode()
        resp = b"HTTP/1.1 %s\r\nX-Target-Id: t-1\r\nContent-Length: %d\r\n\r\n%s" % (status, len(out), out)
        a = self.args
        rel = now - self.state["first"]
        wait = a.delay_s
        if a.stall_at is not None and a.stall_at <= rel < a.stall_at + a.stall_s:
            wait = max(wait, a.stall_at + a.stall_s - rel)
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self._answer, resp)
        else:
            self.t.write(resp)

    def _answer(self, resp: bytes) -> None:
        if not self.t.is_closing():
            self.t.write(resp)

    def stream(self, path: str) -> None:
        """Write a token stream on a fixed schedule from now: the truth the engine's timings are checked against."""
        parts = urlsplit(path)
        q = dict(parse_qsl(parts.query))
        n = int(q.get("tokens", 10))
        ttft = float(q.get("ttft", 0.2))
        gap = float(q.get("gap", 0.05))
        stall_at = int(q.get("stall_at", -1))
        stall_s = float(q.get("stall_s", 1.0))
        sse = parts.path.startswith("/sse")
        ctype = b"text/event-stream" if sse else b"text/plain"
        self.t.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\nX-Target-Id: t-1\r\n\r\n"
            % ctype
        )
        loop = asyncio.get_running_loop()
        t = self.t

        def put(data: bytes) -> None:
            if t.is_closing():
                return
            if sse and q.get("split") == "1" and len(data) > 12:
                cut = len(data) // 2
                t.write(_chunk(data[:cut]))
                t.write(_chunk(data[cut:]))
            else:
                t.write(_chunk(data))

        if sse and q.get("role", "1") == "1":
            put(_delta(role="assistant"))
        at = ttft
        for k in range(n):
            if k == stall_at:
                at += stall_s
            data = _delta(content=f"tok{k} ") if sse else f"tok{k} ".encode()
            loop.call_later(at, put, data)
            if sse and q.get("bad") == "1" and k == n // 2:
                loop.call_later(at, put, b"data: this is not json\n\n")
            at += gap
        at -= gap

        def end() -> None:
            if t.is_closing():
                return
            if sse and q.get("usage", "0") != "0":
                told = n if q["usage"] == "1" else int(q["usage"])
                usage = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": told}}
                put(b"data: " + json.dumps(usage).encode() + b"\n\n")
            if q.get("truncate") in ("1", "2"):
                put(b'data: {"choices": [{"delta": {"content": "cut')
                if q["truncate"] == "1":
                    t.close()
                    return
            elif sse:
                put(b"data: [DONE]\n\n")
            t.write(b"0\r\n\r\n")

        loop.call_later(at + 0.001, end)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stall-at", type=float)
    p.add_argument("--stall-s", type=float, default=1.0)
    p.add_argument("--delay-s", type=float, default=0.0)
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
