"""The model server as it really runs: a uvicorn subprocess on 127.0.0.1 with a random port."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_lb.serving import demo_payloads, load_model

ROWS = load_model("demo").sample_rows(5, seed=1)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text into {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestPredict:
    def test_single_row(self, server):
        """One row gives one prediction, the model's name, the target id, and the X-Target-Id header."""
        r = server.predict(ROWS[:1])
        assert r.status == 200, r.body
        body = r.json()
        assert body == {
            "predictions": body["predictions"],
            "model": "demo-breast-cancer-logreg",
            "target": server.target_id,
        }
        assert len(body["predictions"]) == 1 and body["predictions"][0] in (0, 1)
        assert r.headers["x-target-id"] == server.target_id
        assert r.headers["content-type"] == "application/json"

    def test_batch_matches_the_model(self, server):
        """A batch gives one prediction per row, equal to scikit-learn's own predict."""
        r = server.predict(ROWS)
        assert r.status == 200, r.body
        assert r.json()["predictions"] == load_model("demo").estimator.predict(ROWS).tolist()

    def test_demo_payloads_are_accepted(self, server):
        """The load generator's default bodies are valid requests."""
        for body in demo_payloads(3, rows_per_request=4, seed=7):
            r = server.request("POST", "/predict", body, {"Content-Type": "application/json"})
            assert r.status == 200 and len(r.json()["predictions"]) == 4


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (json.dumps({"rows": [[1.0, 2.0, 3.0]]}), "each row must have 30 numbers (row 0 has 3)"),
            (json.dumps({"rows": [ROWS[0], [*ROWS[0], 1.0]]}), "row 1 has 31"),
            (json.dumps({"rows": [["a"] * 30]}), 'rows[0][0] is "a"'),
            (json.dumps({"rows": [[True] * 30]}), "rows[0][0] is true"),
            (json.dumps({"rows": [[None] * 30]}), "rows[0][0] is null"),
            (json.dumps({"rows": []}), "1 to 1000 rows (got 0 rows)"),
            (json.dumps({"rows": [ROWS[0]] * 1001}), "1 to 1000 rows (got 1001 rows)"),
            (json.dumps({"rows": "1,2,3"}), "rows must be a list"),
            (json.dumps({"rows": [1.0] * 30}), "row 0 is float"),
            (json.dumps({"data": [ROWS[0]]}), "body has no 'rows'"),
            (json.dumps([ROWS[0]]), "body has no 'rows'"),
            ("not json", "body is not valid JSON"),
            ("", "body is not valid JSON"),
            ('{"rows": [[' + ",".join(["NaN"] * 30) + "]]}", "must be finite (got NaN)"),
            ('{"rows": [[' + ",".join(["1e400"] * 30) + "]]}", "must be finite"),
            ('{"rows": [[' + ",".join(["1" + "0" * 400] * 30) + "]]}", "must fit in a 64-bit float"),
            ("[" * 100_000 + "]" * 100_000, "body is not valid JSON"),
        ],
        ids=[
            "narrow",
            "wide",
            "string",
            "bool",
            "null",
            "empty",
            "too-many",
            "rows-string",
            "flat",
            "no-rows",
            "array",
            "not-json",
            "empty-body",
            "nan",
            "overflow",
            "huge-int",
            "deep-nesting",
        ],
    )
    def test_422_says_what_was_expected(self, server, body, expected):
        """Wrong shapes and types are a 422 whose detail names what was expected and what arrived."""
        r = server.request("POST", "/predict", body, {"Content-Type": "application/json"})
        assert r.status == 422, r.body
        assert expected in r.json()["detail"]
        assert r.headers["x-target-id"] == server.target_id

    def test_413_on_content_length(self, server):
        """A body declared over 1 MB is refused with 413 before it is read."""
        r = server.request("POST", "/predict", b"x" * 1_000_001, {"Content-Type": "application/json"})
        assert r.status == 413
        assert "at most 1000000 bytes" in r.json()["detail"]
        assert r.headers["x-target-id"] == server.target_id

    def test_413_on_streamed_size(self, server):
        """A chunked body with no Content-Length is refused once its streamed size passes the limit."""

        def chunks():  # exactly one byte too many, all of it sent, so the reply is not lost to a reset
            yield from [b" " * 100_000] * 10
            yield b" "

        # http.client sends an iterable body with Transfer-Encoding: chunked and no Content-Length
        r = server.request("POST", "/predict", chunks(), {"Content-Type": "application/json"})  # type: ignore[arg-type]
        assert r.status == 413
        assert r.headers["x-target-id"] == server.target_id

    @pytest.mark.parametrize("size", [1_000_001, 8_000_000])
    def test_413_is_readable_by_urllib(self, server, size):
        """urllib sends the whole body before it reads: the server reads (and drops) it, so urllib gets the 413.

        Closing a socket with unread data makes the kernel send a reset (RFC 1122 4.2.2.13), which urllib reports
        as ConnectionResetError or BrokenPipeError instead of the answer: the issue-16 bug this pins down.
        """
        import urllib.error
        import urllib.request

        req = urllib.request.Request(
            server.url + "/predict",
            data=b" " * size,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=30)
        with info.value:
            assert info.value.code == 413
            assert "at most 1000000 bytes" in json.loads(info.value.read())["detail"]
            assert info.value.headers["x-target-id"] == server.target_id

    def test_body_just_under_the_limit_is_parsed(self, server):
        """The limit counts bytes: a 1 MB body of valid rows padded with spaces is still served."""
        body = json.dumps({"rows": ROWS[:1]})
        body = body + " " * (1_000_000 - len(body))
        r = server.request("POST", "/predict", body, {"Content-Type": "application/json"})
        assert r.status == 200, r.body


