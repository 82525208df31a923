"""compare_routing: bad input refused before anything starts, and one short real A/B on the local fleet.

The real A/B checks the plumbing the verdicts rest on, not a performance claim (that is bench/bench_routing.py):
every arm replays the same requests, the targets' caches are emptied before each arm (vLLM's route
``POST /reset_prefix_cache``, which the emulator serves), and each arm's hit rate is read from the targets' own
``vllm:prefix_cache_queries_total`` / ``vllm:prefix_cache_hits_total`` counters.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

import pytest

import mlops_lb as ml
from mlops_lb.errors import SpecError
from mlops_lb.routing_ab import _hit_rate, compare_routing

LLM = {"kind": "llm-emulator", "llm": {"prefix_cache_blocks": 64, "block_size": 16, "max_model_len": 8192}}


def _spec(**over: Any) -> ml.FleetSpec:
    return ml.FleetSpec.from_dict(
        {
            "name": "ab",
            "capacity": {"min": 2, "desired": 2, "max": 2},
            "health_check": {
                "interval_s": 5, "timeout_s": 2, "healthy_threshold": 2, "unhealthy_threshold": 2,
                "grace_period_s": 60,
            },
            "server": LLM,
            "local": {"period_s": 1.0},
            **over,
        }
    )  # fmt: skip


def _multiturn() -> Any:
    return ml.load.multiturn(
        sessions=6, session_rate=2.0, turns=(2, 3), think_s=1.0, system_prompts=2, system_blocks=4,
        turn_blocks=(1, 2), output_tokens=(4, 8), block_tokens=16, max_prompt_tokens=512, seed=2,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"policies": ["least_outstanding_requests"]}, "policies", "at least two"),
        ({"policies": ["lor", "consistent_hash"]}, "policies", "unknown policy 'lor'"),
        ({"policies": "consistent_hash"}, "policies", "list"),
        ({"baseline": "sticky_cookie"}, "baseline", "must be one of policies"),
        ({"repeats": 0}, "repeats", "1 to 50"),
        ({"slo": {}}, "slo", "goodput needs a bound"),
        ({"slo": {"ttft": 1}}, "slo", "unknown key 'ttft'"),
        ({"slo": {"ttft_s": -1}}, "slo.ttft_s", "positive"),
    ],
)
def test_bad_arguments_are_refused_before_any_process(kwargs: dict[str, Any], field: str, words: str) -> None:
    args: dict[str, Any] = {
        "policies": ["least_outstanding_requests", "consistent_hash"],
        "slo": {"ttft_s": 1},
    }
    args.update(kwargs)
    with pytest.raises(SpecError) as err:
        compare_routing(_spec(), _multiturn(), **args)
    assert err.value.field == field and words in str(err.value)


def test_a_cache_aware_policy_on_a_trace_without_a_key_is_refused_naming_the_fix() -> None:
    keyless = ml.load.trace([0.0, 0.5, 1.0])
    with pytest.raises(SpecError, match="no prefix or session key") as err:
        compare_routing(_spec(), keyless, policies=["round_robin", "sticky_cookie"], slo={"ttft_s": 1})
    assert err.value.field == "trace" and "mooncake-conv-2025" in str(err.value)
    with pytest.raises(SpecError, match="has no prompt prefix") as err:
        compare_routing(
            ml.FleetSpec(name="m"),
            _multiturn(),
            policies=["round_robin", "consistent_hash"],
            slo={"ttft_s": 1},
        )
    assert err.value.field == "server.kind"
    with pytest.raises(SpecError, match="switch routing at run time"):
        compare_routing(object(), _multiturn(), slo={"ttft_s": 1})


def test_hit_rate_counts_only_the_arm_and_survives_a_restarted_target() -> None:
    before = {"a": (100.0, 50.0), "b": (10.0, 0.0)}
    # b restarted: its counters began again; c did not answer before the arm: its lifetime is not this arm's
    after = {"a": (300.0, 200.0), "b": (5.0, 5.0), "c": (1000.0, 900.0)}
    assert _hit_rate(before, after) == pytest.approx((150 + 5) / (200 + 5))
    assert math.isnan(_hit_rate({}, {}))


@pytest.mark.fleet
@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_a_short_real_ab_measures_each_arm_cold() -> None:
    t = _multiturn()
    rows: list[dict[str, Any]] = []
    rc = compare_routing(
        _spec(), t, policies=["round_robin", "sticky_cookie"], repeats=1, slo={"ttft_s": 1.0},
        idle_s=0.3, on_arm=rows.append,
    )  # fmt: skip
    assert [r["policy"] for r in rows] != [] and {r["policy"] for r in rows} == {
        "round_robin",
        "sticky_cookie",
    }
    assert all(r["caches_reset"] == 2 for r in rows)  # both targets emptied before each arm
    assert all(r["requests"] == len(t.offsets) for r in rows)  # the same requests in every arm
    table = rc.table.set_index("policy")
    # Multi-turn sessions resend their history: some prompt tokens are found cached in every arm, and the
    # session-sticky arm keeps each conversation on one target.
    assert (table["hit_rate"] > 0).all(), table["hit_rate"]
    assert table.loc["sticky_cookie", "hit_rate"] >= table.loc["round_robin", "hit_rate"]
    assert rc.details["cold_arms"] is True and rc.baseline == "round_robin"
    assert rc.verdicts["sticky_cookie"].split(":")[0] in (
        "worth it", "not worth its tier", "worse", "bought by shedding",
    )  # fmt: skip
