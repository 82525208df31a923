"""The ASGI app in-process, for what a real server cannot easily be made to do (crash, predict NaN)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import joblib
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.base import BaseEstimator, RegressorMixin

from mlops_lb.serving import create_app


class NanRegressor(RegressorMixin, BaseEstimator):
    """Predicts NaN for every row: a user model gone wrong."""

    n_features_in_ = 2

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), np.nan)


def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Drive one HTTP request through the ASGI app (no lifespan, as in-process clients do)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def ready(app: Any) -> Any:
    """Start the model load and wait for it, like /health turning 200."""
    state = app.state.server
    state.start_loading()
    deadline = time.monotonic() + 60
    while state.handle is None and state.load_error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.handle is not None, state.load_error
    return app


def test_unhandled_error_is_a_500_with_target_id():
    """A crashing route still answers 500 with X-Target-Id, and the 500 is counted."""
    app = create_app(target_id="t9")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    status, headers, body = call(app, "GET", "/boom")
    assert (status, headers["x-target-id"], json.loads(body)) == (
        500,
        "t9",
        {"detail": "internal server error"},
    )
    _, _, metrics = call(app, "GET", "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics.decode())
        for s in f.samples
    }
    assert samples[("mlops_requests_total", (("path", "other"), ("status", "500")))] == 1


def test_non_finite_predictions_become_null(tmp_path):
    """JSON cannot carry NaN: a model predicting NaN gets null in the response, not an invalid body or a 500."""
    path = tmp_path / "nan.joblib"
    joblib.dump(NanRegressor(), path)
    app = ready(create_app(model=str(path), allow_pickle=True))
    status, _, body = call(app, "POST", "/predict", b'{"rows": [[1, 2], [3, 4]]}')
    assert status == 200
    assert json.loads(body)["predictions"] == [None, None]


def test_first_request_starts_the_load_without_lifespan():
    """Served without lifespan events, the app still starts loading on its first request."""
    app = create_app()
    status, _, _ = call(app, "GET", "/health")
    assert status in (200, 503)
    ready(app)
    assert call(app, "GET", "/health")[0] == 200


def test_default_target_id_is_local():
    """Without a target id the header says 'local'."""
    assert call(create_app(), "GET", "/nope")[1]["x-target-id"] == "local"


@pytest.mark.parametrize("kwargs", [{"slots": -1}, {"min_service_ms": -1.0}, {"max_body_bytes": 0}])
def test_bad_options_are_refused(kwargs):
    """Negative slots or service time, or an empty body limit, are refused when building the app."""
    with pytest.raises(ValueError):
        create_app(**kwargs)


def test_an_idle_server_reports_zero_in_flight_to_its_own_scrape():
    """The concurrency agent scrapes /metrics: its own request must not count (an idle server read 1.0, so a
    concurrency_per_target target near 1 never scaled in). Issue 23."""
    app = ready(create_app())
    call(app, "GET", "/health")
    _, _, body = call(app, "GET", "/metrics")
    gauge = {
        s.name: s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
        if s.name == "mlops_in_flight_requests"
    }
    assert gauge == {"mlops_in_flight_requests": 0.0}
