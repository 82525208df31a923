"""The Pulumi inline program that declares one fleet on AWS (pulumi-aws only, no awsx).

What it builds, and the AWS rules behind each choice (DESIGN §4; the limits live in ``mlops_lb/_aws_rules.py``):

* security groups: the ALB takes 80 (and 443 with a certificate) from ``network.client_cidrs``; instances take
  the app port **only from the ALB's security group**; SSH only when ``instance.ssh_cidrs`` lists sources;
* an ALB on exactly one subnet per AZ, a target group (GET health check, deregistration delay, slow start,
  algorithm) and listeners (HTTP forward; with a certificate HTTPS forward + HTTP->HTTPS redirect);
* a private, encrypted S3 bucket holding content-addressed assets (this package's wheel, the pinned wheelhouse,
  a user model), readable only by the instances' role; managed policies in the region's partition;
* a **LaunchTemplate** (accounts made since 2024-10-01 cannot create launch configurations): IMDSv2 required,
  encrypted gp3 root volume, user data from :mod:`mlops_lb.aws.userdata`, byte-identical for the same inputs;
* an ASG with **ELB health checks** and a grace period, ``1Minute`` group metrics, ``ignore_changes`` on desired
  capacity, and an instance refresh that keeps capacity (min healthy 100 %, max healthy 200 %: launch before
  terminate); optionally a warm pool with its ``EC2_INSTANCE_LAUNCHING`` lifecycle hook;
* target tracking on **ALBRequestCountPerTarget**, a per-*minute* value: ``target_rps_per_target * 60``.

Network, AMI and zones come from the preflight's ``resolved`` dict (explicit ids, no lookups in the program).
Stack config (``minSize``, ``maxSize``, ``targetRpsPerTarget``) overrides the spec, so ``AwsFleet.scale()``
changes those, and only the group and the policy, without a new spec.

Example::

    from pulumi import automation as auto
    stack = auto.create_or_select_stack(stack_name="demo", project_name="mlops-lb",
                                        program=fleet_program(FleetSpec(name="demo"), resolved=pf.resolved))
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._aws_rules import policy_arn
from ..errors import ProvisionError, SpecError
from ..spec import FleetSpec
from .assets import Wheelhouse, build_wheel, content_key
from .userdata import render_user_data

__all__ = [
    "ENABLED_METRICS",
    "REFRESH_PREFERENCES",
    "STACK_TAG",
    "Assets",
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
# Launch before terminate: never fewer healthy instances than desired during a refresh (AWS's default is 90/100;
# https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstanceMaintenancePolicy.html).
REFRESH_PREFERENCES = {"min_healthy_percentage": 100, "max_healthy_percentage": 200}
_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class Assets:
    """What the stack uploads: the package wheel, an optional wheelhouse, an optional model file."""

    wheel: Path
    model: Path | None = None
    wheelhouse: Wheelhouse | None = None


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


def fleet_program(
    spec: FleetSpec,
    *,
    wheel: str | os.PathLike[str] | None = None,
    resolved: Mapping[str, Any] | None = None,
    wheelhouse: Wheelhouse | None = None,
) -> Callable[[], None]:
    """The inline Pulumi program (a no-argument function) that declares the whole fleet for ``spec``.

    ``wheel`` is the mlops_lb wheel to install on instances; by default ``$MLOPS_LB_WHEEL`` or one zipped
    reproducibly from the installed package. ``resolved`` is :attr:`Preflight.resolved`.

    Example::

        program = fleet_program(FleetSpec(name="demo"), wheel="dist/mlops_lb-0.1.0-py3-none-any.whl")
    """
    if not isinstance(spec, FleetSpec):
        raise SpecError("spec", f"must be a FleetSpec (got {type(spec).__name__})")
    model = _model_file(spec)  # fail on a bad model path before any cloud call
    wheel_arg = wheel if wheel is not None else os.environ.get("MLOPS_LB_WHEEL") or None

    def program() -> None:
        import pulumi

        assets = Assets(
            wheel=Path(wheel_arg) if wheel_arg else build_wheel(), model=model, wheelhouse=wheelhouse
        )
        for key, value in declare_fleet(spec, assets=assets, resolved=resolved).items():
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


@dataclass
class _Ctx:
    """What every part of the program shares."""

    aws: Any
    spec: FleetSpec
    name: str
    tags: dict[str, str]
    asset_tags: dict[str, str]  # S3 objects take at most 10 tags: only ours, never the spec's
    region: str
    resolved: Mapping[str, Any]


def _legacy_resolution(aws: Any, spec: FleetSpec) -> dict[str, Any]:
    """Lookups for callers without a preflight (AwsFleet always passes one): default VPC or the named subnets."""
    net = spec.network
    if net.vpc_id and net.subnet_ids:
        return {
            "vpc_id": net.vpc_id,
            "alb_subnet_ids": list(net.subnet_ids),
            "instance_subnet_ids": list(net.subnet_ids),
            "ami_id": spec.instance.ami,
        }
    vpc = aws.ec2.get_vpc(id=net.vpc_id) if net.vpc_id else aws.ec2.get_vpc(default=True)
    filters = [{"name": "vpc-id", "values": [vpc.id]}]
    if not net.vpc_id:
        filters.append({"name": "default-for-az", "values": ["true"]})
    subnets = aws.ec2.get_subnets(filters=filters).ids
    if len(subnets) < 2:
        raise ProvisionError(
            f"the VPC {vpc.id} has {len(subnets)} usable subnet(s); an ALB needs two in different zones: "
            "run ml.aws.preflight(spec) to see why"
        )
    return {
        "vpc_id": vpc.id,
        "alb_subnet_ids": subnets,
        "instance_subnet_ids": subnets,
        "ami_id": spec.instance.ami,
    }


def declare_fleet(
    spec: FleetSpec,
    *,
    wheel: Path | None = None,
    model: Path | None = None,
    assets: Assets | None = None,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Declare every resource of the fleet in the current Pulumi program; returns the outputs (not exported).

    Example (inside a Pulumi program or a mocked test)::

        outputs = declare_fleet(FleetSpec(name="demo"), assets=Assets(wheel=Path("dist/mlops_lb-0.1.0-py3-none-any.whl")),
                                resolved=ml.aws.preflight(spec).resolved)
        outputs["url"]      # Output[str]
    """
    import pulumi

    aws = _import_pulumi_aws()
    if assets is None:
        if wheel is None:
            raise ProvisionError("declare_fleet needs assets=Assets(wheel=...) (or wheel=...)")
        assets = Assets(wheel=wheel, model=model)
    if not assets.wheel.is_file():
        raise ProvisionError(f"wheel {str(assets.wheel)!r} does not exist")
    stack = pulumi.get_stack()
    region = pulumi.Config("aws").get("region") or spec.region or os.environ.get("AWS_REGION") or "us-east-1"
    ours = {STACK_TAG: stack, "mlops-lb:fleet": spec.name}
    ctx = _Ctx(
        aws=aws,
        spec=spec,
        name=spec.name,
        tags={**spec.tags, **ours},
        asset_tags=ours,
        region=region,
        resolved=dict(resolved) if resolved is not None else _legacy_resolution(aws, spec),
    )
    alb_sg, inst_sg = _security_groups(ctx)
    lb = _load_balancer(ctx, alb_sg)
    bucket, keys = _assets_bucket(ctx, assets)
    profile = _instance_role(ctx, bucket)
    lt, ami = _launch_template(ctx, inst_sg, profile, bucket, keys)
    asg = _group(ctx, lt, lb["tg"])
    resource_label = _scaling(ctx, asg, lb)
    return {
        "url": lb["url"],
        "alb_arn": lb["alb"].arn,
        "alb_arn_suffix": lb["alb"].arn_suffix,
        "alb_dns_name": lb["alb"].dns_name,
        "target_group_arn": lb["tg"].arn,
        "target_group_arn_suffix": lb["tg"].arn_suffix,
        "asg_name": asg.name,
        "region": region,
        "bucket": bucket.bucket,
        "resource_label": resource_label,
        "ami_id": ami,
        "architecture": ctx.resolved.get("architecture", "x86_64"),
        "wheel_key": keys["wheel"],
    }


