"""The Pulumi program under mocks (preview=False): every AWS rule of DESIGN §4, for several specs."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from _awsaccount import RESOLVED, SUBNET_AZS

from mlops_lb import (
    CapacitySpec,
    FleetSpec,
    HealthCheckSpec,
    InstanceSpec,
    NetworkSpec,
    ScalingPolicySpec,
    TargetGroupSpec,
)
from mlops_lb.errors import SpecError

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"

SPECS = {
    "default": FleetSpec(name="demo"),
    "rps40": FleetSpec(
        name="rps40",
        scaling=ScalingPolicySpec(target_rps_per_target=40, warmup_s=120),
        capacity=CapacitySpec(min=2, desired=3, max=8),
        health_check=HealthCheckSpec(interval_s=10, timeout_s=3, healthy_threshold=2, grace_period_s=240),
    ),
    "https": FleetSpec(
        name="secure-fleet",
        network=NetworkSpec(
            certificate_arn=CERT, client_cidrs=("203.0.113.0/24",), internal=True, idle_timeout_s=120
        ),
        target_group=TargetGroupSpec(algorithm="least_outstanding_requests", port=9000),
        instance=InstanceSpec(ssh_cidrs=("198.51.100.7/32",), root_volume_gb=40),
        scaling=ScalingPolicySpec(target_rps_per_target=2.5, scale_in_enabled=False, cpu_target_percent=60),
    ),
    "weighted": FleetSpec(
        name="wr",
        target_group=TargetGroupSpec(algorithm="weighted_random", slow_start_s=60, deregistration_delay_s=30),
        instance=InstanceSpec(ami="ami-0fedcba9876543210"),
        tags={"team": "ml"},
    ),
}

LB = "aws:lb/loadBalancer:LoadBalancer"
TG = "aws:lb/targetGroup:TargetGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
POLICY = "aws:autoscaling/policy:Policy"
LISTENER = "aws:lb/listener:Listener"


def _rec(run_program: Any, key: str, cache: dict[str, Any] = {}) -> Any:  # noqa: B006 - module-level memo
    if key not in cache:
        cache[key] = run_program(SPECS[key])
    return cache[key]


def _policy(rec: Any, name: str) -> dict[str, Any]:
    return rec.one(POLICY, name)["targetTrackingConfiguration"]


def _user_data(rec: Any) -> str:
    return base64.b64decode(rec.one(LT)["userData"]).decode()


class TestTargetTracking:
    @pytest.mark.parametrize(("key", "value"), [("default", 3000.0), ("rps40", 2400.0), ("https", 150.0)])
    def test_target_value_is_requests_per_target_per_minute(
        self, run_program: Any, key: str, value: float
    ) -> None:
        """ALBRequestCountPerTarget's target value is the spec's per-second rate x 60 (40 rps -> 2400)."""
        rec = _rec(run_program, key)
        ttc = _policy(rec, f"{SPECS[key].name}-requests")
        assert ttc["predefinedMetricSpecification"]["predefinedMetricType"] == "ALBRequestCountPerTarget"
        assert ttc["targetValue"] == pytest.approx(value)

    @pytest.mark.parametrize("key", list(SPECS))
    def test_resource_label_is_alb_suffix_slash_target_group_suffix(self, run_program: Any, key: str) -> None:
        """The resource label is app/<name>/<id>/targetgroup/<name>/<id>, made from the two ARN suffixes."""
        rec = _rec(run_program, key)
        label = _policy(rec, f"{SPECS[key].name}-requests")["predefinedMetricSpecification"]["resourceLabel"]
        assert re.fullmatch(r"app/[\w-]+/[0-9a-f]+/targetgroup/[\w-]+/[0-9a-f]+", label), label
        assert label == rec.outputs["resource_label"]
        assert label == f"{rec.outputs['alb_arn_suffix']}/{rec.outputs['target_group_arn_suffix']}"

    def test_warmup_and_scale_in_follow_the_spec(self, run_program: Any) -> None:
        """Policy warm-up equals spec.scaling.warmup_s; disable_scale_in is the negation of scale_in_enabled."""
        rec = _rec(run_program, "rps40")
        assert rec.one(POLICY, "rps40-requests")["estimatedInstanceWarmup"] == 120
        assert _policy(rec, "rps40-requests")["disableScaleIn"] is False
        assert _policy(_rec(run_program, "https"), "secure-fleet-requests")["disableScaleIn"] is True

    def test_cpu_policy_only_when_asked(self, run_program: Any) -> None:
        """A second target-tracking policy on ASGAverageCPUUtilization exists only with cpu_target_percent."""
        assert len(_rec(run_program, "default").of_type(POLICY)) == 1
        cpu = _policy(_rec(run_program, "https"), "secure-fleet-cpu")
        assert cpu["predefinedMetricSpecification"]["predefinedMetricType"] == "ASGAverageCPUUtilization"
        assert cpu["targetValue"] == 60.0

    def test_stack_config_overrides_the_spec(self, run_program: Any) -> None:
        """minSize/maxSize/targetRpsPerTarget in stack config win over the spec (what scale() sets)."""
        rec = run_program(
            SPECS["default"],
            config={"mlops-lb:minSize": "2", "mlops-lb:maxSize": "9", "mlops-lb:targetRpsPerTarget": "40"},
        )
        asg = rec.one(ASG)
        assert (asg["minSize"], asg["maxSize"], asg["desiredCapacity"]) == (2, 9, 2)
        assert _policy(rec, "demo-requests")["targetValue"] == pytest.approx(2400.0)


class TestLaunchTemplateAndGroup:
    @pytest.mark.parametrize("key", list(SPECS))
    def test_imdsv2_required_and_root_volume_encrypted(self, run_program: Any, key: str) -> None:
        """Instances require IMDSv2 tokens and boot from an encrypted gp3 root volume of the spec's size."""
        lt = _rec(run_program, key).one(LT)
        assert lt["metadataOptions"]["httpTokens"] == "required"
        assert lt["metadataOptions"]["httpPutResponseHopLimit"] in (1, 2)
        (bdm,) = lt["blockDeviceMappings"]
        assert bdm["ebs"]["encrypted"] == "true"
        assert bdm["ebs"]["volumeType"] == "gp3"
        assert bdm["ebs"]["volumeSize"] == SPECS[key].instance.root_volume_gb

    @pytest.mark.parametrize("key", list(SPECS))
    def test_no_lookups_inside_the_program(self, run_program: Any, key: str) -> None:
        """The program declares from the preflight's ids: no get_vpc/get_subnets/get_parameter call at all."""
        assert _rec(run_program, key).calls == []

    def test_ami_from_the_preflight_unless_pinned(self, run_program: Any) -> None:
        """The AMI is the preflight's (pinned in stack state by AwsFleet); a spec's instance.ami wins."""
        assert _rec(run_program, "default").one(LT)["imageId"] == RESOLVED["ami_id"]
        assert _rec(run_program, "weighted").one(LT)["imageId"] == "ami-0fedcba9876543210"

    @pytest.mark.parametrize("key", list(SPECS))
    def test_group_uses_elb_health_checks_and_one_minute_metrics(self, run_program: Any, key: str) -> None:
        """The ASG replaces ALB-unhealthy instances (ELB checks, spec grace) and publishes 1Minute group metrics."""
        spec = SPECS[key]
        asg = _rec(run_program, key).one(ASG)
        assert asg["healthCheckType"] == "ELB"
        assert asg["healthCheckGracePeriod"] == spec.health_check.grace_period_s
        assert asg["metricsGranularity"] == "1Minute"
        for m in (
            "GroupDesiredCapacity",
            "GroupInServiceInstances",
            "GroupPendingInstances",
            "GroupTerminatingInstances",
        ):
            assert m in asg["enabledMetrics"]
        assert asg["defaultInstanceWarmup"] == spec.scaling.warmup_s
        assert (asg["minSize"], asg["desiredCapacity"], asg["maxSize"]) == (
            spec.capacity.min,
            spec.capacity.desired,
            spec.capacity.max,
        )

    @pytest.mark.parametrize("key", list(SPECS))
    def test_desired_capacity_is_ignored_after_creation(self, run_program: Any, key: str) -> None:
        """Pulumi ignores desiredCapacity drift: target tracking and scale(desired=) own it (and the standalone
        LifecycleHook owns the launching hook after creation)."""
        rec = _rec(run_program, key)
        assert rec.ignore_changes[f"{SPECS[key].name}-asg"] == ["desiredCapacity", "initialLifecycleHooks"]

    def test_group_uses_the_latest_template_version_with_rolling_refresh(self, run_program: Any) -> None:
        """The group follows the template's latest version; a rolling instance refresh replaces old instances."""
        asg = _rec(run_program, "default").one(ASG)
        assert asg["launchTemplate"]["version"] == "1"  # the mock's latestVersion, as a string
        assert asg["launchTemplate"]["id"].startswith("lt-")
        assert asg["instanceRefresh"]["strategy"] == "Rolling"
        assert asg["targetGroupArns"] == [_rec(run_program, "default").outputs["target_group_arn"]]
        assert asg["vpcZoneIdentifiers"] == RESOLVED["instance_subnet_ids"]

    def test_instance_refresh_launches_before_it_terminates(self, run_program: Any) -> None:
        """Refresh preferences keep capacity: min healthy 100 %, max healthy above 100 % (AWS default 90/100
        lets a one-instance fleet go dark; API_InstanceMaintenancePolicy). Old code: min 50, no max."""
        prefs = _rec(run_program, "default").one(ASG)["instanceRefresh"]["preferences"]
        assert prefs["minHealthyPercentage"] == 100 and 100 < prefs["maxHealthyPercentage"] <= 200

    @pytest.mark.parametrize("key", list(SPECS))
    def test_no_launch_configuration_anywhere(self, run_program: Any, key: str) -> None:
        """No LaunchConfiguration resource is registered (new accounts cannot create them)."""
        rec = _rec(run_program, key)
        assert not [t for t in rec.types if "launchConfiguration" in t or "LaunchConfiguration" in t]
        assert "launchConfiguration" not in rec.one(ASG)

    def test_user_data_installs_a_python311_venv_and_a_systemd_unit(self, run_program: Any) -> None:
        """User data installs python3.11 side by side, a venv in /opt/mlops_lb and a systemd unit running serve."""
        ud = _user_data(_rec(run_program, "https"))
        assert "dnf install -y python3.11 python3.11-pip" in ud
        assert "python3.11 -m venv /opt/mlops_lb" in ud
        assert "/etc/systemd/system/mlops-lb.service" in ud
        assert re.search(
            r"ExecStart=/opt/mlops_lb/bin/mlops-lb serve --host 0\.0\.0\.0 --port 9000 --model demo "
            r"--target-id \$\{TARGET_ID\}",
            ud,
        )
        assert "systemctl enable --now mlops-lb.service" in ud
        assert "X-aws-ec2-metadata-token" in ud  # the instance id through IMDSv2
        assert "aws s3 cp" in ud and "mlops_lb-0.1.0-py3-none-any.whl" in ud
        assert "/usr/bin/python3" not in ud and "alternatives" not in ud

    def test_tags_carry_the_stack_name_everywhere(self, run_program: Any) -> None:
        """Every taggable resource carries mlops-lb:stack=<stack>; the ASG propagates it (and spec tags) at launch."""
        rec = _rec(run_program, "weighted")
        for typ, name, inputs in rec.resources:
            if typ == "aws:s3/bucketObjectv2:BucketObjectv2":  # S3: at most 10 tags per object, only ours
                assert inputs["tags"] == {"mlops-lb:stack": "teststack", "mlops-lb:fleet": "wr"}
            elif "tags" in inputs and typ != ASG:
                assert inputs["tags"]["mlops-lb:stack"] == "teststack", (typ, name)
                assert inputs["tags"]["team"] == "ml"
        asg_tags = {t["key"]: t for t in rec.one(ASG)["tags"]}
        assert asg_tags["mlops-lb:stack"]["value"] == "teststack"
        assert all(t["propagateAtLaunch"] for t in asg_tags.values())
        assert asg_tags["team"]["value"] == "ml"


