"""``capacity.spot``: the spec section and the rules it encodes, each with its AWS source (mlops_lb/_aws_rules.py).

Every rule is tested both ways: a spec that follows it passes, one that breaks it fails naming the field, the
rule id and its source URL.
"""

from __future__ import annotations

import pytest

import mlops_lb as ml
from mlops_lb._aws_rules import RULES, instance_architecture
from mlops_lb.errors import SpecError
from mlops_lb.spec import SpotInstanceType, SpotSpec

OK_TG = {"deregistration_delay_s": 60}


def _spec(spot=None, **kw):
    kw.setdefault("target_group", OK_TG)
    cap = {"min": 1, "desired": 2, "max": 4, **kw.pop("capacity", {})}
    if spot is not None:
        cap["spot"] = spot
    return ml.FleetSpec(name="spotty", capacity=cap, **kw)


def _err(fn) -> str:
    with pytest.raises(SpecError) as ei:
        fn()
    return str(ei.value)


def test_defaults_match_the_agreed_names() -> None:
    s = SpotSpec()
    assert (s.on_demand_base, s.on_demand_percent, s.instance_types) == (0, 0, ())
    assert (s.allocation_strategy, s.capacity_rebalance) == ("price-capacity-optimized", True)
    assert s.types_for("c7i.large") == (SpotInstanceType(type="c7i.large"),)


def test_types_are_names_or_type_weight_mappings_and_round_trip_through_yaml() -> None:
    spec = _spec({"instance_types": ["c7i.large", {"type": "c6i.large"}], "on_demand_base": 1})
    assert [t.type for t in spec.capacity.spot.instance_types] == ["c7i.large", "c6i.large"]
    assert not spec.capacity.spot.weighted
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec
    weighted = _spec(
        {"instance_types": [{"type": "c7i.large", "weight": 1}, {"type": "c7i.xlarge", "weight": 2}]}
    )
    assert weighted.capacity.spot.weighted
    assert ml.FleetSpec.from_yaml(weighted.to_yaml()) == weighted
    assert weighted.check(backend="aws") is weighted


@pytest.mark.parametrize(
    ("spot", "extra", "field", "rule"),
    [
        ({}, {"capacity": {"warm_pool": {"min_size": 1}}}, "capacity.warm_pool", "spot-warm-pool"),
        (
            {},
            {"target_group": {"deregistration_delay_s": 300}},
            "target_group.deregistration_delay_s",
            "spot-deregistration-delay",
        ),
        ({"on_demand_percent": 101}, {}, "capacity.spot.on_demand_percent", "spot-distribution"),
        ({"on_demand_percent": -1}, {}, "capacity.spot.on_demand_percent", "spot-distribution"),
        (
            {"instance_types": ["c7i.large", {"type": "c6i.large", "weight": 2}]},
            {},
            "capacity.spot.instance_types[0].weight",
            "spot-overrides",
        ),
        (
            {"instance_types": [f"c7i.{n}xlarge" for n in range(2, 43)]},
            {},
            "capacity.spot.instance_types",
            "spot-overrides",
        ),
    ],
)
def test_each_rule_fails_naming_field_and_source(spot, extra, field, rule) -> None:
    msg = _err(lambda: _spec(spot, **extra))
    assert msg.startswith(field), msg
    assert RULES[rule].source in msg


def test_the_rules_pass_at_their_limits() -> None:
    _spec({"on_demand_percent": 100}, target_group={"deregistration_delay_s": 90})
    _spec({"on_demand_percent": 0, "instance_types": [f"c7i.{n}xlarge" for n in range(2, 42)]})
    # Without spot the default 300 s delay and a warm pool stay allowed.
    ml.FleetSpec(name="x", capacity={"warm_pool": {"min_size": 1}})


def test_weight_range_and_type_list_shapes() -> None:
    assert "between 1 and 999" in _err(
        lambda: _spec({"instance_types": [{"type": "c7i.large", "weight": 0}]})
    )
    assert "between 1 and 999" in _err(
        lambda: _spec({"instance_types": [{"type": "c7i.large", "weight": 1000}]})
    )
    assert "twice" in _err(lambda: _spec({"instance_types": ["c7i.large", "c7i.large"]}))
    assert "must be a list" in _err(lambda: _spec({"instance_types": "c7i.large"}))
    assert "did you mean" in _err(lambda: _spec({"instance_types": [{"type": "c7i.large", "wieght": 2}]}))
    assert "allocation_strategy" in _err(lambda: _spec({"allocation_strategy": "cheapest"}))


def test_aws_check_refuses_mixed_architectures_naming_the_rule() -> None:
    ok = _spec({"instance_types": ["c7i.large", "c6i.large", "m7a.large"]})
    assert ok.check(backend="aws") is ok
    msg = _err(lambda: _spec({"instance_types": ["c7i.large", "c7g.large"]}).check(backend="aws"))
    assert msg.startswith("capacity.spot.instance_types[1]") and RULES["spot-architecture"].source in msg
    # An arm64 AMI with arm64 types passes; the same types on the default x86_64 AMI do not.
    arm = {
        "type": "c7g.large",
        "ami_ssm_parameter": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    }
    _spec({"instance_types": ["c7g.large", "m7g.large"]}, instance=arm).check(backend="aws")
    assert "spot-architecture" in _err(
        lambda: _spec({"instance_types": ["c7g.large", "m7g.large"]}).check(backend="aws")
    )
    # The local backend does not care about EC2 architectures.
    _spec({"instance_types": ["c7i.large", "c7g.large"]}).check(backend="local")


@pytest.mark.parametrize(
    ("itype", "arch"),
    [
        ("c6g.large", "arm64"),
        ("c7gn.xlarge", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("t4g.small", "arm64"),
        ("a1.medium", "arm64"),
        ("g5.xlarge", "x86_64"),
        ("g4ad.xlarge", "x86_64"),
        ("m7i.large", "x86_64"),
        ("inf2.xlarge", "x86_64"),
    ],
)
def test_architecture_guess(itype: str, arch: str) -> None:
    assert instance_architecture(itype) == arch
