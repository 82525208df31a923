"""Routing on AWS: ALB application-cookie stickiness and the router tier, under the strict mocks and as pure rules.

Each rule is the documented one, from the rules table (mlops_lb/_aws_rules.py), and each is tested in both
directions: what AWS accepts passes, what it refuses is refused with the field and the fix.

* app-cookie-stickiness (API_TargetGroupAttribute, read 2026-12-07): cookie names starting with AWSALB, AWSALBAPP
  or AWSALBTG are the load balancer's; stickiness.app_cookie.duration_seconds is 1-604800.
* target-not-in-use (API_TargetHealth): a target group no load balancer uses reports its targets unused
  (Target.NotInUse), so with a router tier the model group is in no target group and every target group an Auto
  Scaling group registers into is the one a listener forwards to.
* describe-no-resource-level (Service Authorization Reference, autoscaling and ec2): DescribeAutoScalingGroups and
  DescribeInstances take Resource "*" only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from mlops_lb import FleetSpec
from mlops_lb._aws_rules import resource_violations
from mlops_lb.aws import _router
from mlops_lb.aws._router_agent import Action, discover, plan, sync_once
from mlops_lb.errors import SpecError
from mlops_lb.haproxy_runtime import ServerState

TG = "aws:lb/targetGroup:TargetGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
LISTENER = "aws:lb/listener:Listener"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"

LLM = {"kind": "llm-emulator"}
CONCURRENCY = {"metric": "concurrency_per_target", "target_concurrency_per_target": 4}
ROUTER = {"instance_type": "t3.small", "min": 1, "desired": 2, "max": 2}


def routed(routing: dict[str, Any], **fields: Any) -> FleetSpec:
    """A spec with a ``routing:`` section (helper routing's RoutingSpec, from YAML-shaped data)."""
    return FleetSpec.from_dict({"name": "llm", "routing": routing, **fields})


def router_spec(**fields: Any) -> FleetSpec:
    base: dict[str, Any] = {"server": LLM, "scaling": CONCURRENCY}
    routing = {"policy": "consistent_hash", "router": ROUTER, **fields.pop("routing", {})}
    return routed(routing, **{**base, **fields})


class TestStickinessRules:
    """routing.policy sticky_cookie on AWS: the ALB's limits, before any cloud call."""

    @staticmethod
    def refused(routing: dict[str, Any]) -> SpecError:
        """The SpecError a spec with ``routing`` gets by the time spec.check(backend="aws") has run (the spec's own
        check may refuse it first: the rule holds for every backend that plays an ALB)."""
        with pytest.raises(SpecError) as exc:
            routed(routing).check(backend="aws")
        return exc.value

    @pytest.mark.parametrize("name", ["AWSALB", "AWSALBAPP-session", "AWSALBTG1", "AWSALBx"])
    def test_reserved_cookie_prefixes_are_refused(self, name: str) -> None:
        """A cookie name starting with AWSALB/AWSALBAPP/AWSALBTG is refused naming routing.cookie_name."""
        err = self.refused({"policy": "sticky_cookie", "cookie_name": name})
        assert err.field == "routing.cookie_name" and "AWSALB" in str(err)

    @pytest.mark.parametrize("name", ["mlops-session", "session", "MYAWSALB", "conv_AWSALB"])
    def test_other_cookie_names_pass(self, name: str) -> None:
        """Names that merely contain a reserved prefix are the application's (the rule is about the start)."""
        routed({"policy": "sticky_cookie", "cookie_name": name}).check(backend="aws")

    @pytest.mark.parametrize(("duration", "ok"), [(1, True), (604800, True), (0, False), (604801, False)])
    def test_duration_range(self, duration: int, ok: bool) -> None:
        """stickiness.app_cookie.duration_seconds is 1-604800 s."""
        routing = {"policy": "sticky_cookie", "cookie_duration_s": duration}
        if ok:
            routed(routing).check(backend="aws")
        else:
            assert self.refused(routing).field == "routing.cookie_duration_s"

    def test_aws_rule_itself_refuses_what_the_spec_let_through(self) -> None:
        """check_routing applies the rules table's rule even to a RoutingSpec built around the spec's checks."""
        spec = routed({"policy": "sticky_cookie"})
        object.__setattr__(spec.routing, "cookie_name", "AWSALBAPP-2")
        with pytest.raises(SpecError, match="reserved for the load balancer") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.cookie_name"
        object.__setattr__(spec.routing, "cookie_name", "ok")
        object.__setattr__(spec.routing, "cookie_duration_s", 604801)
        with pytest.raises(SpecError, match="1-604800") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.cookie_duration_s"

    def test_strict_mock_refuses_a_reserved_name_and_a_bad_duration(self) -> None:
        """The Pulumi mocks' rule, both directions (so the program test below can fail)."""
        ok = {"type": "app_cookie", "cookieName": "mlops-session", "cookieDuration": 3600, "enabled": True}
        assert resource_violations(TG, "tg", {"stickiness": ok}) == []
        bad_name = resource_violations(TG, "tg", {"stickiness": {**ok, "cookieName": "AWSALBAPP"}})
        bad_time = resource_violations(TG, "tg", {"stickiness": {**ok, "cookieDuration": 0}})
        assert bad_name and "app-cookie-stickiness" in bad_name[0]
        assert bad_time and "1-604800" in bad_time[0]


class TestRouterTierRules:
    """routing.router: refused where it cannot work, naming the fix; accepted where it can."""

    def test_router_tier_on_an_llm_server_with_concurrency_scaling_passes(self) -> None:
        router_spec().check(backend="aws")

    def test_consistent_hash_without_a_router_is_refused_on_aws(self) -> None:
        """An ALB cannot hash a header: the error names routing.router and the sticky_cookie alternative."""
        spec = routed({"policy": "consistent_hash"}, server=LLM, scaling=CONCURRENCY)
        with pytest.raises(SpecError, match="sticky_cookie") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.router"
        spec.check(backend="local")  # the local fleet's HAProxy hashes by itself

    def test_router_tier_on_a_non_llm_server_fails_before_launch(self) -> None:
        """Refused naming the fix, by the spec itself and (for a spec changed after validation) by the AWS rules."""
        with pytest.raises(SpecError, match="llm-emulator") as exc:
            routed({"policy": "consistent_hash", "router": ROUTER}, scaling=CONCURRENCY)
        assert exc.value.field == "routing.router"
        spec = router_spec()
        object.__setattr__(spec.server, "kind", "model")
        with pytest.raises(SpecError, match="llm-emulator") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.router"

    def test_router_tier_with_request_count_scaling_is_refused(self) -> None:
        """The models are in no target group, so ALBRequestCountPerTarget cannot see them."""
        spec = routed({"policy": "consistent_hash", "router": ROUTER}, server=LLM)
        with pytest.raises(SpecError, match="concurrency_per_target") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "scaling.metric"

    def test_router_without_consistent_hash_is_refused(self) -> None:
        spec = routed({"policy": "sticky_cookie", "router": ROUTER}, server=LLM, scaling=CONCURRENCY)
        with pytest.raises(SpecError, match="consistent_hash") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.router"

    def test_refuse_with_rollouts_and_spot(self) -> None:
        """The seam the rollout and spot helpers call: refuses on a router-tier fleet only."""
        for feature, words in (("rollouts", "fleet.rollout()"), ("spot", "capacity.spot")):
            with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
                _router.refuse_with(router_spec(), feature)
            _router.refuse_with(FleetSpec(name="plain"), feature)  # no tier: nothing to refuse
            _router.refuse_with(routed({"policy": "sticky_cookie"}), feature)

    def test_router_with_spot_capacity_is_refused_at_spec_check(self) -> None:
        """capacity.spot (helper spot's section) with a router tier: refused until designed."""
        spec = router_spec()
        object.__setattr__(
            spec.capacity, "spot", {"on_demand_base": 0}
        )  # the section's presence is the trigger
        with pytest.raises(SpecError, match=r"capacity\.spot") as exc:
            spec.check(backend="aws")
        assert exc.value.field == "routing.router"


def sg_id(name: str) -> str:
    """The id the mocks give security group ``name`` (tests/aws/conftest.py: sg- + hash of its physical name)."""
    phys = f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"
    return f"sg-{hashlib.sha256(phys.encode()).hexdigest()[:16]}"


def _statements(rec: Any, name: str) -> list[dict[str, Any]]:
    return list(json.loads(rec.one(ROLE_POLICY, name)["policy"])["Statement"])


class TestProgram:
    """The Pulumi program under the strict mocks (tests/aws/conftest.py)."""

    def test_sticky_cookie_sets_app_cookie_stickiness_and_adds_nothing(self, run_program: Any) -> None:
        rec = run_program(
            routed({"policy": "sticky_cookie", "cookie_name": "conv", "cookie_duration_s": 900})
        )
        st = rec.one(TG)["stickiness"]
        assert st == {"type": "app_cookie", "cookieName": "conv", "cookieDuration": 900, "enabled": True}
        assert len(rec.of_type(ASG)) == 1 and len(rec.of_type(LT)) == 1 and len(rec.of_type(SG)) == 2

    def test_default_policy_has_no_stickiness(self, run_program: Any) -> None:
        assert "stickiness" not in run_program(FleetSpec(name="demo")).one(TG)

    def test_router_tier_resources(self, run_program: Any) -> None:
        """Routers behind the ALB's target group; models in no target group; SGs chain ALB -> routers -> models."""
        rec = run_program(router_spec())
        tg_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/llm-"
        routers, models = rec.one(ASG, "llm-router-asg"), rec.one(ASG, "llm-asg")
        assert [str(a).startswith(tg_arn) for a in routers["targetGroupArns"]] == [True]
        assert routers["healthCheckType"] == "ELB"
        assert (routers["minSize"], routers["desiredCapacity"], routers["maxSize"]) == (1, 2, 2)
        assert not models.get("targetGroupArns") and models["healthCheckType"] == "EC2"
        # target-not-in-use: every target group a group registers into is one a listener forwards to
        forwarded = {a["targetGroupArn"] for _, lis in rec.of_type(LISTENER) for a in lis["defaultActions"]}
        registered = {arn for _, g in rec.of_type(ASG) for arn in g.get("targetGroupArns") or []}
        assert registered and registered <= forwarded
        sgs = {n: i for n, i in rec.of_type(SG)}
        assert sgs["llm-routers"]["ingress"][0]["securityGroups"] == [sg_id("llm-alb")]
        model_sources = [r.get("securityGroups") for r in sgs["llm-instances"]["ingress"]]
        assert model_sources == [[sg_id("llm-routers")]]  # nothing from the ALB directly
        lt = rec.one(LT, "llm-router-lt")
        assert lt["instanceType"] == "t3.small" and lt["metadataOptions"]["httpTokens"] == "required"
        script = base64.b64decode(lt["userData"]).decode()
        assert "balance hdr(X-Prefix-Key)" in script and "hash-balance-factor 125" in script
        assert f"--group {rec.outputs['asg_name']}" in script  # the model group's physical name
        assert rec.outputs["router_asg_name"].startswith("llm-router-asg-")

    def test_router_role_is_scoped(self, run_program: Any) -> None:
        """Discovery on "*" (no resource-level permissions exist), the wheel object only, nothing else."""
        rec = run_program(router_spec())
        stmts = _statements(rec, "llm-router-discover")
        assert stmts[1] == {
            "Effect": "Allow",
            "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"],
            "Resource": ["*"],
        }
        wheel = [r for s in stmts if s["Action"] == ["s3:GetObject"] for r in s["Resource"]]
        assert (
            len(wheel) == 1 and wheel[0].endswith(".whl") and wheel[0].startswith("arn:aws:s3:::llm-assets-")
        )

    def test_strict_mock_refuses_describe_on_a_resource_arn(self) -> None:
        """The mocks' describe-no-resource-level rule, both directions."""
        doc = {"Statement": [{"Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": ["*"]}]}
        assert resource_violations(ROLE_POLICY, "p", {"policy": json.dumps(doc)}) == []
        doc["Statement"][0]["Resource"] = ["arn:aws:ec2:us-east-1:123456789012:instance/*"]
        found = resource_violations(ROLE_POLICY, "p", {"policy": json.dumps(doc)})
        assert found and "describe-no-resource-level" in found[0]

    def test_program_refuses_a_router_on_a_model_server_before_any_resource(self, run_program: Any) -> None:
        spec = router_spec()
        object.__setattr__(spec.server, "kind", "model")
        with pytest.raises(SpecError, match=r"routing\.router"):
            run_program(spec)


