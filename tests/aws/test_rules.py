"""The table of AWS rules (mlops_lb/_aws_rules.py) and the strict Pulumi mocks that enforce it.

Each test names the rule and AWS's doc (the table carries the URL). A mock that accepted these inputs would
prove nothing: these tests make sure it refuses exactly what AWS refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from _awsaccount import OFFERED_AZS, SUBNET_AZS, RuleViolation

from mlops_lb import FleetSpec, open_fleet
from mlops_lb._aws_rules import (
    RULES,
    alb_name_problem,
    partition_for_region,
    policy_arn,
    resource_violations,
    security_group_name_problem,
)
from mlops_lb.aws import preflight
from mlops_lb.errors import SpecError

SUBNETS = sorted(SUBNET_AZS)  # a..f, one per AZ


def _v(typ: str, inputs: dict[str, Any], name: str = "demo", **kw: Any) -> list[str]:
    return resource_violations(typ, name, inputs, subnet_azs=SUBNET_AZS, offered_azs=OFFERED_AZS, **kw)


def test_every_rule_cites_an_aws_document() -> None:
    """One table, each rule with its source on docs.aws.amazon.com."""
    assert {
        "s3-object-tags",
        "sg-name",
        "alb-subnets",
        "alb-name",
        "partition",
        "tg-health-check",
        "instance-refresh",
        "instance-type-offerings",
        "resource-tags",
        "warm-pool-hook",
        "gpu-vcpu-quota",
        "deregistration-delay",
        "iam-no-resource-level",
        "ecr-pull",
        "custom-metric-tracking",
        "put-metric-namespace",
    } <= set(RULES)
    # AWS's own documentation: docs.aws.amazon.com, or its China-region copy docs.amazonaws.cn (the only stored
    # copy of the DLAMI release notes the gpu-ami-families rule cites)
    for rule in RULES.values():
        assert rule.source.startswith(("https://docs.aws.amazon.com/", "https://docs.amazonaws.cn/")), rule


def test_s3_objects_take_at_most_ten_tags() -> None:
    """S3 allows 10 tags per object (object-tagging.html); other resources 50."""
    obj = "aws:s3/bucketObjectv2:BucketObjectv2"
    assert _v(obj, {"tags": {f"k{i}": "v" for i in range(10)}}) == []
    assert "s3-object-tags" in _v(obj, {"tags": {f"k{i}": "v" for i in range(11)}})[0]
    assert _v("aws:s3/bucket:Bucket", {"tags": {f"k{i}": "v" for i in range(11)}}) == []


def test_security_group_names_may_not_start_with_sg() -> None:
    """CreateSecurityGroup: up to 255 characters, not starting with sg-."""
    sg = "aws:ec2/securityGroup:SecurityGroup"
    assert _v(sg, {}, name="sg-demo-alb")  # Pulumi autonames <resource name>-<7 chars>
    assert _v(sg, {}, name="demo-alb") == []
    assert security_group_name_problem("SG-x") and security_group_name_problem("x" * 256)
    assert security_group_name_problem("demo ok (1)") is None


def test_alb_takes_one_subnet_per_az_and_two_azs() -> None:
    """CreateLoadBalancer: only one subnet per AZ; an ALB needs subnets in at least two AZs."""
    lb = "aws:lb/loadBalancer:LoadBalancer"
    assert _v(lb, {"subnets": SUBNETS}) == []
    two_in_a = {**SUBNET_AZS, "subnet-0aaaa2222": "us-east-1a"}
    assert resource_violations(
        lb, "demo", {"subnets": [SUBNETS[0], "subnet-0aaaa2222", SUBNETS[1]]}, subnet_azs=two_in_a
    )
    assert _v(lb, {"subnets": SUBNETS[:1]})
    assert _v(lb, {"subnets": ["subnet-0deadbeef", *SUBNETS[:2]]})  # not in the account


def test_alb_and_target_group_names() -> None:
    """At most 32 alphanumerics/hyphens (Pulumi adds 8), an ALB not starting internal-."""
    assert alb_name_problem("a" * 24 + "-abcdef1") is None
    assert alb_name_problem("a" * 25 + "-abcdef1")
    assert alb_name_problem("internal-x-abcdef1")
    assert alb_name_problem("internal-x-abcdef1", kind="target group") is None
    assert _v("aws:lb/targetGroup:TargetGroup", {}, name="a" * 25)


def test_group_uses_only_zones_that_offer_the_instance_type() -> None:
    """DescribeInstanceTypeOfferings: us-east-1e has no t3.small; a group subnet there fails its launches."""
    asg = "aws:autoscaling/group:Group"
    e = [s for s, az in SUBNET_AZS.items() if az == "us-east-1e"]
    assert _v(asg, {"vpcZoneIdentifiers": SUBNETS}, instance_type="t3.small")
    assert _v(asg, {"vpcZoneIdentifiers": [s for s in SUBNETS if s not in e]}, instance_type="t3.small") == []


@pytest.mark.parametrize(
    ("region", "partition"),
    [("us-east-1", "aws"), ("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn"), ("eu-west-1", "aws")],
)
def test_policy_arns_carry_the_region_partition(region: str, partition: str) -> None:
    """ARNs carry the partition: aws, aws-us-gov (GovCloud), aws-cn (China)."""
    assert partition_for_region(region) == partition
    att = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    assert _v(att, {"policyArn": policy_arn("X", region)}, region=region) == []
    if partition != "aws":
        assert _v(att, {"policyArn": "arn:aws:iam::aws:policy/X"}, region=region)


def test_health_check_ranges_and_matcher() -> None:
    """CreateTargetGroup: interval 5-300, timeout 2-120 < interval, thresholds 2-10, matcher 200-499, HTTP(S)."""
    tg = "aws:lb/targetGroup:TargetGroup"
    ok = {
        "protocol": "HTTP",
        "interval": 30,
        "timeout": 5,
        "healthyThreshold": 5,
        "unhealthyThreshold": 2,
        "matcher": "200-299",
    }
    assert _v(tg, {"healthCheck": ok}) == []
    for bad in (
        {"interval": 4},
        {"timeout": 30},
        {"healthyThreshold": 11},
        {"matcher": "200,500"},
        {"protocol": "TCP"},
    ):
        assert _v(tg, {"healthCheck": {**ok, **bad}}), bad


def test_instance_refresh_must_keep_capacity() -> None:
    """Min healthy 100 with max above 100 launches before terminating; 50/unset (the old program) does not."""
    asg = "aws:autoscaling/group:Group"
    prefs = {"minHealthyPercentage": 100, "maxHealthyPercentage": 200}
    assert _v(asg, {"instanceRefresh": {"preferences": prefs}}) == []
    assert _v(asg, {"instanceRefresh": {"preferences": {"minHealthyPercentage": 50}}})
    assert _v(
        asg, {"instanceRefresh": {"preferences": {"minHealthyPercentage": 100, "maxHealthyPercentage": 201}}}
    )


def test_spec_refuses_names_ec2_would_refuse() -> None:
    """FleetSpec(name="sg-...") used to pass, then EC2 refused the security groups mid-deployment. The AWS
    backend's rule refuses it from spec.check, open_fleet and preflight, before any call to AWS."""
    spec = FleetSpec(name="sg-demo")
    for attempt in (
        lambda: spec.check(backend="aws"),
        lambda: open_fleet(spec, backend="aws"),
        lambda: preflight(spec, session=object()),  # a session object that cannot make a single call
    ):
        with pytest.raises(SpecError) as info:
            attempt()
        assert info.value.field == "name" and "sg-" in str(info.value)
    assert spec.check(backend="local") is spec  # only EC2 refuses it