# ------------------------------------------------------------------------------------------------ network
def _security_groups(ctx: _Ctx) -> tuple[Any, Any]:
    aws, spec, name, net = ctx.aws, ctx.spec, ctx.name, ctx.spec.network
    vpc_id = ctx.resolved["vpc_id"]
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
                protocol="tcp", from_port=p, to_port=p, **_cidr_args(net.client_cidrs), description="clients"
            )
            for p in listen_ports
        ],
        egress=egress_all,
        tags={**ctx.tags, "Name": f"{name}-alb"},
    )
    port = spec.target_group.port
    ingress = [
        aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=port,
            to_port=port,
            security_groups=[alb_sg.id],
            description="app port from the load balancer only",
        )
    ]
    if spec.instance.ssh_cidrs:
        ingress.append(
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
        ingress=ingress,
        egress=egress_all,
        tags={**ctx.tags, "Name": f"{name}-instances"},
    )
    return alb_sg, inst_sg


# ------------------------------------------------------------------------------------------------ load balancer
def _load_balancer(ctx: _Ctx, alb_sg: Any) -> dict[str, Any]:
    import pulumi

    aws, spec, name, net, tags = ctx.aws, ctx.spec, ctx.name, ctx.spec.network, ctx.tags
    alb = aws.lb.LoadBalancer(
        name,
        load_balancer_type="application",
        internal=net.internal,
        security_groups=[alb_sg.id],
        subnets=list(ctx.resolved["alb_subnet_ids"]),
        idle_timeout=net.idle_timeout_s,
        drop_invalid_header_fields=True,
        tags=tags,
    )
    hc = spec.aws_health_check
    tg = aws.lb.TargetGroup(
        name,
        port=spec.target_group.port,
        protocol="HTTP",
        target_type="instance",
        vpc_id=ctx.resolved["vpc_id"],
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            enabled=True,
            path=hc.path,
            port="traffic-port",
            protocol="HTTP",  # ALB health checks are GET requests over HTTP(S)
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
        redirect = aws.lb.ListenerDefaultActionRedirectArgs(
            port="443", protocol="HTTPS", status_code="HTTP_301"
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            tags=tags,
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=redirect)],
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
    return {"alb": alb, "tg": tg, "url": url}


