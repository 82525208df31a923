"""A fixed-latency HTTP/1.1 test target (a subprocess: python _delay_server.py --delay-s D).

Every request except ``/__count`` is answered 200 after exactly ``D`` seconds (a timer per request, so
requests on one keep-alive connection overlap nothing: the client waits for each answer). ``/__count`` returns
how many requests were seen. Prints its port on the first stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

COUNT = 0
RESP = b"HTTP/1.1 200 OK\r\nX-Target-Id: d-1\r\nContent-Length: 2\r\n\r\nok"


class Handler(asyncio.Protocol):
    delay_s = 0.0

    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        global COUNT
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
            if head.split(" ", 2)[1] == "/__count":
                body = str(COUNT).encode()
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            COUNT += 1
            asyncio.get_running_loop().call_later(self.delay_s, self._answer)

    def _answer(self):
        if not self.t.is_closing():
            self.t.write(RESP)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--delay-s", type=float, default=0.005)
    Handler.delay_s = p.parse_args().delay_s
    server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
