"""The ``routing:`` spec section: each rule refuses bad input naming the field, and good input round-trips.

Rules and their sources:

| rule                                                        | source                                                  |
|-------------------------------------------------------------|---------------------------------------------------------|
| hash-balance-factor: 0 disables, otherwise a percentage > 100 | https://docs.haproxy.org/2.6/configuration.html#4-hash-balance-factor |
| ALB app cookie: AWSALB/AWSALBAPP/AWSALBTG prefixes reserved | https://docs.aws.amazon.com/elasticloadbalancing/latest/application/sticky-sessions.html |
| ALB stickiness duration 1 s to 1 week (604800 s)            | same page (checked 2026-12-07)                          |
| header / cookie names are RFC 9110 tokens                   | https://www.rfc-editor.org/rfc/rfc9110#name-tokens      |
"""

from __future__ import annotations

import pytest

import mlops_lb as ml
from mlops_lb.errors import SpecError


def test_default_is_the_albs_own_algorithm() -> None:
    spec = ml.FleetSpec(name="x")
    assert spec.routing.policy == "alb" and not spec.routing.cache_aware
    assert spec.routing.key_header == "X-Prefix-Key" and spec.routing.hash_balance_factor == 125


def test_round_trip_with_router_tier() -> None:
    spec = ml.FleetSpec(
        name="x",
        server={"kind": "llm-emulator"},
        routing={"policy": "consistent_hash", "hash_balance_factor": 0, "router": {"max": 3}},
    )
    assert spec.routing.cache_aware and spec.routing.router is not None and spec.routing.router.max == 3
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec


@pytest.mark.parametrize(
    ("routing", "field", "words"),
    [
        ({"policy": "consistant_hash"}, "routing.policy", "did you mean 'consistent_hash'"),
        ({"policy": "least_outstanding_requests"}, "routing.policy", "target_group.algorithm"),
        ({"hash_balance_factor": 100}, "routing.hash_balance_factor", "above 100"),
        ({"hash_balance_factor": 101}, None, None),
        ({"hash_balance_factor": -1}, "routing.hash_balance_factor", "between 0"),
        ({"hash_balance_factor": True}, "routing.hash_balance_factor", "integer"),
        ({"cookie_name": "AWSALBAPP-1"}, "routing.cookie_name", "reserved"),
        ({"cookie_name": "awsalbtg"}, "routing.cookie_name", "reserved"),
        ({"cookie_name": "a;b"}, "routing.cookie_name", "cookie name"),
        ({"cookie_duration_s": 0}, "routing.cookie_duration_s", "between 1 and 604800"),
        ({"cookie_duration_s": 604_800}, None, None),
        ({"cookie_duration_s": 604_801}, "routing.cookie_duration_s", "between 1 and 604800"),
        ({"key_header": "X Prefix"}, "routing.key_header", "header name"),
        ({"key_header": ""}, "routing.key_header", "empty"),
        ({"polcy": "alb"}, "routing.polcy", "did you mean 'policy'"),
        ({"router": {"min": 2, "desired": 1}}, "routing.router.desired", "between"),
        ({"router": "big"}, "routing.router", "RouterTierSpec"),
    ],
)
def test_bad_routing_names_the_field(routing: dict, field: str | None, words: str | None) -> None:
    if field is None:  # the edge that must pass: the rule is not stricter than its source
        ml.FleetSpec(name="x", routing=routing)
        return
    with pytest.raises(SpecError) as err:
        ml.FleetSpec(name="x", routing=routing)
    assert err.value.field == field
    assert words in str(err.value)


def test_router_tier_needs_an_llm_server() -> None:
    with pytest.raises(SpecError, match="needs an LLM server") as err:
        ml.FleetSpec(name="x", routing={"router": {}})  # server.kind model by default
    assert err.value.field == "routing.router"
    ml.FleetSpec(name="x", server={"kind": "llm-emulator"}, routing={"router": {}})
    ml.FleetSpec(name="x", server={"command": "vllm serve m --port {port}"}, routing={"router": {}})