class TestNetworkAndSecurity:
    @pytest.mark.parametrize("key", list(SPECS))
    def test_instances_accept_the_app_port_only_from_the_alb(self, run_program: Any, key: str) -> None:
        """Instance ingress on the app port names the ALB's security group and no CIDR; SSH only with ssh_cidrs."""
        spec = SPECS[key]
        rec = _rec(run_program, key)
        alb_sg_id = [i for n, i in rec.of_type(SG) if n.endswith("-alb")]
        inst = rec.one(SG, f"{spec.name}-instances")
        app = [r for r in inst["ingress"] if r["fromPort"] == spec.target_group.port]
        assert len(app) == 1 and app[0]["toPort"] == spec.target_group.port
        assert not app[0].get("cidrBlocks") and len(app[0]["securityGroups"]) == 1
        assert app[0]["securityGroups"][0].startswith("sg-") and alb_sg_id
        for rule in inst["ingress"]:
            assert "0.0.0.0/0" not in (rule.get("cidrBlocks") or [])
        ssh = [r for r in inst["ingress"] if r["fromPort"] == 22]
        if spec.instance.ssh_cidrs:
            assert ssh and ssh[0]["cidrBlocks"] == list(spec.instance.ssh_cidrs)
        else:
            assert not ssh and len(inst["ingress"]) == 1

    def test_alb_listens_on_80_and_443_only_with_a_certificate(self, run_program: Any) -> None:
        """The ALB SG opens 80 from client CIDRs, plus 443 when a certificate ARN is given."""
        plain = _rec(run_program, "default").one(SG, "demo-alb")
        assert sorted(r["fromPort"] for r in plain["ingress"]) == [80]
        assert plain["ingress"][0]["cidrBlocks"] == ["0.0.0.0/0"]
        tls = _rec(run_program, "https").one(SG, "secure-fleet-alb")
        assert sorted(r["fromPort"] for r in tls["ingress"]) == [80, 443]
        assert all(r["cidrBlocks"] == ["203.0.113.0/24"] for r in tls["ingress"])

    def test_ipv6_sources_go_to_ipv6_cidr_blocks(self, run_program: Any) -> None:
        """IPv6 client and SSH sources are ipv6CidrBlocks: EC2 refuses an IPv6 block in cidrBlocks (CidrIp)."""
        spec = FleetSpec(
            name="v6",
            network=NetworkSpec(client_cidrs=("203.0.113.0/24", "2001:db8::/32")),
            instance=InstanceSpec(ssh_cidrs=("2001:db8:1::/48",)),
        )
        rec = run_program(spec)
        (alb_rule,) = rec.one(SG, "v6-alb")["ingress"]
        assert alb_rule["cidrBlocks"] == ["203.0.113.0/24"]
        assert alb_rule["ipv6CidrBlocks"] == ["2001:db8::/32"]
        ssh = [r for r in rec.one(SG, "v6-instances")["ingress"] if r["fromPort"] == 22]
        assert len(ssh) == 1 and not ssh[0].get("cidrBlocks")
        assert ssh[0]["ipv6CidrBlocks"] == ["2001:db8:1::/48"]

    def test_https_forwards_and_http_redirects_with_a_certificate(self, run_program: Any) -> None:
        """With a certificate: an HTTPS listener forwards, the HTTP listener redirects to 443; the URL is https."""
        rec = _rec(run_program, "https")
        https = rec.one(LISTENER, "secure-fleet-https")
        assert https["protocol"] == "HTTPS" and https["port"] == 443 and https["certificateArn"] == CERT
        assert https["defaultActions"][0]["type"] == "forward"
        http = rec.one(LISTENER, "secure-fleet-http")
        assert http["defaultActions"][0]["type"] == "redirect"
        assert http["defaultActions"][0]["redirect"] == {
            "port": "443",
            "protocol": "HTTPS",
            "statusCode": "HTTP_301",
        }
        assert rec.outputs["url"].startswith("https://")

    def test_plain_http_listener_forwards(self, run_program: Any) -> None:
        """Without a certificate, one HTTP:80 listener forwards to the target group; the URL is http."""
        rec = _rec(run_program, "default")
        (listener,) = [i for _, i in rec.of_type(LISTENER)]
        assert listener["port"] == 80 and listener["defaultActions"][0]["type"] == "forward"
        assert listener["defaultActions"][0]["targetGroupArn"] == rec.outputs["target_group_arn"]
        assert rec.outputs["url"].startswith("http://") and rec.outputs["url"].endswith(".elb.amazonaws.com")

    def test_alb_settings_follow_the_spec(self, run_program: Any) -> None:
        """internal and idle timeout come from spec.network; the default VPC subnets are used when none are named."""
        alb = _rec(run_program, "https").one(LB)
        assert (
            alb["internal"] is True and alb["idleTimeout"] == 120 and alb["loadBalancerType"] == "application"
        )
        assert alb["subnets"] == RESOLVED["alb_subnet_ids"]

    def test_resolved_network_is_used_as_given(self, run_program: Any) -> None:
        """The ALB takes the preflight's one-subnet-per-AZ list, the group its instance subnets, all in its VPC."""
        ids = sorted(SUBNET_AZS)
        resolved = {
            **RESOLVED,
            "vpc_id": "vpc-0abc1234",
            "alb_subnet_ids": ids[:2],
            "instance_subnet_ids": ids[1:3],
        }
        rec = run_program(FleetSpec(name="own-vpc"), resolved=resolved)
        assert not rec.calls
        assert rec.one(LB)["subnets"] == ids[:2] and rec.one(ASG)["vpcZoneIdentifiers"] == ids[1:3]
        assert rec.one(TG)["vpcId"] == "vpc-0abc1234"


