"""What keeps idle and slow connections from starving a server's health check (both servers run on uvicorn).

Three bounds, each for a failure measured on this project (issue 25: at RLIMIT_NOFILE 1024, 1,100 idle sockets made
``/health`` close unanswered and the balancer marked the target down):

* **A deadline for each request's headers** (``header_timeout_s``). uvicorn arms its keep-alive timer only when a
  response completes (``HttpToolsProtocol.on_response_complete`` in uvicorn 0.55; ``connection_made`` arms
  nothing), so a connection that never sends a first request, or trickles its headers, was kept forever. Here a
  timer starts when the connection opens and again after each response, and closes the connection unless the next
  request's headers are complete by then. uvicorn's keep-alive timeout still closes a quiet connection sooner.
* **A connection cap** (``max_connections``, below the file-descriptor limit). At the cap, a new connection first
  evicts the oldest one still waiting for its first request's headers, so a flood of idle sockets cannot keep the
  balancer's health check out; if none is waiting, the new one is closed.
* **A cap on requests in flight** (``max_in_flight``): beyond it a request gets ``503`` with ``Retry-After: 1``,
  except ``/health``, which answers whatever the load (uvicorn's own ``limit_concurrency`` counts connections and
  answers 503 on ``/health`` too, which would make the balancer take the target out).

And :func:`raise_nofile_limit` lifts the soft RLIMIT_NOFILE to the hard limit, as nginx's ``worker_rlimit_nofile``
does, so the process can hold as many sockets as the machine lets it.

Example::

    raise_nofile_limit()
    config = uvicorn.Config(limit_in_flight(app, 4096), http=bounded_protocol(header_timeout_s=10,
                                                                            max_connections=60_000))
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_IN_FLIGHT",
    "EXEMPT_PATHS",
    "bounded_protocol",
    "limit_in_flight",
    "max_connections_for",
    "raise_nofile_limit",
]

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 10.0
# High enough that a load test past capacity still measures queueing (the ALB's targets queue too), low enough to
# bound the memory of a flood.
DEFAULT_MAX_IN_FLIGHT = 4096
EXEMPT_PATHS = frozenset({"/health"})
# File descriptors kept for everything but client sockets: the listening socket, log files, the model, imports.
_FD_RESERVE = 64

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *headers: tuple[bytes, bytes],
    content_type: bytes = b"application/json",
) -> None:
    """Send a whole HTTP response over raw ASGI: its type, length and ``headers``, then ``body`` in one message.

    Example::

        await respond(send, 503, b'{"detail":"busy"}', (b"retry-after", b"1"))
    """
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def raise_nofile_limit(cap: int = 1 << 20) -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (at most ``cap``); returns the soft limit now.

    Example::

        raise_nofile_limit()      # 1024 -> 524288 on a typical Linux
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows has no RLIMIT
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return int(soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:  # e.g. macOS refuses above kern.maxfilesperproc
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, want, exc)
        return int(soft)
    return want


def max_connections_for(nofile: int) -> int:
    """The connection cap that leaves ``_FD_RESERVE`` descriptors free under a soft limit of ``nofile``."""
    return max(16, nofile - _FD_RESERVE) if nofile > 0 else 10_000


def bounded_protocol(*, header_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a header deadline and a connection cap (see the module docstring).

    Example::

        uvicorn.Config(app, http=bounded_protocol(header_timeout_s=10, max_connections=1000))
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    if not header_timeout_s > 0 or max_connections < 1:
        raise ValueError(
            f"header_timeout_s must be > 0 and max_connections >= 1 "
            f"(got {header_timeout_s}, {max_connections})"
        )
    # Connections waiting for a request's headers, oldest first (dicts keep insertion order); one per process.
    waiting: dict[Any, None] = {}

    class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                victim = next(iter(waiting), None)
                if victim is not None:
                    victim._close_waiting()
                else:
                    self.transport.close()
                    return
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            self._cancel_header_deadline()
            self._header_deadline = self.loop.call_later(header_timeout_s, self._close_waiting)
            waiting[self] = None

        def _cancel_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None
            waiting.pop(self, None)

        def _close_waiting(self) -> None:
            self._cancel_header_deadline()
            if not self.transport.is_closing():
                self.transport.close()

        def on_headers_complete(self) -> None:
            self._cancel_header_deadline()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The next request's headers get the same deadline (uvicorn's keep-alive timer also runs; whichever
            # fires first closes). Not while a pipelined request is already being served.
            if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
                self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            super().connection_lost(exc)

    return BoundedHttpToolsProtocol


def limit_in_flight(app: ASGIApp, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> ASGIApp:
    """Wrap an ASGI app: at most ``max_in_flight`` HTTP requests at once, ``/health`` exempt; others get 503.

    Example::

        app = limit_in_flight(create_app(), 4096)
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1 (got {max_in_flight})")
    in_flight = 0
    body = json.dumps({"detail": f"over this server's limit of {max_in_flight} requests in flight"}).encode()

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal in_flight
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await app(scope, receive, send)
            return
        if in_flight >= max_in_flight:
            await respond(send, 503, body, (b"retry-after", b"1"))
            return
        in_flight += 1
        try:
            await app(scope, receive, send)
        finally:
            in_flight -= 1

    # Routes and state stay reachable (server code reads app.state; tests read the routes).
    limited.state = getattr(app, "state", None)  # type: ignore[attr-defined]
    limited.wrapped = app  # type: ignore[attr-defined]
    return limited
