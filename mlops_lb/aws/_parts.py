"""The resources of one fleet, declared part by part, each part a ``pulumi.ComponentResource``.

(Over 500 lines on purpose: the five parts of one program, in the order they depend on each other, so the
references from security groups to the ALB to the target group to the group read top to bottom in one file.)

``network`` (security groups), ``load-balancer`` (ALB, target group, listeners), ``assets`` (the private bucket
and its content-addressed objects), ``instances`` (role, profile, launch template, Auto Scaling group, warm
pool) and ``scaling`` (target-tracking policies). Every resource keeps the name it had before the split and
carries an alias to the stack root, so a stack launched by an earlier version updates in place.
:mod:`mlops_lb.aws.program` calls these in order; the AWS rules behind each argument are in its docstring.

Example (inside a Pulumi program)::

    ctx = _Ctx(aws=aws, spec=spec, name=spec.name, tags=tags, asset_tags=ours, region="us-east-1", resolved=pf)
    alb_sg, inst_sg = _security_groups(ctx)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._aws_rules import ecr_image, partition_for_region, policy_arn
from ..frames import CUSTOM_NAMESPACE
from ..spec import FleetSpec
from . import _router
from .assets import Assets, content_key, staged_asset
from .userdata import VENV, MetricsAgent, ServerRun, SpotAgentUnit, render_user_data

__all__ = ["CONCURRENCY_METRIC", "REFRESH_PREFERENCES", "concurrency_gauges", "server_run"]

# The custom metric the instances' agent publishes and target tracking follows (frames.CATALOGUE's entry).
CONCURRENCY_METRIC = "ConcurrencyPerTarget"
# Which Prometheus gauges count as in flight, by server kind (the spec has no field for names): our model server's
# own gauge; vLLM's running + waiting (https://docs.vllm.ai/en/latest/serving/metrics.html), which our LLM emulator
# exposes too and which a user's vLLM (command or image) has.
_GAUGES = {
    "model": ("mlops_in_flight_requests",),
    "llm-emulator": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "command": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
}


def concurrency_gauges(spec: FleetSpec) -> tuple[str, ...]:
    """The Prometheus gauges whose sum is one target's in-flight requests, for ``spec.server.kind``."""
    return _GAUGES[str(spec.server.kind)]


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def server_run(spec: FleetSpec, keys: Mapping[str, Any], region: str) -> ServerRun:
    """What the instances run for ``spec`` (the input of :func:`render_user_data`), with bucket keys ``keys``."""
    srv = spec.server
    model_path, model_s3 = "demo", None
    if keys.get("model"):
        model_path = f"{VENV}/model/{str(keys['model']).rsplit('/', 1)[-1]}"
    elif spec.model.source.startswith("s3://"):
        model_s3 = spec.model.source
        model_path = f"{VENV}/model/{_s3_parts(model_s3)[1].rsplit('/', 1)[-1]}"
    elif spec.model.source != "demo":
        model_path = spec.model.source
    ecr = ecr_image(srv.image) if srv.image else None
    kind = "image" if srv.image else str(srv.kind)
    install_dir = ""
    if srv.install_kind == "project" and srv.install:
        rel = Path(srv.install)
        install_dir = rel.as_posix() if not rel.is_absolute() and ".." not in rel.parts else rel.name
    return ServerRun(
        kind=kind,
        port=int(srv.container_port or spec.target_group.port) if srv.image else spec.target_group.port,
        argv=tuple(srv.command or ()),
        env=dict(srv.env),
        model_path=model_path,
        model_s3=model_s3,
        llm_flags=tuple(srv.llm.flags()),
        model_flags=(
            *(a for t in spec.model.trusted_types for a in ("--trust-type", t)),
            *(("--allow-pickle",) if spec.model.allow_pickle else ()),
        ),
        image=srv.image,
        gpus=srv.gpus,
        ecr_registry=ecr["registry"] if ecr else None,
        registry_auth=srv.registry_auth,
        install_kind=srv.install_kind,
        install_key=keys.get("install"),
        install_dir=install_dir.strip("/") if install_dir != "." else "",
        drain_timeout_s=srv.drain_timeout_s,
        secrets=secret_refs(spec),
    )


