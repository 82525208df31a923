"""The Pulumi inline program that declares one fleet on AWS (pulumi-aws only, no awsx).

What it builds, and the AWS rules behind each choice (DESIGN §4):

* security groups: the ALB takes 80 (and 443 with a certificate) from ``network.client_cidrs``; instances take
  the app port **only from the ALB's security group**; SSH only when ``instance.ssh_cidrs`` lists sources;
* an ALB, a target group (health check, deregistration delay, slow start, algorithm) and listeners (HTTP
  forward; with a certificate HTTPS forward + HTTP->HTTPS redirect);
* a private, encrypted S3 bucket holding this package's wheel (and a user model), readable only by the
  instances' role (plus SSM and CloudWatch agent policies);
* a **LaunchTemplate** (accounts made since 2024-10-01 cannot create launch configurations): IMDSv2 required,
  encrypted gp3 root volume, user data from :mod:`mlops_lb.aws.userdata`;
* an ASG with **ELB health checks** and a grace period, ``1Minute`` group metrics, an instance refresh when the
  template changes, and ``ignore_changes`` on desired capacity (target tracking owns it);
* target tracking on **ALBRequestCountPerTarget**, a per-*minute* value: ``target_rps_per_target * 60``, with the
  resource label ``<alb arn suffix>/<target group arn suffix>``; optionally a CPU policy.

Stack config (``minSize``, ``maxSize``, ``targetRpsPerTarget``) overrides the spec, so ``AwsFleet.scale()``
changes those without a new spec.

Example::

    from pulumi import automation as auto
    stack = auto.create_or_select_stack(stack_name="demo", project_name="mlops-lb",
                                        program=fleet_program(FleetSpec(name="demo")))
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ProvisionError, SpecError
from ..spec import FleetSpec
from .userdata import render_user_data

__all__ = [
    "ENABLED_METRICS",
    "STACK_TAG",
    "algorithm_settings",
    "build_wheel",
    "declare_fleet",
    "fleet_program",
]

log = logging.getLogger(__name__)

STACK_TAG = "mlops-lb:stack"
ENABLED_METRICS = (
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
)
_SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
_CW_AGENT_POLICY = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def algorithm_settings(spec: FleetSpec) -> dict[str, str]:
    """Target-group routing arguments for the spec's algorithm.

    The spec's names are AWS's own (``round_robin``, ``least_outstanding_requests``, ``weighted_random``).
    Anomaly mitigation exists only for ``weighted_random``; it is turned on there unless slow start is set,
    as AWS does not combine the two.
    """
    algo: str = spec.target_group.algorithm
    out: dict[str, str] = {"load_balancing_algorithm_type": algo}
    if algo == "weighted_random":
        out["load_balancing_anomaly_mitigation"] = "off" if spec.target_group.slow_start_s else "on"
    return out


def _repo_root() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build this package's wheel from the source tree (``pip wheel --no-deps``) and return its path.

    Example::

        build_wheel()   # PosixPath('/tmp/mlops-lb-wheel-.../mlops_lb-0.1.0-py3-none-any.whl')
    """
    root = _repo_root()
    if root is None:
        raise ProvisionError(
            "cannot build the mlops_lb wheel: not running from a source tree; "
            "pass wheel=<path to mlops_lb-*.whl> or set MLOPS_LB_WHEEL"
        )
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="mlops-lb-wheel-"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(root),
    ]
    log.info("building wheel: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(out.glob("mlops_lb-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ProvisionError(
            "building the mlops_lb wheel failed", stderr=(proc.stderr or proc.stdout)[-2000:]
        )
    return wheels[-1]


def _model_file(spec: FleetSpec) -> Path | None:
    src = spec.model.source
    if src == "demo":
        return None
    if "://" in src:
        raise SpecError(
            "model.source",
            f"must be 'demo' or a local file on AWS; the stack uploads it to its own "
            f"bucket (got {src!r}; download it first)",
        )
    path = Path(src).expanduser()
    if not path.is_file():
        raise SpecError("model.source", f"file does not exist (got {src!r})")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fleet_program(spec: FleetSpec, *, wheel: str | os.PathLike[str] | None = None) -> Callable[[], None]:
    """The inline Pulumi program (a no-argument function) that declares the whole fleet for ``spec``.

    ``wheel`` is the mlops_lb wheel to install on instances; by default ``$MLOPS_LB_WHEEL`` or one built from
    the source tree when the program runs.

    Example::

        program = fleet_program(FleetSpec(name="demo"), wheel="dist/mlops_lb-0.1.0-py3-none-any.whl")
    """
    if not isinstance(spec, FleetSpec):
        raise SpecError("spec", f"must be a FleetSpec (got {type(spec).__name__})")
    model = _model_file(spec)  # fail on a bad model path before any cloud call
    wheel_arg = wheel if wheel is not None else os.environ.get("MLOPS_LB_WHEEL") or None

    def program() -> None:
        import pulumi

        for key, value in declare_fleet(
            spec, wheel=Path(wheel_arg) if wheel_arg else build_wheel(), model=model
        ).items():
            pulumi.export(key, value)

    program.__name__ = f"fleet_program_{spec.name.replace('-', '_')}"
    return program


def _cidr_args(cidrs: Iterable[str]) -> dict[str, list[str]]:
    """Security-group rule sources: IPv4 blocks in ``cidr_blocks``, IPv6 in ``ipv6_cidr_blocks``.

    EC2 takes an IPv6 block only as an Ipv6Range; in ``cidr_blocks`` (CidrIp) it refuses the rule.
    """
    out: dict[str, list[str]] = {}
    for c in cidrs:
        key = "ipv6_cidr_blocks" if ":" in c else "cidr_blocks"
        out.setdefault(key, []).append(c)
    return out


def _import_pulumi_aws() -> Any:
    import warnings

    # pulumi_aws loads submodules on first attribute access, and some (ec2) warn at import about resources
    # we never use; a test suite that turns warnings into errors would fail on the provider's own code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pulumi_aws as aws

        for sub, attr in (
            ("autoscaling", "Group"),
            ("ec2", "LaunchTemplate"),
            ("iam", "Role"),
            ("lb", "LoadBalancer"),
            ("s3", "Bucket"),
            ("ssm", "get_parameter"),
        ):
            getattr(getattr(aws, sub), attr)
    return aws


def declare_fleet(spec: FleetSpec, *, wheel: Path, model: Path | None = None) -> dict[str, Any]:
    """Declare every resource of the fleet in the current Pulumi program; returns the outputs (not exported).

    Example (inside a Pulumi program or a mocked test)::

        outputs = declare_fleet(FleetSpec(name="demo"), wheel=Path("dist/mlops_lb-0.1.0-py3-none-any.whl"))
        outputs["url"]      # Output[str]
    """
    import pulumi

    aws = _import_pulumi_aws()
    if not wheel.is_file():
        raise ProvisionError(f"wheel {str(wheel)!r} does not exist")
    stack = pulumi.get_stack()
    name = spec.name
    cfg = pulumi.Config()
    min_size = cfg.get_int("minSize")
    max_size = cfg.get_int("maxSize")
    rps = cfg.get_float("targetRpsPerTarget")
    min_size = spec.capacity.min if min_size is None else min_size
    max_size = spec.capacity.max if max_size is None else max_size
    target_rps = spec.scaling.target_rps_per_target if rps is None else rps
    desired = min(max(spec.capacity.desired, min_size), max_size)
    region = pulumi.Config("aws").get("region") or spec.region or os.environ.get("AWS_REGION") or "us-east-1"
    tags: dict[str, str] = {**spec.tags, STACK_TAG: stack, "mlops-lb:fleet": name}
    net = spec.network
    port = spec.target_group.port

    # ---------------------------------------------------------------- network
    if net.vpc_id:
        vpc_id: Any = net.vpc_id
        subnet_ids: Any = list(net.subnet_ids)
        if not subnet_ids:
            subnet_ids = aws.ec2.get_subnets(filters=[{"name": "vpc-id", "values": [net.vpc_id]}]).ids
    else:
        vpc = aws.ec2.get_vpc(default=True)
        vpc_id = vpc.id
        subnet_ids = aws.ec2.get_subnets(
            filters=[{"name": "vpc-id", "values": [vpc.id]}, {"name": "default-for-az", "values": ["true"]}]
        ).ids
    if not net.subnet_ids and len(subnet_ids) < 2:
        raise ProvisionError(
            f"the VPC {vpc_id} has {len(subnet_ids)} usable subnet(s); an ALB needs two in "
            "different zones: set network.vpc_id and network.subnet_ids"
        )

    egress_all = [
        aws.ec2.SecurityGroupEgressArgs(
            protocol="-1",
            from_port=0,
            to_port=0,
            cidr_blocks=["0.0.0.0/0"],
            ipv6_cidr_blocks=["::/0"],
            description="all outbound",
        )
    ]
    listen_ports = [80, 443] if net.certificate_arn else [80]
    alb_sg = aws.ec2.SecurityGroup(
        f"{name}-alb",
        vpc_id=vpc_id,
        description=f"mlops_lb {name}: load balancer",
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp",
                from_port=p,
                to_port=p,
                **_cidr_args(net.client_cidrs),
                description="clients",
            )
            for p in listen_ports
        ],
        egress=egress_all,
        tags={**tags, "Name": f"{name}-alb"},
    )
    instance_ingress = [
        aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=port,
            to_port=port,
            security_groups=[alb_sg.id],
            description="app port from the load balancer only",
        )
    ]
    if spec.instance.ssh_cidrs:
        instance_ingress.append(
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp",
                from_port=22,
                to_port=22,
                **_cidr_args(spec.instance.ssh_cidrs),
                description="ssh",
            )
        )
    inst_sg = aws.ec2.SecurityGroup(
        f"{name}-instances",
        vpc_id=vpc_id,
        description=f"mlops_lb {name}: instances",
        ingress=instance_ingress,
        egress=egress_all,
        tags={**tags, "Name": f"{name}-instances"},
    )

    # ---------------------------------------------------------------- load balancer
    alb = aws.lb.LoadBalancer(
        name,
        load_balancer_type="application",
        internal=net.internal,
        security_groups=[alb_sg.id],
        subnets=subnet_ids,
        idle_timeout=net.idle_timeout_s,
        drop_invalid_header_fields=True,
        tags=tags,
    )
    hc = spec.health_check
    tg = aws.lb.TargetGroup(
        name,
        port=port,
        protocol="HTTP",
        target_type="instance",
        vpc_id=vpc_id,
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            enabled=True,
            path=hc.path,
            port="traffic-port",
            protocol="HTTP",
            interval=hc.interval_s,
            timeout=hc.timeout_s,
            healthy_threshold=hc.healthy_threshold,
            unhealthy_threshold=hc.unhealthy_threshold,
            matcher=hc.matcher,
        ),
        deregistration_delay=spec.target_group.deregistration_delay_s,
        slow_start=spec.target_group.slow_start_s,
        tags=tags,
        **algorithm_settings(spec),
    )
    forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=tg.arn)]
    if net.certificate_arn:
        aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=_TLS_POLICY,
            certificate_arn=net.certificate_arn,
            default_actions=forward,
            tags=tags,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            tags=tags,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"
                    ),
                )
            ],
        )
        url = pulumi.Output.concat("https://", alb.dns_name)
    else:
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=forward,
            tags=tags,
        )
        url = pulumi.Output.concat("http://", alb.dns_name)

    # ---------------------------------------------------------------- assets bucket (private, encrypted)
    bucket = aws.s3.Bucket(f"{name}-assets", force_destroy=True, tags=tags)
    aws.s3.BucketPublicAccessBlock(
        f"{name}-assets",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-assets",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-assets",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                )
            )
        ],
    )
    wheel_key = f"wheels/{wheel.name}"
    aws.s3.BucketObjectv2(
        f"{name}-wheel",
        bucket=bucket.id,
        key=wheel_key,
        source=pulumi.FileAsset(str(wheel)),
        server_side_encryption="AES256",
        tags=tags,
    )
    model_key = None
    if model is not None:
        model_key = f"model/{model.name}"
        aws.s3.BucketObjectv2(
            f"{name}-model",
            bucket=bucket.id,
            key=model_key,
            source=pulumi.FileAsset(str(model)),
            server_side_encryption="AES256",
            tags=tags,
        )

    # ---------------------------------------------------------------- instance role: SSM, CW agent, read the bucket
    role = aws.iam.Role(
        f"{name}-instance",
        tags=tags,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    aws.iam.RolePolicyAttachment(f"{name}-ssm", role=role.name, policy_arn=_SSM_POLICY)
    aws.iam.RolePolicyAttachment(f"{name}-cwagent", role=role.name, policy_arn=_CW_AGENT_POLICY)
    aws.iam.RolePolicy(
        f"{name}-assets-read",
        role=role.id,
        policy=bucket.arn.apply(
            lambda arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{arn}/*"]},
                        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn]},
                    ],
                }
            )
        ),
    )
    profile = aws.iam.InstanceProfile(f"{name}-instance", role=role.name, tags=tags)

    # ---------------------------------------------------------------- launch template
    ami = spec.instance.ami or aws.ssm.get_parameter(name=spec.instance.ami_ssm_parameter).value
    wheel_sha = _sha256(wheel)
    user_data = bucket.bucket.apply(
        lambda b: base64.b64encode(
            render_user_data(
                bucket=b,
                region=region,
                wheel_key=wheel_key,
                model_key=model_key,
                port=port,
                wheel_sha256=wheel_sha,
            ).encode()
        ).decode()
    )
    lt = aws.ec2.LaunchTemplate(
        f"{name}-lt",
        image_id=ami,
        instance_type=spec.instance.type,
        iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
        vpc_security_group_ids=[inst_sg.id],
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
            instance_metadata_tags="disabled",
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",  # the root device of Amazon Linux 2023 AMIs
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=spec.instance.root_volume_gb,
                    volume_type="gp3",
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )
        ],
        # Detailed (1-minute) instance metrics only pay off when a CPU policy reads them.
        monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=spec.scaling.cpu_target_percent is not None),
        user_data=user_data,
        update_default_version=True,
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=t, tags={**tags, "Name": name})
            for t in ("instance", "volume")
        ],
        tags=tags,
    )

    # ---------------------------------------------------------------- auto scaling group
    asg = aws.autoscaling.Group(
        f"{name}-asg",
        min_size=min_size,
        max_size=max_size,
        desired_capacity=desired,
        vpc_zone_identifiers=subnet_ids,
        # The numeric latest version, not the literal "$Latest": a new template version then changes the group,
        # which is what starts the instance refresh below.
        launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
            id=lt.id, version=lt.latest_version.apply(str)
        ),
        target_group_arns=[tg.arn],
        health_check_type="ELB",
        health_check_grace_period=hc.grace_period_s,
        default_instance_warmup=spec.scaling.warmup_s,
        enabled_metrics=list(ENABLED_METRICS),
        metrics_granularity="1Minute",
        instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            triggers=["tag"],
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(min_healthy_percentage=50),
        ),
        wait_for_capacity_timeout="15m",
        tags=[
            aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
            for k, v in {**tags, "Name": name}.items()
        ],
        # Target tracking (and fleet.scale(desired=...)) own desired capacity after creation.
        opts=pulumi.ResourceOptions(ignore_changes=["desiredCapacity"]),
    )

    # ---------------------------------------------------------------- scaling policies
    resource_label = pulumi.Output.concat(alb.arn_suffix, "/", tg.arn_suffix)
    aws.autoscaling.Policy(
        f"{name}-requests",
        autoscaling_group_name=asg.name,
        policy_type="TargetTrackingScaling",
        estimated_instance_warmup=spec.scaling.warmup_s,
        target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
            predefined_metric_specification=aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ALBRequestCountPerTarget", resource_label=resource_label
            ),
            # ALBRequestCountPerTarget counts per target per *minute*; the spec stores per second.
            target_value=target_rps * 60.0,
            disable_scale_in=not spec.scaling.scale_in_enabled,
        ),
    )
    if spec.scaling.cpu_target_percent is not None:
        aws.autoscaling.Policy(
            f"{name}-cpu",
            autoscaling_group_name=asg.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=spec.scaling.warmup_s,
            target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
                predefined_metric_specification=aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ASGAverageCPUUtilization"
                ),
                target_value=spec.scaling.cpu_target_percent,
                disable_scale_in=not spec.scaling.scale_in_enabled,
            ),
        )

    return {
        "url": url,
        "alb_arn": alb.arn,
        "alb_arn_suffix": alb.arn_suffix,
        "alb_dns_name": alb.dns_name,
        "target_group_arn": tg.arn,
        "target_group_arn_suffix": tg.arn_suffix,
        "asg_name": asg.name,
        "region": region,
        "bucket": bucket.bucket,
        "resource_label": resource_label,
    }
