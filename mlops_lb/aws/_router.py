"""The AWS side of ``routing:``: ALB application-cookie stickiness, and the optional router tier.

Which to use (docs/aws.md says the same to users):

* ``policy: sticky_cookie``: conversation affinity with **no extra infrastructure**. The target group gets
  application-based stickiness (``stickiness.type app_cookie``) on ``cookie_name``: the ALB places a session's first
  request with ``target_group.algorithm`` and sends later requests carrying that cookie to the same target for
  ``cookie_duration_s`` (1-604800 s; names starting with AWSALB, AWSALBAPP or AWSALBTG are the ALB's own:
  API_TargetGroupAttribute, rule ``app-cookie-stickiness``). The model server must set the cookie.
* ``policy: consistent_hash`` + ``routing.router``: prefix affinity. An ALB cannot hash a header, so a small Auto
  Scaling group of HAProxy routers sits behind the ALB (the ALB's target group holds the routers) and hashes
  ``key_header`` with ``hash-type consistent`` and ``hash-balance-factor``. The model instances are behind **no**
  target group: a target group no load balancer uses reports its targets ``unused`` (``Target.NotInUse``,
  API_TargetHealth, rule ``target-not-in-use``), so the routers discover the model group's instances themselves
  (DescribeAutoScalingGroups + DescribeInstances, which support no resource-level permissions: Resource "*", rule
  ``describe-no-resource-level``), health-check them with HAProxy's checks and move HAProxy's slots through the
  Runtime API (:mod:`mlops_lb.aws._router_agent`). Security groups chain ALB -> routers -> models only.

What the router tier does not combine with yet (refused before any cloud call, :func:`refuse_with`): spot capacity
(``capacity.spot``: an interrupted model instance would have to leave the routers' slots on the two-minute notice)
and rollouts (``fleet.rollout``: the routers hash over one model group; a canary needs a second slot set). Request
count scaling is refused too: the model instances are in no target group, so ALBRequestCountPerTarget cannot see
them; ``scaling.metric: concurrency_per_target`` (the instances' own agent) can.

Example::

    from mlops_lb.aws._router import check_routing, refuse_with
    check_routing(spec)                 # SpecError naming the field and the fix, or nothing
    refuse_with(spec, "rollouts")       # SpecError when spec has a router tier
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._aws_rules import app_cookie_problem
from .._validate import fail, show
from ..spec import FleetSpec

__all__ = [
    "ROUTER_SLOTS_MIN",
    "check_routing",
    "has_router_tier",
    "policy_of",
    "refuse_with",
    "router_iam_statements",
    "router_of",
    "router_slots",
]

ROUTER_SLOTS_MIN = 64
_INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
# Spot's and rollout's spec-side names (helpers spot and rollaws own them; read with getattr so this module does
# not depend on their branches).
_UNDESIGNED = {
    "spot": "capacity.spot",
    "rollouts": "fleet.rollout()",
}


def policy_of(spec: FleetSpec) -> str:
    """``routing.policy`` (``alb`` when the spec has no routing section)."""
    routing = getattr(spec, "routing", None)
    return str(getattr(routing, "policy", "alb")) if routing is not None else "alb"


def router_of(spec: FleetSpec) -> Any | None:
    """``routing.router`` (the RouterTierSpec) when the spec asks for a router tier, else None."""
    routing = getattr(spec, "routing", None)
    return getattr(routing, "router", None) if routing is not None else None


def has_router_tier(spec: FleetSpec) -> bool:
    """True when the AWS program declares a router tier for ``spec``."""
    return router_of(spec) is not None and policy_of(spec) == "consistent_hash"


def refuse_with(spec: FleetSpec, feature: str) -> None:
    """Raise SpecError when ``spec`` has a router tier: ``feature`` (``"spot"`` or ``"rollouts"``) is not designed
    for it yet. Helpers of those features call this before any cloud call.

    Example::

        refuse_with(spec, "rollouts")   # SpecError: routing.router cannot be combined with fleet.rollout() yet ...
    """
    if not has_router_tier(spec):
        return
    what = _UNDESIGNED.get(feature, feature)
    fail(
        "routing.router",
        f"cannot be combined with {what} yet: the routers hash over one model group and learn of an instance "
        f"only from its Auto Scaling group, which {what} would change under them; drop routing.router (use "
        "routing.policy: sticky_cookie, which needs no tier) or drop "
        + (
            "capacity.spot"
            if feature == "spot"
            else "the rollout and update the fleet with fleet.update_code()"
        ),
    )


def check_routing(spec: FleetSpec) -> None:
    """The AWS rules of ``routing:`` (SpecError naming the dotted field, the value and the fix; nothing when fine).

    Example::

        check_routing(FleetSpec.from_dict({"name": "x", "routing": {"policy": "sticky_cookie",
                                                                      "cookie_name": "AWSALBAPP-1"}}))
        # SpecError: routing.cookie_name ... reserved for the load balancer ...
    """
    routing = getattr(spec, "routing", None)
    if routing is None:
        return
    policy = policy_of(spec)
    router = router_of(spec)
    if policy == "sticky_cookie":
        name, duration = str(routing.cookie_name), routing.cookie_duration_s
        problem = app_cookie_problem(name, 1)
        if problem:
            fail("routing.cookie_name", f"is refused by the ALB: {problem} (got {show(name)})")
        problem = app_cookie_problem(name, duration)
        if problem:
            fail("routing.cookie_duration_s", f"is refused by the ALB: {problem} (got {show(duration)})")
    if router is not None and policy != "consistent_hash":
        fail(
            "routing.router",
            f"is the router tier of policy consistent_hash (got policy {show(policy)}): drop routing.router, or "
            "set routing.policy: consistent_hash",
        )
    if policy == "consistent_hash" and router is None:
        fail(
            "routing.router",
            "is required on AWS with policy consistent_hash: an ALB cannot hash a header (it offers round_robin, "
            "least_outstanding_requests and weighted_random): add routing.router: {instance_type: t3.small, "
            "min: 1, desired: 2, max: 2}, or use policy sticky_cookie (ALB stickiness, no extra instances)",
        )
    if router is None:
        return
    itype = str(getattr(router, "instance_type", ""))
    if not _INSTANCE_TYPE_RE.fullmatch(itype):
        fail(
            "routing.router.instance_type",
            f"must look like an EC2 instance type such as t3.small (got {show(itype)})",
        )
    if spec.server.kind == "model":
        fail(
            "routing.router",
            "routes LLM requests by their prefix key, and server.kind 'model' has no prefix cache to keep warm: "
            "use server.kind: llm-emulator or your own LLM server (server.command / server.image), or drop "
            "routing.router",
        )
    if getattr(spec.capacity, "spot", None) is not None:
        refuse_with(spec, "spot")
    if spec.scaling.metric == "request_count_per_target":
        fail(
            "scaling.metric",
            "cannot be request_count_per_target with routing.router: the model instances sit behind no target "
            "group (the routers are the ALB's targets), so ALBRequestCountPerTarget never counts them: set "
            "scaling.metric: concurrency_per_target with target_concurrency_per_target (the instances' agent "
            "publishes vLLM's running + waiting requests)",
        )


def router_slots(spec: FleetSpec, max_size: int | None = None) -> int:
    """How many HAProxy slots a router declares: twice the model group's maximum, at least 64 (a disabled slot costs
    nothing, and a ``scale(max=...)`` within the slots changes no router)."""
    return max(ROUTER_SLOTS_MIN, 2 * int(max_size if max_size is not None else spec.capacity.max))


def router_iam_statements(region: str, bucket_arn: str, wheel_key: str) -> list[dict[str, Any]]:
    """The router role's inline policy: read the wheel object (its agent's files) and discover the model instances.

    DescribeAutoScalingGroups and DescribeInstances support no resource-level permissions (Service Authorization
    Reference: no resource types), so they take Resource "*"; nothing else is granted.
    """
    return [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket_arn}/{wheel_key}"]},
        {
            "Effect": "Allow",
            "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"],
            "Resource": ["*"],
        },
    ]


# ------------------------------------------------------------------------------------------------ program parts
def stickiness_args(ctx: Any) -> dict[str, Any]:
    """The target group's ``stickiness`` argument for ``routing.policy: sticky_cookie`` (empty otherwise)."""
    if policy_of(ctx.spec) != "sticky_cookie":
        return {}
    routing = ctx.spec.routing
    return {
        "stickiness": ctx.aws.lb.TargetGroupStickinessArgs(
            type="app_cookie",
            cookie_name=str(routing.cookie_name),
            # pulumi-aws maps cookie_duration to stickiness.app_cookie.duration_seconds for app_cookie.
            cookie_duration=int(routing.cookie_duration_s),
            enabled=True,
        )
    }