def secret_refs(spec: FleetSpec) -> tuple[tuple[str, str, str, str], ...]:
    """``server.secrets`` the instances read at boot: (NAME, source, parameter name / secret id, JSON key or "").

    ``{env: VAR}`` references are the local fleet's (check_aws_server refuses them before any cloud call).
    ``server.secrets`` is helper security's spec field; a spec without it has none.

    Example::

        secret_refs(spec)  # (("HF_TOKEN", "ssm", "/team/hf-token", ""),)
    """
    refs = getattr(spec.server, "secrets", None) or {}
    out: list[tuple[str, str, str, str]] = []
    for name, ref in sorted(refs.items()):
        for source in ("ssm", "secretsmanager"):
            if source in ref:
                out.append((str(name), source, str(ref[source]), str(ref.get("key", ""))))
    return tuple(out)


# Launch before terminate: never fewer healthy instances than desired during a refresh or a health replacement
# (MinHealthyPercentage defaults to 90 "or the percentage set in the instance maintenance policy", range 0-100;
# https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html, read 2026-12-07;
# https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstanceMaintenancePolicy.html).
REFRESH_PREFERENCES = {"min_healthy_percentage": 100, "max_healthy_percentage": 200}
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
_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
SLOT_TAG = "mlops-lb:slot"


def slot_b_name(name: str) -> str:
    """Slot b's resource-name prefix: ``<name>-b``, cut so its target group's autoname fits AWS's 32 characters."""
    return f"{name[: 24 - 2]}-b"


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


def _cidr_args(cidrs: Iterable[str]) -> dict[str, list[str]]:
    """Security-group rule sources: IPv4 blocks in ``cidr_blocks``, IPv6 in ``ipv6_cidr_blocks``.

    EC2 takes an IPv6 block only as an Ipv6Range; in ``cidr_blocks`` (CidrIp) it refuses the rule.
    """
    out: dict[str, list[str]] = {}
    for c in cidrs:
        key = "ipv6_cidr_blocks" if ":" in c else "cidr_blocks"
        out.setdefault(key, []).append(c)
    return out


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
    part: Any = None  # the ComponentResource the next resources belong to
    extras: dict[str, Any] = field(default_factory=dict)  # resources a later part needs (the routers' SG)

    def enter(self, kind: str) -> Any:
        """Open the component ``mlops-lb:fleet:<kind>`` named after the fleet; later resources are its children."""
        import pulumi

        self.part = pulumi.ComponentResource(f"mlops-lb:fleet:{kind}", self.name, None)
        return self.part

    def ec2_profile(self, role: str, ssm: str, policy: str, policy_doc: Any) -> Any:
        """An instance profile for EC2 instances of this fleet: a role EC2 may assume, Session Manager access, and one
        inline policy (``policy_doc``, an Output of its JSON). The three names are the resources' logical names
        (kept as they were, so a stack launched earlier updates in place).

        Example::

            ctx.ec2_profile(f"{ctx.name}-router", f"{ctx.name}-router-ssm", f"{ctx.name}-router-discover", doc)
        """
        aws = self.aws
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        iam_role = aws.iam.Role(role, tags=self.tags, assume_role_policy=json.dumps(trust), opts=self.opts())
        # Managed policy ARNs carry the region's partition (aws, aws-us-gov, aws-cn).
        aws.iam.RolePolicyAttachment(
            ssm,
            role=iam_role.name,
            policy_arn=policy_arn("AmazonSSMManagedInstanceCore", self.region),
            opts=self.opts(),
        )
        aws.iam.RolePolicy(policy, role=iam_role.id, policy=policy_doc, opts=self.opts())
        return aws.iam.InstanceProfile(role, role=iam_role.name, tags=self.tags, opts=self.opts())

    def app_port_from(self, source: Any, whom: str) -> Any:
        """The ingress rule that opens the spec's app port to one security group only (``source``, named ``whom``).

        Example::

            ctx.app_port_from(alb_sg, "the load balancer")
        """
        port = self.spec.target_group.port
        return self.aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=port,
            to_port=port,
            security_groups=[source.id],
            description=f"app port from {whom} only",
        )

    def opts(self, **kw: Any) -> Any:
        """Options for a child of the current component. The alias to the stack root keeps each resource's URN
        from before the split into components (a stack launched earlier updates in place, nothing replaced)."""
        import pulumi

        return pulumi.ResourceOptions(
            parent=self.part, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)], **kw
        )