# ------------------------------------------------------------------------------------------------ assets
def _assets_bucket(ctx: _Ctx, assets: Assets) -> tuple[Any, dict[str, Any]]:
    import pulumi

    aws, name = ctx.aws, ctx.name
    bucket = aws.s3.Bucket(f"{name}-assets", force_destroy=True, tags=ctx.tags)
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
    sse = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
        sse_algorithm="AES256"
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-assets",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=sse
            )
        ],
    )

    def upload(resource: str, key: str, path: Path) -> None:
        aws.s3.BucketObjectv2(
            resource,
            bucket=bucket.id,
            key=key,
            source=pulumi.FileAsset(str(path)),
            server_side_encryption="AES256",
            tags=ctx.asset_tags,
        )

    keys: dict[str, Any] = {"wheel": content_key("wheels", assets.wheel), "model": None, "wheelhouse": None}
    upload(f"{name}-wheel", keys["wheel"], assets.wheel)
    if assets.model is not None:
        keys["model"] = content_key("model", assets.model)
        upload(f"{name}-model", keys["model"], assets.model)
    if assets.wheelhouse is not None:
        keys["wheelhouse"] = f"wheelhouse/{assets.wheelhouse.digest[:16]}"
        for f in assets.wheelhouse.files:
            upload(f"{name}-wh-{f.name}", f"{keys['wheelhouse']}/{f.name}", f)
    return bucket, keys