def slot(sid: int, address: str = "192.0.2.1", admin: int = 5) -> ServerState:
    """A server-template slot as ``show servers state`` reports it (admin 5: the config's `disabled`)."""
    return ServerState("models", sid, f"m{sid}", address, 8080, 2 if not admin & 1 else 0, admin, 1, 0, 0)


class TestAgentPlan:
    """The router agent's decision: a pure function of HAProxy's slots and the group's instances."""

    def test_new_instances_take_the_lowest_free_slots(self) -> None:
        acts = plan([slot(1), slot(2), slot(3)], {"i-b": "10.0.1.6", "i-a": "10.0.1.5"})
        assert acts == [
            Action("m1", "addr", "10.0.1.5"),
            Action("m1", "enter"),  # ready but down: must pass `rise` checks before it gets a request
            Action("m2", "addr", "10.0.1.6"),
            Action("m2", "enter"),
        ]

    def test_steady_state_changes_nothing(self) -> None:
        assert plan([slot(1, "10.0.1.5", 4), slot(2)], {"i-a": "10.0.1.5"}) == []

    def test_departed_instance_is_drained_then_put_in_maintenance(self) -> None:
        assert plan([slot(1, "10.0.1.5", 4)], {}) == [Action("m1", "drain")]
        assert plan([slot(1, "10.0.1.5", 12)], {}) == [Action("m1", "maint")]

    def test_returning_address_reuses_its_old_slot_and_a_drained_one_serves_again(self) -> None:
        """The same slot keeps the same server id, so the hash ring puts the same keys there again."""
        assert plan([slot(1), slot(2, "10.0.1.5", 5)], {"i-a": "10.0.1.5"}) == [Action("m2", "enter")]
        assert plan([slot(1, "10.0.1.5", 12)], {"i-a": "10.0.1.5"}) == [Action("m1", "ready")]

    def test_more_instances_than_slots_wait(self) -> None:
        assert plan([slot(1, "10.0.1.5", 4)], {"i-a": "10.0.1.5", "i-b": "10.0.1.6"}) == []