# ------------------------------------------------------------------------------------------------ network
def _security_groups(ctx: _Ctx) -> tuple[Any, Any]:
    ctx.enter("network")
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
        opts=ctx.opts(),
    )
    source, whom = alb_sg, "the load balancer"
    if _router.has_router_tier(
        spec
    ):  # ALB -> routers -> models: the models take the port from the routers only
        source = ctx.extras["router_sg"] = _router.router_security_group(ctx, alb_sg, egress_all)
        whom = "the routers"
    ingress = [ctx.app_port_from(source, whom)]
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
        opts=ctx.opts(),
    )
    return alb_sg, inst_sg


# ------------------------------------------------------------------------------------------------ load balancer
def _load_balancer(ctx: _Ctx, alb_sg: Any, weights: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ALB, its target group(s) and listeners. ``weights`` (slot a, slot b) adds slot b's target group, same
    settings, and makes the forward action weighted (two slots, :mod:`mlops_lb.aws._rollout`)."""
    import pulumi

    ctx.enter("load-balancer")

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
        opts=ctx.opts(),
    )
    hc = spec.aws_health_check
    tg_args: dict[str, Any] = dict(
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
        **algorithm_settings(spec),
        **_router.stickiness_args(ctx),
    )
    tg = aws.lb.TargetGroup(name, tags=tags, **tg_args, opts=ctx.opts())
    out: dict[str, Any] = {"alb": alb, "tg": tg}

    def listener(actions: list[Any], **tls: Any) -> Any:
        """HTTPS on 443 with ``tls`` (ssl_policy, certificate_arn); plain HTTP on 80 without."""
        protocol = "HTTPS" if tls else "HTTP"
        return aws.lb.Listener(
            f"{name}-{protocol.lower()}",
            load_balancer_arn=alb.arn,
            port=443 if tls else 80,
            protocol=protocol,
            **tls,
            default_actions=actions,
            tags=tags,
            opts=ctx.opts(),
        )

    forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=tg.arn)]
    if weights is not None:
        # Slot b: a second group with the same settings (ALB: up to 5 groups per forward action, weights 0-999,
        # rules forward-target-groups / forward-weight); its own ALBRequestCountPerTarget label follows from it.
        tg_b = aws.lb.TargetGroup(slot_b_name(name), tags={**tags, SLOT_TAG: "b"}, **tg_args, opts=ctx.opts())
        out["tg_b"] = tg_b
        groups = [
            aws.lb.ListenerDefaultActionForwardTargetGroupArgs(arn=g.arn, weight=w)
            for g, w in ((tg, weights[0]), (tg_b, weights[1]))
        ]
        forward = [
            aws.lb.ListenerDefaultActionArgs(
                type="forward", forward=aws.lb.ListenerDefaultActionForwardArgs(target_groups=groups)
            )
        ]
    if net.certificate_arn:
        out["listener"] = listener(forward, ssl_policy=_TLS_POLICY, certificate_arn=net.certificate_arn)
        redirect = aws.lb.ListenerDefaultActionRedirectArgs(
            port="443", protocol="HTTPS", status_code="HTTP_301"
        )
        listener([aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=redirect)])
        url = pulumi.Output.concat("https://", alb.dns_name)
    else:
        out["listener"] = listener(forward)
        url = pulumi.Output.concat("http://", alb.dns_name)
    out["url"] = url
    return out


# ------------------------------------------------------------------------------------------------ assets
def _assets_bucket(ctx: _Ctx, assets: Assets) -> tuple[Any, dict[str, Any]]:
    import pulumi

    ctx.enter("assets")

    aws, name = ctx.aws, ctx.name
    bucket = aws.s3.Bucket(f"{name}-assets", force_destroy=True, tags=ctx.tags, opts=ctx.opts())
    aws.s3.BucketPublicAccessBlock(
        f"{name}-assets",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=ctx.opts(),
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-assets",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=ctx.opts(),
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
        opts=ctx.opts(),
    )

    def upload(resource: str, key: str, path: Path) -> None:
        aws.s3.BucketObjectv2(
            resource,
            bucket=bucket.id,
            key=key,
            source=pulumi.FileAsset(str(staged_asset(path, key))),
            server_side_encryption="AES256",
            tags=ctx.asset_tags,
            opts=ctx.opts(),
        )

    keys: dict[str, Any] = {"wheel": content_key("wheels", assets.wheel), "model": None, "wheelhouse": None}
    keys["python"] = (
        assets.instance_python
    )  # not an object: the Python the user data installs, with the wheels
    upload(f"{name}-wheel", keys["wheel"], assets.wheel)
    if assets.model is not None:
        keys["model"] = content_key("model", assets.model)
        upload(f"{name}-model", keys["model"], assets.model)
    if assets.install is not None:  # server.install: requirements file, wheel or project archive
        keys["install"] = content_key("install", assets.install)
        upload(f"{name}-install", keys["install"], assets.install)
    if assets.wheelhouse is not None and ctx.spec.server.kind != "command":  # our package's pins only
        keys["wheelhouse"] = f"wheelhouse/{assets.wheelhouse.digest[:16]}"
        for f in assets.wheelhouse.files:
            upload(f"{name}-wh-{f.name}", f"{keys['wheelhouse']}/{f.name}", f)
    return bucket, keys


def _instance_role(ctx: _Ctx, bucket: Any) -> Any:
    ctx.enter("instances")  # role, profile, launch template and group
    name = ctx.name
    # No CloudWatchAgentServerPolicy: no CloudWatch agent runs here, and that policy allows cloudwatch:PutMetricData
    # (with logs:*, xray:*) on "*" (AWS managed policy reference, CloudWatchAgentServerPolicy, read 2026-12-06),
    # which made the namespace condition on our own agent's PutMetricData (_role_extras) restrict nothing.
    warm = ctx.spec.capacity.warm_pool is not None
    extra = _role_extras(ctx)

    def doc(arn: str) -> str:
        statements: list[dict[str, Any]] = [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{arn}/*"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn]},
        ]
        if (
            warm
        ):  # the lifecycle watcher finds its group, extends and completes the launching lifecycle action
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:CompleteLifecycleAction",
                        "autoscaling:RecordLifecycleActionHeartbeat",
                    ],
                    "Resource": ["*"],
                }
            )
        return json.dumps({"Version": "2012-10-17", "Statement": statements + extra})

    return ctx.ec2_profile(f"{name}-instance", f"{name}-ssm", f"{name}-assets-read", bucket.arn.apply(doc))


def _role_extras(ctx: _Ctx) -> list[dict[str, Any]]:
    """What the instance role gains beyond its bucket, each only when the spec needs it (mlops_lb/_aws_rules.py)."""
    spec, part = ctx.spec, partition_for_region(ctx.region)
    out: list[dict[str, Any]] = []
    if spec.model.source.startswith("s3://"):  # the user's model object, that object only
        bucket, key = _s3_parts(spec.model.source)
        out.append(
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:{part}:s3:::{bucket}/{key}"]}
        )
    ecr = ecr_image(spec.server.image) if spec.server.image else None
    if ecr:  # ecr-pull: the token call has no resource; the pulls name the repository
        repo = f"arn:{part}:ecr:{ecr['region']}:{ecr['account']}:repository/{ecr['repository']}"
        out.append({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]})
        out.append(
            {
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": [repo],
            }
        )
    account = str(ctx.resolved.get("account") or "*")  # preflight's; "*" only when it did not run
    ssm_arns: list[str] = []
    sm_arns: list[str] = []
    for _name, source, ref, _key in secret_refs(spec):
        if ref.startswith("arn:"):
            arn = ref
        elif source == "ssm":  # a parameter's ARN: its name without the leading "/" after "parameter/"
            arn = f"arn:{part}:ssm:{ctx.region}:{account}:parameter/{ref.lstrip('/')}"
        else:  # a secret's ARN ends in "-" + 6 random characters Secrets Manager adds to its name
            arn = f"arn:{part}:secretsmanager:{ctx.region}:{account}:secret:{ref}-??????"
        (ssm_arns if source == "ssm" else sm_arns).append(arn)
    # server.secrets, those parameters and secrets only (IAM: ssm:GetParameter on the parameter's ARN,
    # https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html; GetSecretValue on
    # the secret's ARN, name-?????? for a name, https://docs.aws.amazon.com/secretsmanager/latest/userguide/
    # auth-and-access_examples.html). No kms:Decrypt: the AWS managed keys (aws/ssm, aws/secretsmanager) need
    # none; a customer managed key's policy must allow the instance role (docs/aws.md says so).
    if ssm_arns:
        out.append({"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": sorted(set(ssm_arns))})
    if sm_arns:
        out.append(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": sorted(set(sm_arns))}
        )
    if spec.server.registry_auth:  # another registry's credentials, that secret only
        out.append(
            {
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [spec.server.registry_auth],
            }
        )
    if spec.scaling.metric == "concurrency_per_target":
        # PutMetricData has no resource-level permission; the namespace condition key narrows it to ours.
        out.append(
            {
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": ["*"],
                "Condition": {"StringEquals": {"cloudwatch:namespace": CUSTOM_NAMESPACE}},
            }
        )
        if (
            ctx.spec.capacity.warm_pool is None
        ):  # the agent finds its group's name (the warm-pool unit has it)
            out.append(
                {"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingInstances"], "Resource": ["*"]}
            )
    return out


# ------------------------------------------------------------------------------------------------ instances
def _launch_template(
    ctx: _Ctx, inst_sg: Any, profile: Any, bucket: Any, keys: dict[str, Any], tg: Any = None
) -> tuple[Any, Any]:
    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    ami = spec.instance.ami or ctx.resolved.get("ami_id")
    if not ami:  # only the legacy path gets here: AwsFleet pins the AMI through the preflight
        ami = aws.ssm.get_parameter(name=spec.instance.ami_ssm_parameter).value
    hook = f"{name}-launching" if spec.capacity.warm_pool is not None else None
    hibernated = spec.capacity.warm_pool is not None and spec.capacity.warm_pool.state == "hibernated"
    region, port, hc_path = ctx.region, spec.target_group.port, spec.aws_health_check.path
    run = server_run(spec, keys, region)
    agent = None
    if spec.scaling.metric == "concurrency_per_target":
        agent = MetricsAgent(
            url=f"http://127.0.0.1:{port}{spec.server.default_metrics_path}",
            gauges=concurrency_gauges(spec),
            namespace=CUSTOM_NAMESPACE,
            metric=CONCURRENCY_METRIC,
        )
    import pulumi

    # capacity.spot: the spot agent's unit deregisters this instance from the target group on the notice.
    tg_arn = tg.arn if (tg is not None and spec.capacity.spot is not None) else None
    user_data = pulumi.Output.all(bucket.bucket, tg_arn).apply(
        lambda args: base64.b64encode(
            render_user_data(
                bucket=args[0],
                region=region,
                wheel_key=keys["wheel"],
                model_key=keys["model"],
                wheelhouse_prefix=keys["wheelhouse"],
                port=port,
                lifecycle_hook=hook,
                health_path=hc_path,
                server=run,
                agent=agent,
                # the watcher extends the hook every half heartbeat while the server is not healthy yet
                ready_wait_s=hook_heartbeat_s(spec),
                python_version=keys["python"],
                spot=SpotAgentUnit(target_group_arn=args[1], port=port) if args[1] else None,
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
        # A hibernated warm pool needs instances launched with hibernation enabled (it cannot be turned on later);
        # the root volume is encrypted and must hold the RAM (preflight: hibernation-root).
        hibernation_options=aws.ec2.LaunchTemplateHibernationOptionsArgs(configured=True)
        if hibernated
        else None,
        update_default_version=True,
        # Only the stack's own, stable tags: tag specifications are launch-template *version* data, so the spec's
        # tags here made a tag edit a new version and an instance refresh of every instance. The spec's tags
        # reach instances through the group's propagate_at_launch tags (no refresh; see _group).
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=t, tags={**ctx.asset_tags, "Name": name})
            for t in ("instance", "volume")
        ],
        tags=ctx.tags,
        opts=ctx.opts(),
    )
    return lt, ami


def hook_heartbeat_s(spec: FleetSpec) -> int:
    """The launching hook's heartbeat timeout: it must cover the whole bootstrap (user data runs before the watcher
    that extends it): the grace period, and never less than 600 s (4x EXPECTED_BOOT_S). PutLifecycleHook takes
    30-7200 s (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html)."""
    return min(7200, max(600, spec.aws_health_check.grace_period_s))


def launching_hook(spec: FleetSpec) -> dict[str, Any]:
    """The EC2_INSTANCE_LAUNCHING hook a warm pool needs (both the inline and the standalone declaration)."""
    return {
        "name": f"{spec.name}-launching",
        "lifecycle_transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "default_result": "ABANDON",  # an instance that never got healthy is not put in service
        "heartbeat_timeout": hook_heartbeat_s(spec),
    }


def _group(ctx: _Ctx, lt: Any, tg: Any, bounds: tuple[int, int, int] | None = None) -> Any:
    """The Auto Scaling group; ``bounds`` (min, desired, max) for a slot that is not the live one (its capacity
    lives in the rollout's stack config, not in ``minSize``/``maxSize``)."""
    import pulumi

    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    cfg = pulumi.Config()
    min_size = cfg.get_int("minSize")
    max_size = cfg.get_int("maxSize")
    min_size = spec.capacity.min if min_size is None else min_size
    max_size = spec.capacity.max if max_size is None else max_size
    desired = min(max(spec.capacity.desired, min_size), max_size)
    if bounds is not None:
        min_size, desired, max_size = bounds
    hc = spec.aws_health_check
    warm = spec.capacity.warm_pool
    group_args: dict[str, Any] = {}
    hook = launching_hook(spec)
    if warm is not None:
        # Inline so the hook exists before the first instance launches into the pool; pulumi-aws applies
        # initial_lifecycle_hooks "only when creating a new Auto Scaling Group" (registry docs,
        # aws.autoscaling.Group, read 2026-12-06), so the standalone LifecycleHook below carries it on a live group.
        group_args["initial_lifecycle_hooks"] = [aws.autoscaling.GroupInitialLifecycleHookArgs(**hook)]
        group_args["warm_pool"] = aws.autoscaling.GroupWarmPoolArgs(
            pool_state=warm.state.capitalize(),
            min_size=warm.min_size,
            max_group_prepared_capacity=warm.max_group_prepared_capacity,
            instance_reuse_policy=aws.autoscaling.GroupWarmPoolInstanceReusePolicyArgs(
                reuse_on_scale_in=warm.reuse_on_scale_in
            ),
        )
    from ._spot import group_spot_args

    spot_args = group_spot_args(ctx, lt)
    if (
        spot_args
    ):  # the launch template moves into the mixed instances policy (a group takes one or the other)
        group_args.update(spot_args)
    else:
        # The numeric latest version, not "$Latest": a new template version changes the group, which is what
        # starts the instance refresh below. User data is byte-identical when nothing changed, so it is rare.
        group_args["launch_template"] = aws.autoscaling.GroupLaunchTemplateArgs(
            id=lt.id, version=lt.latest_version.apply(str)
        )
    group = aws.autoscaling.Group(
        f"{name}-asg",
        min_size=min_size,
        max_size=max_size,
        desired_capacity=desired,
        vpc_zone_identifiers=list(ctx.resolved["instance_subnet_ids"]),
        # With a router tier the ALB's target group holds the routers; a model instance in it would only be
        # `unused` (Target.NotInUse): the routers find the models through the group and health-check them.
        target_group_arns=[] if _router.has_router_tier(spec) else [tg.arn],
        health_check_type="EC2" if _router.has_router_tier(spec) else "ELB",
        health_check_grace_period=hc.grace_period_s,
        default_instance_warmup=spec.scaling.warmup_s,
        enabled_metrics=list(ENABLED_METRICS),
        metrics_granularity="1Minute",
        # A refresh starts when launch_template (or mixed_instances_policy) changes, plus the properties listed in
        # triggers (pulumi-aws GroupInstanceRefresh.triggers, read 2026-12-07 in the installed 7.51 SDK): no
        # "tag" there, or a tag edit replaced every instance; tags propagate to instances launched later.
        instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(**REFRESH_PREFERENCES),
        ),
        # Health-check replacements launch before they terminate too (without a policy AWS terminates the
        # unhealthy instance and launches its replacement at the same time): "Amazon EC2 Auto Scaling first launches
        # a new instance and then waits for it to be fully ready before terminating the unhealthy instance"
        # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-maintenance-policy.html,
        # read 2026-12-07; min 0-100, max 100-200, at most 100 apart: API_InstanceMaintenancePolicy).
        instance_maintenance_policy=aws.autoscaling.GroupInstanceMaintenancePolicyArgs(**REFRESH_PREFERENCES),
        wait_for_capacity_timeout="15m",
        tags=[
            aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
            for k, v in {**ctx.tags, "Name": name}.items()
        ],
        # Target tracking (and fleet.scale(desired=...)) own desired capacity after creation; the standalone hook
        # owns the launching hook after creation.
        opts=ctx.opts(ignore_changes=["desiredCapacity", "initialLifecycleHooks"]),
        **group_args,
    )
    if (
        warm is not None
    ):  # a warm pool added to a live fleet gets its hook too (PutLifecycleHook is an upsert)
        aws.autoscaling.LifecycleHook(
            f"{name}-launching", autoscaling_group_name=group.name, **hook, opts=ctx.opts()
        )
    return group