class TestTargetId:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/health", 200),
            ("GET", "/metrics", 200),
            ("GET", "/openapi.json", 200),
            ("GET", "/nope", 404),
            ("GET", "/predict", 405),
            ("POST", "/predict", 422),
        ],
    )
    def test_every_response_names_the_target(self, server, method, path, status):
        """X-Target-Id is on successes, errors and unknown paths alike."""
        r = server.request(method, path, b"{}" if method == "POST" else None)
        assert r.status == status
        assert r.headers["x-target-id"] == server.target_id


class TestOpenAPI:
    def test_predict_body_is_described(self, server):
        """The OpenAPI document gives /predict's body: rows of exactly n_features numbers, 1 to 1000 of them."""
        doc = server.request("GET", "/openapi.json").json()
        schema = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        rows = schema["properties"]["rows"]
        assert schema["required"] == ["rows"]
        assert (rows["minItems"], rows["maxItems"]) == (1, 1000)
        assert rows["items"]["items"] == {"type": "number"}
        assert rows["items"]["minItems"] == rows["items"]["maxItems"] == 30


class TestReadiness:
    def test_503_until_the_model_is_loaded(self, server_factory):
        """While the model loads /health and /predict answer 503 (with X-Target-Id); afterwards 200."""
        s = server_factory(env={"MLOPS_LB_TEST_LOAD_DELAY_S": "3"}, wait_ready=False)
        s.wait_listening()
        h = s.request("GET", "/health")
        assert h.status == 503 and h.json()["status"] == "loading"
        assert h.headers["x-target-id"] == s.target_id
        p = s.predict(ROWS[:1])
        assert p.status == 503 and "loading" in p.json()["detail"]
        assert p.headers["x-target-id"] == s.target_id
        s.wait_ready()
        h = s.request("GET", "/health")
        assert h.status == 200 and h.json()["status"] == "ok"
        assert s.predict(ROWS[:1]).status == 200

    def test_model_that_fails_to_load_stays_unready(self, server_factory, tmp_path):
        """A model file that is not an estimator keeps /health at 503 with the reason; the server stays up."""
        bad = tmp_path / "bad.joblib"
        import joblib

        joblib.dump({"not": "a model"}, bad)
        s = server_factory(model=str(bad), allow_pickle=True, wait_ready=False)
        s.wait_listening()
        deadline = time.monotonic() + 30
        while (h := s.request("GET", "/health")).json()[
            "status"
        ] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert h.status == 503 and h.json()["status"] == "error"
        assert "must hold a fitted estimator" in h.json()["detail"]
        assert s.predict([[0.0]]).status == 503

    def test_sigusr1_toggles_health(self, server_factory):
        """SIGUSR1 makes /health fail while /predict keeps working; a second SIGUSR1 restores it."""
        s = server_factory()

        def wait_health(status):
            deadline = time.monotonic() + 10
            while (r := s.request("GET", "/health")).status != status and time.monotonic() < deadline:
                time.sleep(0.02)
            return r

        s.proc.send_signal(signal.SIGUSR1)
        r = wait_health(503)
        assert r.status == 503 and r.json()["status"] == "failing"
        assert s.predict(ROWS[:1]).status == 200
        s.proc.send_signal(signal.SIGUSR1)
        assert wait_health(200).status == 200