def _cli(answers: dict[str, tuple[int, Any]]) -> Any:
    """A stand-in for the aws CLI: (service op) -> (exit code, JSON answer shaped as the API documents)."""
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        rc, body = answers[" ".join(argv[1:3])]
        return subprocess.CompletedProcess(
            list(argv), rc, json.dumps(body), "" if rc == 0 else "AccessDenied"
        )

    run.calls = calls  # type: ignore[attr-defined]
    return run


class TestAgentDiscovery:
    GROUP: ClassVar[dict[str, Any]] = {
        "AutoScalingGroups": [
            {
                "AutoScalingGroupName": "llm-asg-1",
                "Instances": [
                    {"InstanceId": "i-1", "LifecycleState": "InService"},
                    {"InstanceId": "i-2", "LifecycleState": "Pending"},
                    {"InstanceId": "i-3", "LifecycleState": "Terminating"},
                ],
            }
        ]
    }
    EC2: ClassVar[dict[str, Any]] = {
        "Reservations": [{"Instances": [{"InstanceId": "i-1", "PrivateIpAddress": "10.0.1.5"}]}]
    }

    def test_only_in_service_instances_with_their_private_address(self) -> None:
        run = _cli(
            {
                "autoscaling describe-auto-scaling-groups": (0, self.GROUP),
                "ec2 describe-instances": (0, self.EC2),
            }
        )
        assert discover("llm-asg-1", "us-east-1", run=run) == {"i-1": "10.0.1.5"}
        assert run.calls[1][3:5] == ["--instance-ids", "i-1"]

    def test_a_failed_call_changes_nothing(self) -> None:
        """An AWS error (throttling, a missing permission) must not empty the routers' backend."""

        class Api:
            def show_servers_state(self, backend: str) -> list[ServerState]:
                raise AssertionError("HAProxy must not be touched when discovery failed")

        run = _cli({"autoscaling describe-auto-scaling-groups": (254, {})})
        assert sync_once(Api(), "llm-asg-1", "us-east-1", port=8080, run=run) is None  # type: ignore[arg-type]
        run = _cli(
            {"autoscaling describe-auto-scaling-groups": (0, self.GROUP), "ec2 describe-instances": (254, {})}
        )
        assert discover("llm-asg-1", "us-east-1", run=run) is None