# ------------------------------------------------------------------------------------------------ scaling
def _scaling(ctx: _Ctx, asg: Any, lb: Mapping[str, Any]) -> Any:
    import pulumi

    ctx.enter("scaling")

    aws, spec = ctx.aws, ctx.spec
    rps = pulumi.Config().get_float("targetRpsPerTarget")
    target_rps = spec.scaling.target_rps_per_target if rps is None else rps
    resource_label = pulumi.Output.concat(lb["alb"].arn_suffix, "/", lb["tg"].arn_suffix)
    metric = aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs
    if spec.scaling.metric == "concurrency_per_target":
        custom = aws.autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationArgs
        dim = (
            aws.autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricDimensionArgs
        )
        # The agent's metric, aggregated over the group: AutoScalingGroupName dimension, statistic Average
        # (API_CustomizedMetricSpecification); the target is in-flight requests per target, no unit conversion.
        _tracking_policy(
            ctx,
            asg,
            "concurrency",
            customized_metric_specification=custom(
                namespace=CUSTOM_NAMESPACE,
                metric_name=CONCURRENCY_METRIC,
                statistic="Average",
                unit="Count",
                metric_dimensions=[dim(name="AutoScalingGroupName", value=asg.name)],
            ),
            target_value=float(spec.scaling.target_concurrency_per_target or 0),
        )
    elif not _router.has_router_tier(spec):  # the routers' spec check refuses request counts with a tier
        _request_policy(ctx, asg, resource_label, target_rps)
    if spec.scaling.cpu_target_percent is not None:
        _tracking_policy(
            ctx,
            asg,
            "cpu",
            predefined_metric_specification=metric(predefined_metric_type="ASGAverageCPUUtilization"),
            target_value=spec.scaling.cpu_target_percent,
        )
    return resource_label


def _tracking_policy(ctx: _Ctx, asg: Any, suffix: str, **tracking: Any) -> Any:
    """One target-tracking policy ``<name>-<suffix>`` on the group; ``tracking`` names its metric and target."""
    aws, spec = ctx.aws, ctx.spec
    return aws.autoscaling.Policy(
        f"{ctx.name}-{suffix}",
        autoscaling_group_name=asg.name,
        policy_type="TargetTrackingScaling",
        estimated_instance_warmup=spec.scaling.warmup_s,
        target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
            disable_scale_in=not spec.scaling.scale_in_enabled, **tracking
        ),
        opts=ctx.opts(),
    )


def _request_policy(ctx: _Ctx, asg: Any, resource_label: Any, target_rps: float) -> None:
    metric = ctx.aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs
    _tracking_policy(
        ctx,
        asg,
        "requests",
        predefined_metric_specification=metric(
            predefined_metric_type="ALBRequestCountPerTarget", resource_label=resource_label
        ),
        # ALBRequestCountPerTarget counts per target per *minute*; the spec stores per second.
        target_value=target_rps * 60.0,
    )
