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
from typing import Any

# ctx is mlops_lb.aws._parts._Ctx (typed Any: _parts imports this module, and the graph stays acyclic)
_Ctx = Any

__all__ = [
    "SPOT_QUOTAS",
    "deregister_policy_doc",
    "group_spot_args",
    "spot_checks",
    "spot_quota_code",
    "spot_role_policy",
]

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


# Spot vCPU quotas ("All ... Spot Instance Requests", counted in vCPUs; Spot Instance quotas,
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html). The codes are Service Quotas'
# (read 2026-12-07 from public scripts that query them; the page names the quotas, not the codes).
SPOT_QUOTAS = {
    "standard": ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    "g": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "p": ("L-7212CCBC", "All P Spot Instance Requests"),
}


def spot_quota_code(instance_type: str) -> tuple[str, str] | None:
    """(code, name) of the spot vCPU quota that limits ``instance_type``'s family, None when not known."""
    fam = instance_type.split(".", 1)[0]
    # Inferentia, Trainium, DL, HPC, Mac and high-memory families have quotas of their own (not checked here).
    if fam.startswith(("inf", "trn", "dl", "hpc", "mac", "u-")):
        return None
    if fam.startswith(("g", "vt")):
        return SPOT_QUOTAS["g"]
    if fam.startswith("p"):
        return SPOT_QUOTAS["p"]
    if fam.startswith(tuple("acdhimrtz")):
        return SPOT_QUOTAS["standard"]
    return None


def spot_checks(pf: Any, ec2: Any, quotas: Any, spec: Any) -> None:
    """Preflight for ``capacity.spot``: every type offered in every zone of the group (spot-offerings), of the
    AMI's architecture (spot-architecture), and the spot vCPU quota for the spot share at ``capacity.max``."""
    from .._aws_rules import RULES, instance_architecture
    from ..analysis.spot import mix_counts
    from ._boto import error_code

    spot = spec.capacity.spot
    if spot is None:
        return
    names = [t.type for t in spot.types_for(spec.instance.type)]
    zones = set(pf.resolved.get("availability_zones") or [])
    arch = pf.resolved.get("architecture") or instance_architecture(spec.instance.type)
    try:
        infos = ec2.describe_instance_types(InstanceTypes=names)["InstanceTypes"]
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": names}]
        )
        offered: dict[str, set[str]] = {n: set() for n in names}
        for page in pages:
            for o in page.get("InstanceTypeOfferings", []):
                offered.setdefault(o["InstanceType"], set()).add(o["Location"])
    except Exception as exc:
        pf.add(
            "spot instance types",
            False,
            f"DescribeInstanceTypes / DescribeInstanceTypeOfferings failed: {error_code(exc) or exc}",
            "allow ec2:DescribeInstanceTypes and ec2:DescribeInstanceTypeOfferings",
        )
        return
    vcpus = {i["InstanceType"]: int(i.get("VCpuInfo", {}).get("DefaultVCpus", 2)) for i in infos}
    ok = True
    for info in infos:
        archs = info.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
        if arch not in archs:
            ok = False
            pf.add(
                "spot instance types",
                False,
                f"{info['InstanceType']} runs {'/'.join(archs)}, the AMI is {arch} "
                f"[spot-architecture: {RULES['spot-architecture'].source}]",
                "list types of one architecture in capacity.spot.instance_types",
            )
    for n in names:
        missing = sorted(zones - offered.get(n, set()))
        if n not in vcpus:
            ok = False
            pf.add("spot instance types", False, f"{n} is not an instance type in this region", "remove it")
        elif missing:
            ok = False
            pf.add(
                "spot instance types",
                False,
                f"{n} is not offered in {', '.join(missing)} (the group's zones: {', '.join(sorted(zones))}) "
                f"[spot-offerings: {RULES['spot-offerings'].source}]",
                f"remove {n} from capacity.spot.instance_types, or use subnets in zones that offer it",
            )
    if ok:
        pf.add(
            "spot instance types", True, f"{', '.join(names)}: {arch}, offered in {', '.join(sorted(zones))}"
        )
    _, n_spot = mix_counts(spec.capacity.max, spot.on_demand_base, spot.on_demand_percent)
    by_code: dict[tuple[str, str], int] = {}
    for n in names:
        found = spot_quota_code(n)
        if found is not None and n in vcpus:
            # Worst case: every spot unit on this family's largest type (weights: units, so per unit).
            w = next((t.weight for t in spot.types_for(spec.instance.type) if t.type == n), None) or 1
            by_code[found] = max(by_code.get(found, 0), n_spot * -(-vcpus[n] // w))
    for (code, qname), need in sorted(by_code.items()):
        try:
            limit = float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
        except Exception as exc:
            pf.add(
                "spot vcpu quota",
                None,
                f"could not read {code} ({qname}): {error_code(exc) or exc}; not checked",
                "allow servicequotas:GetServiceQuota to have it checked",
            )
            continue
        if need > limit:
            pf.add(
                "spot vcpu quota",
                False,
                f"{n_spot} spot of capacity.max {spec.capacity.max} need up to {need} vCPU > quota {limit:g} ({qname})",
                f"request an increase of {code} in Service Quotas, raise on_demand_base/percent, or lower capacity.max",
            )
        else:
            pf.add("spot vcpu quota", True, f"up to {need} spot vCPU <= quota {limit:g} ({code})")
