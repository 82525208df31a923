"""Raw-socket test servers for the engine's fault tests: each answers in one fixed, hand-written way.

They run on threads of the test process, bind 127.0.0.1 on a random port and stop when the ``with`` block ends.
Responses are written byte by byte as a server would put them on the wire, so the engine's HTTP parsing is
tested against the framing rules themselves (RFC 9112), not against another HTTP library's output.

Example::

    with raw_server("close11") as port:
        run_load(f"http://127.0.0.1:{port}/", constant(20, 1), [b"{}"])
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

# RFC 9112 §6.3 item 8: no Content-Length, no chunked coding -> the body runs until the server closes.
RESPONSES = {
    "close11": b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Target-Id: raw\r\nContent-Type: text/plain\r\n\r\n"
    b"a close-delimited body",
    "http10": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nan HTTP/1.0 body without length",
    # a declared length the server does not honour: a truncated body, not a complete one
    "short": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100\r\n\r\nonly part",
    # RFC 9112 §9.6: a server may close an idle keep-alive connection at any time, without saying so first.
    "keepalive_then_close": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


def _read_request(conn: socket.socket) -> bool:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        buf += chunk
    return True


@contextlib.contextmanager
def raw_server(mode: str) -> Iterator[int]:
    """Serve ``mode`` on 127.0.0.1 and yield the port.

    Modes: a key of RESPONSES (answer every request that way and close), ``hang`` (accept, read, never answer),
    ``noaccept`` (listen with the smallest backlog and never accept: connects beyond the backlog hang).
    """
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(0 if mode == "noaccept" else 512)
    port = srv.getsockname()[1]
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while not stop.is_set() and _read_request(conn):
                    if mode == "hang":
                        continue
                    conn.sendall(RESPONSES[mode])
                    conn.shutdown(socket.SHUT_WR)
                    return
            except OSError:
                return

    def accept_loop() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    th = None
    if mode != "noaccept":
        th = threading.Thread(target=accept_loop, daemon=True)
        th.start()
    try:
        yield port
    finally:
        stop.set()
        if th is not None:
            th.join(5)
        for c in held:
            with contextlib.suppress(OSError):
                c.close()
        srv.close()