def _instance_role(ctx: _Ctx, bucket: Any) -> Any:
    aws, name = ctx.aws, ctx.name
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = aws.iam.Role(f"{name}-instance", tags=ctx.tags, assume_role_policy=json.dumps(trust))
    # Managed policy ARNs carry the region's partition (aws, aws-us-gov, aws-cn).
    aws.iam.RolePolicyAttachment(
        f"{name}-ssm", role=role.name, policy_arn=policy_arn("AmazonSSMManagedInstanceCore", ctx.region)
    )
    aws.iam.RolePolicyAttachment(
        f"{name}-cwagent", role=role.name, policy_arn=policy_arn("CloudWatchAgentServerPolicy", ctx.region)
    )
    warm = ctx.spec.capacity.warm_pool is not None

    def doc(arn: str) -> str:
        statements: list[dict[str, Any]] = [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{arn}/*"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn]},
        ]
        if warm:  # the ready unit finds its group and completes the launching lifecycle action
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:CompleteLifecycleAction",
                    ],
                    "Resource": ["*"],
                }
            )
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    aws.iam.RolePolicy(f"{name}-assets-read", role=role.id, policy=bucket.arn.apply(doc))
    return aws.iam.InstanceProfile(f"{name}-instance", role=role.name, tags=ctx.tags)


# ------------------------------------------------------------------------------------------------ instances
def _launch_template(
    ctx: _Ctx, inst_sg: Any, profile: Any, bucket: Any, keys: dict[str, Any]
) -> tuple[Any, Any]:
    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    ami = spec.instance.ami or ctx.resolved.get("ami_id")
    if not ami:  # only the legacy path gets here: AwsFleet pins the AMI through the preflight
        ami = aws.ssm.get_parameter(name=spec.instance.ami_ssm_parameter).value
    hook = f"{name}-launching" if spec.capacity.warm_pool is not None else None
    region, port, hc_path = ctx.region, spec.target_group.port, spec.aws_health_check.path
    user_data = bucket.bucket.apply(
        lambda b: base64.b64encode(
            render_user_data(
                bucket=b,
                region=region,
                wheel_key=keys["wheel"],
                model_key=keys["model"],
                wheelhouse_prefix=keys["wheelhouse"],
                port=port,
                lifecycle_hook=hook,
                health_path=hc_path,
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
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=t, tags={**ctx.tags, "Name": name})
            for t in ("instance", "volume")
        ],
        tags=ctx.tags,
    )
    return lt, ami


def _group(ctx: _Ctx, lt: Any, tg: Any) -> Any:
    import pulumi

    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    cfg = pulumi.Config()
    min_size = cfg.get_int("minSize")
    max_size = cfg.get_int("maxSize")
    min_size = spec.capacity.min if min_size is None else min_size
    max_size = spec.capacity.max if max_size is None else max_size
    desired = min(max(spec.capacity.desired, min_size), max_size)
    hc = spec.aws_health_check
    warm = spec.capacity.warm_pool
    group_args: dict[str, Any] = {}
    if warm is not None:
        # Declared inline so the hook exists before the first instance launches into the pool.
        group_args["initial_lifecycle_hooks"] = [
            aws.autoscaling.GroupInitialLifecycleHookArgs(
                name=f"{name}-launching",
                lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                default_result="ABANDON",  # an instance that never got healthy is not put in service
                heartbeat_timeout=max(hc.grace_period_s, 300),
            )
        ]
        group_args["warm_pool"] = aws.autoscaling.GroupWarmPoolArgs(
            pool_state=warm.state.capitalize(),
            min_size=warm.min_size,
            max_group_prepared_capacity=warm.max_group_prepared_capacity,
            instance_reuse_policy=aws.autoscaling.GroupWarmPoolInstanceReusePolicyArgs(
                reuse_on_scale_in=warm.reuse_on_scale_in
            ),
        )
    return aws.autoscaling.Group(
        f"{name}-asg",
        min_size=min_size,
        max_size=max_size,
        desired_capacity=desired,
        vpc_zone_identifiers=list(ctx.resolved["instance_subnet_ids"]),
        # The numeric latest version, not "$Latest": a new template version changes the group, which is what
        # starts the instance refresh below. User data is byte-identical when nothing changed, so it is rare.
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
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(**REFRESH_PREFERENCES),
        ),
        wait_for_capacity_timeout="15m",
        tags=[
            aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
            for k, v in {**ctx.tags, "Name": name}.items()
        ],
        # Target tracking (and fleet.scale(desired=...)) own desired capacity after creation.
        opts=pulumi.ResourceOptions(ignore_changes=["desiredCapacity"]),
        **group_args,
    )


# ------------------------------------------------------------------------------------------------ scaling
def _scaling(ctx: _Ctx, asg: Any, lb: Mapping[str, Any]) -> Any:
    import pulumi

    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    rps = pulumi.Config().get_float("targetRpsPerTarget")
    target_rps = spec.scaling.target_rps_per_target if rps is None else rps
    resource_label = pulumi.Output.concat(lb["alb"].arn_suffix, "/", lb["tg"].arn_suffix)
    metric = aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs
    aws.autoscaling.Policy(
        f"{name}-requests",
        autoscaling_group_name=asg.name,
        policy_type="TargetTrackingScaling",
        estimated_instance_warmup=spec.scaling.warmup_s,
        target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
            predefined_metric_specification=metric(
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
                predefined_metric_specification=metric(predefined_metric_type="ASGAverageCPUUtilization"),
                target_value=spec.scaling.cpu_target_percent,
                disable_scale_in=not spec.scaling.scale_in_enabled,
            ),
        )
    return resource_label