class TestTargetGroup:
    @pytest.mark.parametrize(
        ("key", "algo", "mitigation"),
        [
            ("default", "round_robin", None),
            ("https", "least_outstanding_requests", None),
            ("weighted", "weighted_random", "off"),
        ],
    )
    def test_algorithm_mapping(self, run_program: Any, key: str, algo: str, mitigation: str | None) -> None:
        """The spec's algorithm names are AWS's; anomaly mitigation is set only for weighted_random."""
        tg = _rec(run_program, key).one(TG)
        assert tg["loadBalancingAlgorithmType"] == algo
        assert tg.get("loadBalancingAnomalyMitigation") == mitigation

    def test_weighted_random_without_slow_start_turns_on_anomaly_mitigation(self, run_program: Any) -> None:
        """weighted_random without slow start enables automatic target weights (anomaly mitigation on)."""
        rec = run_program(FleetSpec(name="atw", target_group=TargetGroupSpec(algorithm="weighted_random")))
        assert rec.one(TG)["loadBalancingAnomalyMitigation"] == "on"

    def test_health_check_and_timers_follow_the_spec(self, run_program: Any) -> None:
        """Health check path/interval/timeout/thresholds/matcher, deregistration delay and slow start come from the spec."""
        tg = _rec(run_program, "rps40").one(TG)
        hc = tg["healthCheck"]
        assert (
            hc["path"],
            hc["interval"],
            hc["timeout"],
            hc["healthyThreshold"],
            hc["unhealthyThreshold"],
            hc["matcher"],
        ) == ("/health", 10, 3, 2, 2, "200")
        assert tg["protocol"] == "HTTP" and tg["targetType"] == "instance" and tg["port"] == 8080
        wr = _rec(run_program, "weighted").one(TG)
        assert (wr["deregistrationDelay"], wr["slowStart"]) == (30, 60)