class TestPreflight:
    """ml.aws.preflight against moto: the router type gets its own zones and its own plain AL2023 AMI."""

    def test_graviton_models_with_x86_routers(self, moto_account: Any) -> None:
        """Models on t4g (arm64 AMI), routers on t3.small: the routers get the x86_64 AL2023 AMI and only the
        instance subnets whose zone offers t3.small (us-east-1e offers none: rule instance-type-offerings)."""
        import boto3

        from mlops_lb.aws import preflight
        from mlops_lb.aws._preflight import AL2023_PARAMETERS

        spec = router_spec(region="us-east-1", instance={"type": "t4g.small"})
        pf = preflight(spec)
        assert pf.ok, pf
        ssm = boto3.client("ssm", region_name="us-east-1")
        x86 = ssm.get_parameter(Name=AL2023_PARAMETERS["x86_64"])["Parameter"]["Value"]
        assert pf.resolved["architecture"] == "arm64" and pf.resolved["ami_id"] != x86
        assert pf.resolved["router_ami_id"] == x86
        subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in moto_account.describe_subnets()["Subnets"]}
        router_azs = sorted(subnets[s] for s in pf.resolved["router_subnet_ids"])
        assert router_azs and "us-east-1e" not in router_azs
        assert set(pf.resolved["router_subnet_ids"]) <= set(pf.resolved["instance_subnet_ids"])

    def test_no_router_checks_without_a_tier(self) -> None:
        """Without a tier the router checks return before any AWS call (no client is even needed)."""
        from mlops_lb.aws._preflight import Preflight, _router_checks

        pf = Preflight()
        _router_checks(pf, None, None, "us-east-1", FleetSpec(name="demo"))
        _router_checks(pf, None, None, "us-east-1", routed({"policy": "sticky_cookie"}))
        assert pf.rows == [] and pf.resolved == {}