class TestMetrics:
    def test_prometheus_names_and_counts(self, server_factory):
        """/metrics has the names the local fleet parses, counting requests by path and status."""
        s = server_factory(slots=2)
        for _ in range(3):
            assert s.predict(ROWS[:1]).status == 200
        assert s.predict([[1.0]]).status == 422
        assert s.request("GET", "/nope").status == 404
        r = s.request("GET", "/metrics")
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
        m = metric_samples(r.body.decode())
        assert m[("mlops_requests_total", (("path", "/predict"), ("status", "200")))] == 3
        assert m[("mlops_requests_total", (("path", "/predict"), ("status", "422")))] == 1
        assert m[("mlops_requests_total", (("path", "other"), ("status", "404")))] == 1
        assert m[("mlops_request_duration_seconds_count", (("path", "/predict"),))] == 4
        buckets = sorted(
            float(dict(k[1])["le"])
            for k in m
            if k[0] == "mlops_request_duration_seconds_bucket" and dict(k[1])["path"] == "/predict"
        )
        assert buckets[0] == 0.001 and 10.0 in buckets and math.isinf(buckets[-1]) and len(buckets) >= 30
        # The scrape itself is not counted (the agent scraping an idle server read 1.0 and blocked scale-in).
        assert m[("mlops_in_flight_requests", ())] == 0
        assert m[("mlops_model_load_seconds", ())] > 0
        assert m[("mlops_queue_wait_seconds_count", ())] == 3
        assert not any(k[0].endswith("_created") for k in m)


class TestCapacity:
    def test_slots_and_min_service_bound_throughput(self, server_factory):
        """With 2 slots and 200 ms each, 6 parallel requests take at least ceil(6/2) * 200 ms, each at least 200 ms."""
        s = server_factory(slots=2, min_service_ms=200)
        n = 6

        def one(_: Any) -> float:
            t0 = time.perf_counter()
            assert s.predict(ROWS[:1]).status == 200
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            each = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - t0
        assert elapsed >= math.ceil(n / 2) * 0.2
        assert min(each) >= 0.2
        m = metric_samples(s.request("GET", "/metrics").body.decode())
        assert m[("mlops_queue_wait_seconds_count", ())] == n
        assert (
            m[("mlops_queue_wait_seconds_sum", ())] >= 0.2 * (1 + 1 + 2 + 2) * 0.9
        )  # 4 of 6 waited 1-2 turns


class TestShutdown:
    def test_sigterm_finishes_the_request_in_flight_then_exits_0(self, server_factory):
        """SIGTERM during a slow request: that request still gets its 200, then the process exits with 0."""
        s = server_factory(min_service_ms=1500)
        result: dict[str, Any] = {}

        def slow() -> None:
            result["reply"] = s.predict(ROWS[:1])

        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the /metrics scrape itself is not counted
            m = metric_samples(s.request("GET", "/metrics").body.decode())
            if m[("mlops_in_flight_requests", ())] >= 1:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the slow request never arrived")
        s.proc.send_signal(signal.SIGTERM)
        t.join(20)
        assert result["reply"].status == 200
        assert s.proc.wait(20) == 0
        assert "Finished server process" in s.log()