class TestAssetsAndOutputs:
    def test_bucket_is_private_and_encrypted_and_holds_the_wheel(self, run_program: Any) -> None:
        """The assets bucket blocks public access, encrypts by default and holds the wheel under wheels/."""
        rec = _rec(run_program, "default")
        pab = rec.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(
            pab[k]
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        sse = rec.one(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        (wheel,) = [i for _, i in rec.of_type("aws:s3/bucketObjectv2:BucketObjectv2")]
        assert re.fullmatch(r"wheels/[0-9a-f]{16}/mlops_lb-0\.1\.0-py3-none-any\.whl", wheel["key"])

    def test_instance_role_reads_only_its_bucket(self, run_program: Any) -> None:
        """The instance role gets the SSM policy and read access to the assets bucket only: no
        CloudWatchAgentServerPolicy (PutMetricData on "*" with no agent installed; it voided the namespace
        condition of the concurrency agent's own statement)."""
        import json

        rec = _rec(run_program, "default")
        arns = sorted(
            i["policyArn"] for _, i in rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        )
        assert arns == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
        doc = json.loads(rec.one("aws:iam/rolePolicy:RolePolicy")["policy"])
        resources = [r for s in doc["Statement"] for r in s["Resource"]]
        bucket_arn = f"arn:aws:s3:::{rec.outputs['bucket']}"
        assert sorted(resources) == sorted([bucket_arn, f"{bucket_arn}/*"])
        assert all(
            a.startswith("s3:Get") or a == "s3:ListBucket" for s in doc["Statement"] for a in s["Action"]
        )

    def test_user_model_is_uploaded_and_served(self, run_program: Any, tmp_path: Any) -> None:
        """A local model file becomes a bucket object and the server's --model argument."""
        model = tmp_path / "churn.joblib"
        model.write_bytes(b"model")
        from mlops_lb import ModelSpec

        rec = run_program(FleetSpec(name="m", model=ModelSpec(source=str(model), allow_pickle=True)))
        keys = sorted(i["key"] for _, i in rec.of_type("aws:s3/bucketObjectv2:BucketObjectv2"))
        assert [k.split("/")[0] + "/" + k.split("/")[-1] for k in keys] == [
            "model/churn.joblib",
            "wheels/mlops_lb-0.1.0-py3-none-any.whl",
        ]
        assert (
            keys[0] == f"model/{hashlib.sha256(b'model').hexdigest()[:16]}/churn.joblib"
        )  # content-addressed
        assert "--model /opt/mlops_lb/model/churn.joblib" in _user_data(rec)

    def test_outputs_name_everything_the_readers_need(self, run_program: Any) -> None:
        """Outputs carry url, ARNs and suffixes, the ASG name, region and bucket."""
        out = _rec(run_program, "default").outputs
        for key in (
            "url",
            "alb_arn",
            "alb_arn_suffix",
            "target_group_arn",
            "target_group_arn_suffix",
            "asg_name",
            "region",
            "bucket",
        ):
            assert out[key], key
        assert out["alb_arn"].endswith(out["alb_arn_suffix"]) and out["target_group_arn"].endswith(
            out["target_group_arn_suffix"]
        )


class TestProgramFunction:
    def test_missing_model_file_fails_before_any_cloud_call(self, tmp_path: Any) -> None:
        """A model path that does not exist is a SpecError when the program is made, not mid-deployment."""
        from mlops_lb import ModelSpec
        from mlops_lb.aws import fleet_program

        with pytest.raises(SpecError) as info:
            fleet_program(
                FleetSpec(name="m", model=ModelSpec(source=str(tmp_path / "nope.joblib"), allow_pickle=True))
            )
        assert info.value.field == "model.source"

    def test_fleet_program_is_a_no_argument_function(self, fake_wheel: Any) -> None:
        """fleet_program(spec) returns the inline program: a callable taking no arguments."""
        import inspect

        from mlops_lb.aws import fleet_program

        program = fleet_program(FleetSpec(name="demo"), wheel=fake_wheel)
        assert callable(program) and not inspect.signature(program).parameters


def test_instances_install_exactly_the_serve_extra_and_the_wheel_without_its_dependencies() -> None:
    """User data installs pyproject's `serve` extra and the wheel with --no-deps (no pulumi/pandas on instances)."""
    from pathlib import Path

    import tomllib

    from mlops_lb.aws.userdata import SERVE_REQUIREMENTS, render_user_data

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert tuple(pyproject["project"]["optional-dependencies"]["serve"]) == SERVE_REQUIREMENTS
    script = render_user_data(
        bucket="b", region="us-east-1", wheel_key="wheels/mlops_lb-0.1.0-py3-none-any.whl", port=8080
    )
    assert "--no-index --no-deps /opt/mlops_lb/dist/mlops_lb-0.1.0-py3-none-any.whl" in script
    assert "pulumi" not in script.split("ExecStart")[0]
    with_house = render_user_data(
        bucket="b",
        region="us-east-1",
        wheel_key="wheels/x/mlops_lb-0.1.0-py3-none-any.whl",
        port=8080,
        wheelhouse_prefix="wheelhouse/abc",
    )
    assert (
        "--no-index --find-links /opt/mlops_lb/wheelhouse -r /opt/mlops_lb/wheelhouse/requirements.txt"
        in with_house
    )


class TestComponents:
    @pytest.mark.parametrize("key", ["default", "https"])
    def test_every_resource_sits_in_one_of_five_components_with_a_root_alias(
        self, run_program: Any, key: str
    ) -> None:
        """network, load-balancer, assets, instances, scaling; each child keeps its name and has an alias to the
        stack root, so stacks launched before the split keep their URNs (no replacement)."""
        rec = run_program(SPECS[key])
        kinds = {t for t, _, _ in rec.resources if t.startswith("mlops-lb:fleet:")}
        assert kinds == {
            f"mlops-lb:fleet:{k}" for k in ("network", "load-balancer", "assets", "instances", "scaling")
        }
        for typ, name, _ in rec.resources:
            if typ.startswith("mlops-lb:fleet:"):
                continue
            parent = rec.parents[(typ, name)]
            assert "mlops-lb:fleet:" in parent, (typ, name, parent)
            assert any("noParent: true" in a for a in rec.aliases[(typ, name)]), (typ, name)
        by_part = {
            n: rec.parents[(t, n)].split("::")[-2].split("$")[-1] for t, n, _ in rec.resources if "aws:" in t
        }
        assert by_part[f"{SPECS[key].name}-alb"] == "mlops-lb:fleet:network"
        assert by_part[f"{SPECS[key].name}-asg"] == "mlops-lb:fleet:instances"
        assert by_part[f"{SPECS[key].name}-requests"] == "mlops-lb:fleet:scaling"
