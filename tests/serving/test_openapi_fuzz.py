"""schemathesis fuzzes the live server from its own OpenAPI document: no input may cause a 5xx.

Hypothesis drives schemathesis's case strategies directly (one bounded run per operation) rather than through
schemathesis's pytest plugin, whose lazy-fixture path relies on a pytest internal that pytest 9 removed.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

OPERATIONS = [("POST", "/predict"), ("GET", "/health"), ("GET", "/metrics")]
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# The GETs take no parameters, so only /predict has invalid requests to generate.
RUNS = [
    ("POST", "/predict", POSITIVE),
    ("POST", "/predict", NEGATIVE),
    ("GET", "/health", POSITIVE),
    ("GET", "/metrics", POSITIVE),
]


@pytest.fixture(scope="module")
def api_schema(server):
    # The server is ready, so the document already states the model's row width.
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_document_lists_the_operations(api_schema):
    """The fuzzed document covers every route the server has."""
    ops = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert ops == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_no_input_makes_a_5xx(api_schema, server, method, path, mode):
    """Generated valid and invalid requests never get a server error, and always carry X-Target-Id."""
    operation = api_schema[path][method]
    statuses: set[int] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call(timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.headers.get("x-target-id") == [server.target_id]
        statuses.add(response.status_code)

    run()
    assert statuses  # something was sent
    if path == "/predict" and mode is POSITIVE:
        assert 200 in statuses  # the schema is precise enough to produce valid rows
    if path == "/predict" and mode is NEGATIVE:
        assert 422 in statuses and 200 not in statuses  # invalid bodies are refused, and said so
