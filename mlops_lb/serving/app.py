"""The model server's ASGI app: ``POST /predict``, ``GET /health`` (readiness) and ``GET /metrics`` (Prometheus).

**Why one module (over 500 lines).** Everything here serves the one contract listed below: the state, the metrics,
the body reading (413) and ``parse_rows`` (422) all enforce promises of the same three endpoints, so a reader
checking one promise finds all of it in one file; the model itself lives apart in :mod:`.model`.

The same app runs as a local worker and on an EC2 instance behind an ALB. What it promises:

* Every response, errors and 404s included, carries ``X-Target-Id`` naming the target that served it (all but
  uvicorn's own 400 for a request that is not HTTP at all, which never reaches the app).
* ``POST /predict`` takes ``{"rows": [[number, ...], ...]}`` (1 to 1000 rows of exactly ``n_features`` finite
  numbers) and returns ``{"predictions": [...], "model": name, "target": target_id}``. A wrong shape or type is a
  422 whose ``detail`` says what was expected; a body over ``max_body_bytes`` is a 413 (checked on Content-Length
  and again while streaming, so no body is kept; the refused body is read and dropped up to 64 MiB so that a
  client that sends it all before reading, like urllib, gets the 413 rather than a reset); while the model loads
  it is a 503.
* ``GET /health`` is readiness: 503 until the model is loaded (in a background thread, so the server answers at
  once) and one self-test prediction succeeded, then 200. ``toggle_health_failing`` (SIGUSR1 under ``serve``)
  flips a switch that makes /health answer 503 while /predict keeps working: how the reliability tests emulate a
  target whose health check fails. A signal, not an HTTP endpoint, because the ALB would forward the endpoint.
* Emulated capacity: at most ``slots`` predictions at once (0 = unlimited; the rest queue) and each takes at least
  ``min_service_ms``, so a worker behaves like an instance of known capacity (``slots / min_service``) whatever the
  machine's cores are doing.
* ``GET /metrics``: ``mlops_requests_total{path,status}``, ``mlops_request_duration_seconds{path}`` (buckets from 1 ms
  to 10 s), ``mlops_in_flight_requests``, ``mlops_model_load_seconds``, ``mlops_queue_wait_seconds``. ``path`` is
  one of /predict, /health, /metrics or ``other``, so scanners cannot blow up the label set.

For tests only: ``MLOPS_LB_TEST_LOAD_DELAY_S`` (seconds) delays the end of the model load, so the 503-before-ready
window can be observed.

Example::

    app = create_app(model="demo", target_id="w1", slots=2, min_service_ms=20)   # about 100 rps at most
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ._guard import respond
from .model import DEMO, ModelHandle, load_model

__all__ = ["LATENCY_BUCKETS", "MAX_ROWS", "create_app"]

log = logging.getLogger(__name__)

MAX_ROWS = 1000
LOAD_DELAY_ENV = "MLOPS_LB_TEST_LOAD_DELAY_S"
# 1 ms .. 10 s, about 10 buckets a decade: the local fleet derives p50/p90/p99 from these, so they must be fine.
LATENCY_BUCKETS: tuple[float, ...] = (
    *(round(m * 10.0**e, 6) for e in (-3, -2, -1, 0) for m in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5)),
    10.0,
)
_PATHS = frozenset({"/predict", "/health", "/metrics"})
_NUMBER_TYPES = frozenset(
    {int, float}
)  # exact types: JSON true/false arrive as bool, which is no number here

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Metrics:
    """The app's own Prometheus registry (never the global one: several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlops_requests_total", "HTTP requests by path and status", ["path", "status"], registry=r
        )
        self.duration = Histogram(
            "mlops_request_duration_seconds",
            "Time from request to response end",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("mlops_in_flight_requests", "Requests being served now", registry=r)
        self.load_seconds = Gauge(
            "mlops_model_load_seconds", "Seconds the model took to load and self-test", registry=r
        )
        self.queue_wait = Histogram(
            "mlops_queue_wait_seconds",
            "Time /predict waited for a free slot",
            buckets=(0.0, *LATENCY_BUCKETS),
            registry=r,
        )
        self._children: dict[tuple[str, int], Any] = {}
        self._durations = {p: self.duration.labels(p) for p in (*_PATHS, "other")}

    def record(self, path: str, status: int, seconds: float) -> None:
        child = self._children.get((path, status))
        if child is None:
            child = self._children[(path, status)] = self.requests.labels(path, str(status))
        child.inc()
        self._durations[path].observe(seconds)


class ServerState:
    """What the routes share: the model once loaded, readiness, the health switch and the capacity emulation."""

    def __init__(
        self,
        *,
        model: str,
        target_id: str,
        slots: int,
        min_service_ms: float,
        max_body_bytes: int,
        trusted_types: tuple[str, ...] = (),
        allow_pickle: bool = False,
    ) -> None:
        if slots < 0 or min_service_ms < 0 or max_body_bytes < 1:
            raise ValueError(
                f"slots and min_service_ms must be >= 0 and max_body_bytes >= 1 "
                f"(got slots={slots}, min_service_ms={min_service_ms}, max_body_bytes={max_body_bytes})"
            )
        self.model_source = model
        self.trusted_types = trusted_types
        self.allow_pickle = allow_pickle
        self.target_id = target_id
        self.slots = slots
        self.min_service_s = min_service_ms / 1000.0
        self.max_body_bytes = max_body_bytes
        self.metrics = _Metrics()
        self.handle: ModelHandle | None = None
        self.load_error: str | None = None
        self.health_failing = False
        self._semaphore: asyncio.Semaphore | None = None
        self._load_started = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- model loading
    def start_loading(self) -> None:
        """Load the model on a background thread (once); /health turns 200 when it and a self-test succeed."""
        with self._lock:
            if self._load_started:
                return
            self._load_started = True
        threading.Thread(target=self._load, name="mlops-lb-model-load", daemon=True).start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            handle = load_model(
                self.model_source,
                trusted_types=self.trusted_types,
                allow_pickle=self.allow_pickle,
                for_serving=True,  # the demo without importing scikit-learn: seconds of CPU per target start
            )
            got = handle.predict(handle.sample_rows(1))
            if len(got) != 1:
                raise RuntimeError(f"self-test prediction returned {len(got)} values for 1 row")
            delay = float(os.environ.get(LOAD_DELAY_ENV) or 0)
            if delay > 0:
                time.sleep(delay)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model %r failed to load: %s", self.model_source, self.load_error)
            return
        self.metrics.load_seconds.set(time.perf_counter() - t0)
        self.handle = handle  # last: from here on the server is ready
        log.info(
            "model %s ready in %.2f s (%d features)", handle.name, time.perf_counter() - t0, handle.n_features
        )

    def toggle_health_failing(self) -> bool:
        """Flip the "health check failing" switch; returns the new value."""
        self.health_failing = not self.health_failing
        log.warning("health check switched to %s", "failing" if self.health_failing else "passing")
        return self.health_failing

    @property
    def semaphore(self) -> asyncio.Semaphore | None:
        # Made on first use, inside the running loop.
        if self.slots and self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        return self._semaphore


class _Instrument:
    """Pure-ASGI middleware: X-Target-Id on every response, request metrics, a 500 for unhandled errors, and
    ``/predict`` itself.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream per request. ``/predict``
    is answered here, not by a FastAPI route: FastAPI's routing and dependency solving cost about three times the
    prediction itself, and this is the path load tests hammer. Its OpenAPI entry is added by ``create_app``.
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.header = (b"x-target-id", state.target_id.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        if not state._load_started:  # served without lifespan (an in-process test client)
            state.start_loading()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        metrics = state.metrics
        # Only work counts as in flight: the concurrency agent's own /metrics scrape (and health checks) read 1.0
        # on an idle server, so a concurrency target near 1 never scaled in.
        counted = scope["path"] not in ("/metrics", "/health")
        if counted:
            metrics.in_flight.inc()
        t0 = time.perf_counter()
        try:
            if scope["path"] == "/predict":
                await _predict(state, scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            status = 500
            if not started:
                body = b'{"detail":"internal server error"}'
                await respond(send, 500, body, self.header)
        finally:
            if counted:
                metrics.in_flight.dec()
            path = scope["path"]
            metrics.record(path if path in _PATHS else "other", status, time.perf_counter() - t0)


# --------------------------------------------------------------------------- request parsing
class _Invalid(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise _Invalid(422, f"numbers must be finite (got {name})")


def _describe(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, bool, type(None))) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant
)  # made once: json.loads(**kw) builds one per call


def parse_rows(body: bytes, n_features: int) -> np.ndarray:
    """Validate a /predict body and return its rows as a float64 array; raises ``_Invalid`` with a 422 message."""
    expected = f'expected a JSON object {{"rows": [[{n_features} numbers], ...]}} with 1 to {MAX_ROWS} rows'
    try:
        data = _DECODER.decode(body.decode("utf-8"))  # JSON travels as UTF-8 (RFC 8259)
    except (ValueError, RecursionError) as exc:
        raise _Invalid(422, f"body is not valid JSON ({exc}); {expected}") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise _Invalid(422, f"body has no 'rows'; {expected}")
    rows = data["rows"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        got = f"{len(rows)} rows" if isinstance(rows, list) else _describe(rows)
        raise _Invalid(422, f"rows must be a list of 1 to {MAX_ROWS} rows (got {got})")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise _Invalid(
                422, f"each row must be a list of {n_features} numbers (row {i} is {_describe(row)})"
            )
        if len(row) != n_features:
            raise _Invalid(422, f"each row must have {n_features} numbers (row {i} has {len(row)})")
        for j, v in enumerate(row):
            if type(v) not in _NUMBER_TYPES:
                raise _Invalid(422, f"each value must be a number (rows[{i}][{j}] is {_describe(v)})")
    try:
        x = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise _Invalid(422, "numbers must fit in a 64-bit float") from None
    if not np.isfinite(x).all():
        raise _Invalid(422, "numbers must be finite (a value overflows a 64-bit float)")
    return x


def _json_safe(value: Any) -> Any:
    # A user's regressor may predict NaN or inf, which JSON cannot carry: send null instead.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")).encode(), status_code=status, media_type="application/json"
    )


# --------------------------------------------------------------------------- OpenAPI
_DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


_PREDICT_RESPONSES: dict[str, dict[str, Any]] = {
    "200": {
        "description": "one prediction per row",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["predictions", "model", "target"],
                    "properties": {
                        "predictions": {"type": "array"},
                        "model": {"type": "string"},
                        "target": {"type": "string"},
                    },
                }
            }
        },
    },
    "413": {
        "description": "body larger than the limit",
        "content": {"application/json": {"schema": _DETAIL}},
    },
    "422": {
        "description": "rows of the wrong shape or type; detail says what was expected",
        "content": {"application/json": {"schema": _DETAIL}},
    },
    "503": {
        "description": "the model is still loading",
        "content": {"application/json": {"schema": _DETAIL}},
    },
}


def _predict_openapi(n_features: int | None) -> dict[str, Any]:
    """The OpenAPI operation of ``POST /predict`` (rows of exactly ``n_features`` numbers once that is known)."""
    row: dict[str, Any] = {"type": "array", "items": {"type": "number"}}
    if n_features is not None:
        row.update(minItems=n_features, maxItems=n_features)
    return {
        "summary": "Predict",
        "description": 'One prediction per row. Body: `{"rows": [[number, ...], ...]}`.',
        "operationId": "predict",
        "responses": _PREDICT_RESPONSES,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["rows"],
                        "properties": {
                            "rows": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_ROWS,
                                "items": row,
                                "description": "rows of the model's features, in the order it was trained on",
                            }
                        },
                    }
                }
            },
        },
    }


_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "ready: model loaded and self-tested"},
    503: {"description": "not ready: loading, failed to load, or switched to failing (SIGUSR1)"},
}


# --------------------------------------------------------------------------- the app
# Recent FastAPI asks OpenTelemetry on every request whether anyone is listening (several os.environ reads); this
# server reports through Prometheus, so switch that off where the option exists.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    *,
    model: str = DEMO,
    target_id: str | None = None,
    slots: int = 0,
    min_service_ms: float = 0.0,
    max_body_bytes: int = 1_000_000,
    trusted_types: tuple[str, ...] = (),
    allow_pickle: bool = False,
) -> FastAPI:
    """The model server's FastAPI app (see the module docstring for what each route promises).

    Example::

        import uvicorn
        uvicorn.run(create_app(target_id="w1"), port=8080)   # or mlops_lb.serving.serve(port=8080)
    """
    state = ServerState(
        model=model,
        target_id=target_id or "local",
        slots=slots,
        min_service_ms=min_service_ms,
        max_body_bytes=max_body_bytes,
        trusted_types=trusted_types,
        allow_pickle=allow_pickle,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield

    app = FastAPI(
        title="mlops_lb model server", version="1", lifespan=lifespan, redoc_url=None, **_NO_TELEMETRY
    )
    app.state.server = state

    def openapi() -> dict[str, Any]:
        # /predict is served by the middleware (see _Instrument), so its operation is added here by hand. The row
        # width is known once the model has loaded; until then the document is rebuilt on every request.
        if app.openapi_schema is None:
            handle = state.handle
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"] = {
                "/predict": {"post": _predict_openapi(handle.n_features if handle else None)},
                **schema.get("paths", {}),
            }
            if handle is None:
                return schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/health", responses=_HEALTH_RESPONSES)
    async def health() -> Response:
        """Readiness: 200 once the model is loaded and a self-test prediction passed, 503 before or when failing."""
        handle = state.handle
        if handle is None:
            status = "error" if state.load_error else "loading"
            return _json(
                503,
                {
                    "status": status,
                    "detail": state.load_error or "the model is still loading",
                    "target": state.target_id,
                },
            )
        if state.health_failing:
            return _json(
                503,
                {
                    "status": "failing",
                    "detail": "health check switched to failing (SIGUSR1)",
                    "target": state.target_id,
                },
            )
        return _json(
            200,
            {
                "status": "ok",
                "model": handle.name,
                "n_features": handle.n_features,
                "target": state.target_id,
                "slots": state.slots,
                "min_service_ms": state.min_service_s * 1000.0,
            },
        )

    @app.get(
        "/metrics",
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        """Prometheus metrics of this server."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Instrument, state=state)
    return app


def _detail(text: str) -> bytes:
    return json.dumps({"detail": text}, separators=(",", ":")).encode()


async def _predict(state: ServerState, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /predict`` in plain ASGI: read the body (bounded), validate, wait for a slot, predict, answer."""
    if scope["method"] != "POST":
        await respond(send, 405, _detail("Method Not Allowed"), (b"allow", b"POST"))
        return
    handle = state.handle
    if handle is None:
        await respond(send, 503, _detail(state.load_error or "the model is still loading"))
        return
    try:
        body = await _read_body(scope, receive, state.max_body_bytes)
        if body is None:
            return  # the client went away
        x = parse_rows(body, handle.n_features)
    except _Invalid as exc:
        await respond(send, exc.status, _detail(exc.detail))
        return
    sem = state.semaphore
    if sem is None:
        predictions = await _predict_for_at_least(handle, x, state.min_service_s)
    else:
        t0 = time.perf_counter()
        async with sem:
            state.metrics.queue_wait.observe(time.perf_counter() - t0)
            predictions = await _predict_for_at_least(handle, x, state.min_service_s)
    payload = {"predictions": predictions, "model": handle.name, "target": state.target_id}
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps({**payload, "predictions": _json_safe(predictions)}, separators=(",", ":"))
    await respond(send, 200, text.encode())


# A refused body is still read (and dropped) up to this size before the 413 goes out: a client such as urllib sends
# the whole body before it reads, and a socket closed with unread data sends a reset (RFC 1122 4.2.2.13) that
# replaces the answer with ConnectionResetError. Past this, the 413 goes out at once and the connection closes.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, refused with 413 past ``limit`` bytes; None if the client disconnected."""
    too_big = _Invalid(413, f"body must be at most {limit} bytes")
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise _Invalid(422, f"Content-Length must be a number (got {value.decode('latin-1')!r})")
            if int(value) > limit:
                # Refused without keeping a byte; read to the end only if that is affordable.
                if int(value) <= DRAIN_LIMIT_BYTES:
                    await _drain(receive, DRAIN_LIMIT_BYTES)
                raise too_big
            break
    chunks: list[bytes] = []
    size = 0
    while True:  # checked again as it streams: Content-Length may be absent (chunked) or wrong
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive, DRAIN_LIMIT_BYTES - size)
            raise too_big
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, at most ``budget`` bytes (a client that went away ends it too)."""
    while budget > 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _predict_for_at_least(handle: ModelHandle, x: np.ndarray, min_service_s: float) -> list[Any]:
    t0 = time.perf_counter()
    predictions = handle.predict(x)
    # The event loop's timers can fire a little early (uvloop rounds to milliseconds): sleep until truly done.
    while (remaining := min_service_s - (time.perf_counter() - t0)) > 0:
        await asyncio.sleep(remaining)
    return predictions