def test_strict_mocks_reject_a_resource_that_breaks_a_rule(
    run_program: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mocks raise for a rule-breaking resource: a program putting 11 tags on an S3 object fails the run."""
    from mlops_lb.aws import program

    original = program._Ctx.__init__

    def leaky(self: Any, **kw: Any) -> None:  # the old program: every spec tag on every S3 object
        original(self, **kw)
        self.asset_tags = dict(self.tags)

    spec = FleetSpec(name="tags", tags={f"t{i}": "x" for i in range(9)})
    run_program(spec)  # ours alone: 2 tags on the objects
    monkeypatch.setattr(program._Ctx, "__init__", leaky)
    with pytest.raises(RuleViolation, match="s3-object-tags"):
        run_program(spec)


def test_govcloud_program_uses_the_govcloud_partition(run_program: Any) -> None:
    """In us-gov-west-1 the managed policy ARNs are arn:aws-us-gov:... (old code: hard-coded arn:aws, which
    the strict mocks reject as AWS would)."""
    rec = run_program(FleetSpec(name="gov", region="us-gov-west-1"), region="us-gov-west-1")
    arns = [i["policyArn"] for _, i in rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert arns and all(a.startswith("arn:aws-us-gov:iam::aws:policy/") for a in arns)


def test_user_data_is_base64_and_at_most_16_kb_raw() -> None:
    """Launch-template user data: base64 of at most 16 KB raw (instancedata-add-user-data.html)."""
    import base64

    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    ok = base64.b64encode(b"#!/bin/bash\n" + b"x" * 16000).decode()
    assert _v(lt, {"userData": ok}) == []
    assert "user-data-size" in _v(lt, {"userData": base64.b64encode(b"x" * 16385).decode()})[0]
    assert _v(lt, {"userData": "#!/bin/bash not base64"})


def test_our_user_data_leaves_room(run_program: Any) -> None:
    """The bootstrap with a warm pool hook, a model and a wheelhouse stays well under 16 KB."""
    import base64

    spec = FleetSpec(name="big", capacity={"warm_pool": {"min_size": 1}})
    raw = base64.b64decode(run_program(spec).one("aws:ec2/launchTemplate:LaunchTemplate")["userData"])
    assert len(raw) < 8 * 1024


def test_lifecycle_hook_heartbeat_range() -> None:
    """lifecycle-heartbeat: PutLifecycleHook takes 30-7200 s, standalone or inline in the group."""
    hook = "aws:autoscaling/lifecycleHook:LifecycleHook"
    assert _v(hook, {"heartbeatTimeout": 600.0}) == []
    assert _v(hook, {"heartbeatTimeout": 7201.0}) and _v(hook, {"heartbeatTimeout": 29.0})
    group = "aws:autoscaling/group:Group"
    assert _v(group, {"initialLifecycleHooks": [{"heartbeatTimeout": 9000.0}]})
    assert _v(group, {"initialLifecycleHooks": [{"heartbeatTimeout": 900.0}]}) == []


def test_hibernation_needs_an_encrypted_root() -> None:
    """hibernation-root: a template enabling hibernation must encrypt its root volume."""
    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    hib = {"hibernationOptions": {"configured": True}}
    assert _v(lt, {**hib, "blockDeviceMappings": [{"ebs": {"encrypted": "true"}}]}) == []
    assert _v(lt, {**hib, "blockDeviceMappings": [{"ebs": {"encrypted": "false"}}]})
    assert _v(lt, {"blockDeviceMappings": [{"ebs": {"encrypted": "false"}}]}) == []  # no hibernation, no rule