def router_security_group(ctx: Any, alb_sg: Any, egress: list[Any]) -> Any:
    """The routers' security group: the app port from the ALB's security group only."""
    aws, name = ctx.aws, ctx.name
    return aws.ec2.SecurityGroup(
        f"{name}-routers",
        vpc_id=ctx.resolved["vpc_id"],
        description=f"mlops_lb {name}: routers",
        ingress=[ctx.app_port_from(alb_sg, "the load balancer")],
        egress=egress,
        tags={**ctx.tags, "Name": f"{name}-routers"},
        opts=ctx.opts(),
    )


def declare_router_tier(
    ctx: Any,
    *,
    router_sg: Any,
    tg: Any,
    model_asg: Any,
    bucket: Any,
    keys: dict[str, Any],
    enabled_metrics: tuple[str, ...],
    refresh_preferences: dict[str, int],
) -> Any:
    """Role, profile, launch template and Auto Scaling group of the routers (behind the ALB's target group); the
    group metrics and refresh preferences are the model group's (``_parts``)."""
    import base64

    import pulumi

    from .userdata import RouterRun, render_router_user_data

    ctx.enter("routers")
    aws, spec, name = ctx.aws, ctx.spec, ctx.name
    router: Any = router_of(spec)  # has_router_tier(spec) holds here
    routing = spec.routing
    hc = spec.aws_health_check
    wheel_key = str(keys["wheel"])
    profile = ctx.ec2_profile(
        f"{name}-router",
        f"{name}-router-ssm",
        f"{name}-router-discover",
        bucket.arn.apply(
            lambda arn: json.dumps(
                {"Version": "2012-10-17", "Statement": router_iam_statements(ctx.region, arn, wheel_key)}
            )
        ),
    )
    max_size = pulumi.Config().get_int("maxSize")
    region, port = ctx.region, spec.target_group.port
    python = str(keys.get("python") or "3.11")

    def user_data(args: list[Any]) -> str:
        bucket_name, group_name = args
        run = RouterRun(
            model_group=str(group_name),
            port=port,
            key_header=str(routing.key_header),
            hash_balance_factor=int(routing.hash_balance_factor),
            slots=router_slots(spec, max_size),
            health_path=hc.path,
            # the routers' own checks of the models: cheap, so faster than the ALB's (5-300 s)
            check_inter_s=2,
            rise=int(hc.healthy_threshold),
            fall=int(hc.unhealthy_threshold),
            timeout_s=int(spec.network.idle_timeout_s),
        )
        script = render_router_user_data(
            bucket=str(bucket_name), region=region, wheel_key=wheel_key, router=run, python_version=python
        )
        return base64.b64encode(script.encode()).decode()

    # The preflight's plain AL2023 AMI for the router's architecture (a GPU model AMI is not for a router); the
    # models' AMI only when no preflight ran.
    ami = ctx.resolved.get("router_ami_id") or spec.instance.ami or ctx.resolved.get("ami_id")
    lt = aws.ec2.LaunchTemplate(
        f"{name}-router-lt",
        image_id=ami,
        instance_type=str(router.instance_type),
        iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
        vpc_security_group_ids=[router_sg.id],
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=8, volume_type="gp3", encrypted="true", delete_on_termination="true"
                ),
            )
        ],
        user_data=pulumi.Output.all(bucket.bucket, model_asg.name).apply(user_data),
        update_default_version=True,
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=t, tags={**ctx.tags, "Name": f"{name}-router", "mlops-lb:role": "router"}
            )
            for t in ("instance", "volume")
        ],
        tags=ctx.tags,
        opts=ctx.opts(),
    )
    return aws.autoscaling.Group(
        f"{name}-router-asg",
        min_size=int(router.min),
        max_size=int(router.max),
        desired_capacity=int(router.desired),
        # zones offering the router's type (preflight), else the models' subnets
        vpc_zone_identifiers=list(
            ctx.resolved.get("router_subnet_ids") or ctx.resolved["instance_subnet_ids"]
        ),
        launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
            id=lt.id, version=lt.latest_version.apply(str)
        ),
        # The routers are the ALB's targets; ELB health checks replace a router whose HAProxy stopped answering.
        target_group_arns=[tg.arn],
        health_check_type="ELB",
        health_check_grace_period=hc.grace_period_s,
        enabled_metrics=list(enabled_metrics),
        metrics_granularity="1Minute",
        instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(**refresh_preferences),
        ),
        tags=[
            aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
            for k, v in {**ctx.tags, "Name": f"{name}-router", "mlops-lb:role": "router"}.items()
        ],
        opts=ctx.opts(ignore_changes=["desiredCapacity"]),
    )
