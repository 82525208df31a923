"""The AWS side of ``capacity.spot``: the group's mixed instances policy, capacity rebalancing, and the instance
role's permission to deregister its own target (the spot agent's call), on this fleet's target group only.

Rules and sources: ``mlops_lb/_aws_rules.py`` (spot-overrides, spot-distribution, spot-warm-pool,
spot-deregistration-delay). The group takes either a launch template or a mixed instances policy, never both
(https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CreateAutoScalingGroup.html), so with spot the
template moves into the policy.

Example::

    args = group_spot_args(ctx, lt)          # {} without capacity.spot
    aws.autoscaling.Group("g", **args, ...)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._parts import _Ctx

__all__ = ["deregister_policy_doc", "group_spot_args", "spot_role_policy"]

# elasticloadbalancing:DeregisterTargets supports the targetgroup resource type (Service Authorization Reference,
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html): the role
# names this fleet's target group, so a compromised instance cannot drain another fleet.
DEREGISTER_ACTION = "elasticloadbalancing:DeregisterTargets"


def group_spot_args(ctx: _Ctx, lt: Any) -> dict[str, Any]:
    """Keyword arguments for ``aws.autoscaling.Group`` with spot on: the mixed instances policy (the launch
    template with one override per type, weights as WeightedCapacity) and ``capacity_rebalance``."""
    spot = ctx.spec.capacity.spot
    if spot is None:
        return {}
    aws = ctx.aws
    overrides = [
        aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(
            instance_type=t.type,
            weighted_capacity=None if t.weight is None else str(t.weight),
        )
        for t in spot.types_for(ctx.spec.instance.type)
    ]
    policy = aws.autoscaling.GroupMixedInstancesPolicyArgs(
        instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
            on_demand_base_capacity=spot.on_demand_base,
            on_demand_percentage_above_base_capacity=spot.on_demand_percent,
            spot_allocation_strategy=spot.allocation_strategy,
            # on-demand in the listed order (AWS's default for groups without InstanceRequirements)
            on_demand_allocation_strategy="prioritized",
        ),
        launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
            launch_template_specification=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                launch_template_id=lt.id, version=lt.latest_version.apply(str)
            ),
            overrides=overrides,
        ),
    )
    return {"mixed_instances_policy": policy, "capacity_rebalance": spot.capacity_rebalance}


def deregister_policy_doc(target_group_arn: str) -> str:
    """The role policy of the spot agent: DeregisterTargets on this one target group ARN."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": [DEREGISTER_ACTION], "Resource": [target_group_arn]}],
        }
    )


def spot_role_policy(ctx: _Ctx, profile: Any, tg: Any) -> Any:
    """With spot on, an inline policy on the instance role: the agent may deregister targets of ``tg`` only."""
    if ctx.spec.capacity.spot is None:
        return None
    return ctx.aws.iam.RolePolicy(
        f"{ctx.name}-spot-deregister",
        role=profile.role,
        policy=tg.arn.apply(deregister_policy_doc),
        opts=ctx.opts(),
    )
