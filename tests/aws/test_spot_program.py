"""capacity.spot in the Pulumi program under the strict mocks: the mixed instances policy, capacity rebalancing,
the agent's DeregisterTargets scoped to the fleet's own target group, and the spot agent's unit in user data.

The strict mocks enforce (mlops_lb/_aws_rules.py, each with its source): spot-overrides (at most 40 types,
WeightedCapacity 1-999 on all or none), spot-distribution (0-100 %), spot-warm-pool, asg-template-source (a
launch template or a mixed instances policy, not both), spot-offerings and deregister-scope. Each is tested
both ways: the program passes, and an input that breaks the rule is refused naming it.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from importlib.resources import files
from typing import Any

import pytest
from _awsaccount import OFFERED_AZS, RuleViolation

import mlops_lb as ml
from mlops_lb._aws_rules import RULES, resource_violations

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TG = "aws:lb/targetGroup:TargetGroup"


def _spec(**spot: Any) -> ml.FleetSpec:
    return ml.FleetSpec(
        name="spotfleet",
        target_group={"deregistration_delay_s": 60},
        capacity={
            "min": 1,
            "desired": 2,
            "max": 6,
            "spot": {"instance_types": ["t3.small", "t3a.small"], **spot},
        },
    )


def test_mixed_instances_policy_rebalancing_and_scoped_role(run_program: Any) -> None:
    rec = run_program(_spec(on_demand_base=1, on_demand_percent=25))
    group = rec.one(ASG)
    assert "launchTemplate" not in group or not group["launchTemplate"]
    mip = group["mixedInstancesPolicy"]
    assert [o["instanceType"] for o in mip["launchTemplate"]["overrides"]] == ["t3.small", "t3a.small"]
    assert mip["launchTemplate"]["launchTemplateSpecification"]["launchTemplateId"].startswith("lt-")
    dist = mip["instancesDistribution"]
    assert (dist["onDemandBaseCapacity"], dist["onDemandPercentageAboveBaseCapacity"]) == (1, 25)
    assert dist["spotAllocationStrategy"] == "price-capacity-optimized"
    assert group["capacityRebalance"] is True
    tg_arn = rec.outputs.get("target_group_arn") or next(i for t, n, i in rec.resources if t == TG).get("arn")
    policy = json.loads(rec.one(ROLE_POLICY, "spotfleet-spot-deregister")["policy"])
    [st] = policy["Statement"]
    assert st["Action"] == ["elasticloadbalancing:DeregisterTargets"]
    assert len(st["Resource"]) == 1 and re.fullmatch(
        r"arn:aws:elasticloadbalancing:.*:targetgroup/.+", st["Resource"][0]
    )
    if isinstance(tg_arn, str):
        assert st["Resource"] == [tg_arn]
    # The unit runs the spot agent shipped inside the user data: exactly the package's file.
    ud = base64.b64decode(rec.one(LT)["userData"]).decode()
    blob = ud.split("<<'SPOT_AGENT_EOF' | gunzip", 1)[1].split("\n", 1)[1].split("\nSPOT_AGENT_EOF\n", 1)[0]
    shipped = gzip.decompress(base64.b64decode("".join(blob.split())))
    assert shipped == files("mlops_lb.serving").joinpath("spot_agent.py").read_bytes()
    assert f'--target-group-arn "{st["Resource"][0]}"' in ud and "--port 8080" in ud
    assert "systemctl enable --now mlops-lb-spot.service" in ud


def test_weights_become_weighted_capacity(run_program: Any) -> None:
    spec = ml.FleetSpec(
        name="spotw",
        target_group={"deregistration_delay_s": 60},
        capacity={
            "min": 2, "desired": 4, "max": 8,
            "spot": {"instance_types": [{"type": "t3.small", "weight": 1}, {"type": "t3.medium", "weight": 2}],
                     "capacity_rebalance": False},
        },
    )  # fmt: skip
    group = run_program(spec).one(ASG)
    overrides = group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [(o["instanceType"], o["weightedCapacity"]) for o in overrides] == [
        ("t3.small", "1"),
        ("t3.medium", "2"),
    ]
    assert group["capacityRebalance"] is False


def test_without_spot_nothing_changes(run_program: Any) -> None:
    rec = run_program(ml.FleetSpec(name="plain"))
    group = rec.one(ASG)
    assert group["launchTemplate"] and not group.get("mixedInstancesPolicy")
    assert not [n for n, _ in rec.of_type(ROLE_POLICY) if n.endswith("spot-deregister")]
    assert "spot_agent" not in base64.b64decode(rec.one(LT)["userData"]).decode()


def test_a_type_not_offered_in_a_group_zone_is_refused(
    run_program: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(OFFERED_AZS, "t3a.small", {"us-east-1a", "us-east-1b"})  # not in c, d, f
    with pytest.raises(RuleViolation, match="spot-offerings"):
        run_program(_spec())


GOOD = {
    "vpcZoneIdentifiers": [],
    "mixedInstancesPolicy": {
        "instancesDistribution": {"onDemandBaseCapacity": 0, "onDemandPercentageAboveBaseCapacity": 0,
                                  "spotAllocationStrategy": "price-capacity-optimized"},
        "launchTemplate": {"launchTemplateSpecification": {"launchTemplateId": "lt-1", "version": "1"},
                           "overrides": [{"instanceType": "t3.small"}, {"instanceType": "t3a.small"}]},
    },
}  # fmt: skip


def _with(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        node = out
        *head, last = path.split("__")
        for k in head:
            node = node[k]
        node[last] = value
    return out


@pytest.mark.parametrize(
    ("inputs", "rule"),
    [
        (_with(launchTemplate={"id": "lt-1", "version": "1"}), "asg-template-source"),
        (_with(warmPool={"minSize": 1}), "spot-warm-pool"),
        (_with(mixedInstancesPolicy__launchTemplate__overrides=[{"instanceType": f"c7i.{i}xlarge"} for i in range(41)]),
         "spot-overrides"),
        (_with(mixedInstancesPolicy__launchTemplate__overrides=[{"instanceType": "a", "weightedCapacity": "2"},
                                                                {"instanceType": "b"}]), "spot-overrides"),
        (_with(mixedInstancesPolicy__launchTemplate__overrides=[{"instanceType": "a", "weightedCapacity": "1000"}]),
         "spot-overrides"),
        (_with(mixedInstancesPolicy__instancesDistribution__onDemandPercentageAboveBaseCapacity=101),
         "spot-distribution"),
        (_with(mixedInstancesPolicy__instancesDistribution__spotAllocationStrategy="cheapest"), "spot-distribution"),
    ],
)  # fmt: skip
def test_strict_mock_refuses_each_broken_rule(inputs: dict[str, Any], rule: str) -> None:
    assert resource_violations(ASG, "g", GOOD) == []
    problems = resource_violations(ASG, "g", inputs)
    assert problems and all(RULES[rule].source in p for p in problems if rule in p)
    assert any(f"[{rule}:" in p for p in problems), problems


def test_deregister_targets_must_name_the_target_group() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-abc/0123456789abcdef"

    def doc(res: list[str]) -> dict[str, Any]:
        st = {"Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"], "Resource": res}
        return {"policy": json.dumps({"Version": "2012-10-17", "Statement": [st]})}

    assert resource_violations(ROLE_POLICY, "p", doc([arn])) == []
    assert any("[deregister-scope:" in p for p in resource_violations(ROLE_POLICY, "p", doc(["*"])))
