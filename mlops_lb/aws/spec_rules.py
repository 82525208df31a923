"""The AWS backend's own rules for a FleetSpec: what AWS refuses in a name, a region or an instance type.

``FleetSpec`` checks only what holds on every backend; these rules hold on AWS alone, so they live with the AWS
backend (as SkyPilot's ``Cloud`` subclasses answer for their own names and regions). They run, before any call
to AWS, from ``open_fleet(spec, backend="aws")``, ``ml.aws.preflight(spec)`` and ``spec.check(backend="aws")``;
each error names the dotted field, the value and the fix, like the spec's own. The limits and their sources are
the table in ``mlops_lb/_aws_rules.py``.

Example::

    import mlops_lb as ml
    ml.FleetSpec(name="sg-demo").check(backend="aws")
    # SpecError: name must not start with 'sg-' (EC2 refuses such security-group names) (got 'sg-demo')
"""

from __future__ import annotations

import re

from .. import _aws_rules as aws_rules
from .._validate import fail, show
from ..spec import FleetSpec

__all__ = ["MAX_NAME_LEN", "check_spec"]

# Pulumi appends "-" + 7 random characters to autonamed resources, and ALB / target-group names are at most 32.
MAX_NAME_LEN = aws_rules.MAX_NAME_PREFIX
_REGION_RE = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
_INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")


def check_spec(spec: FleetSpec) -> FleetSpec:
    """Raise SpecError for the first field of ``spec`` that AWS would refuse; return ``spec`` when none.

    Example::

        check_spec(ml.FleetSpec(name="demo", region="us-east-1"))    # the spec, unchanged
    """
    name = spec.name
    if len(name) > MAX_NAME_LEN:
        fail(
            "name",
            f"must be at most {MAX_NAME_LEN} characters on AWS so ALB and target-group names fit AWS's 32 with "
            f"Pulumi's suffix (got {len(name)}: {show(name)})",
        )
    if name.lower().startswith("internal-"):
        fail("name", f"must not start with 'internal-' (AWS reserves it for ALB names) (got {show(name)})")
    # Security groups are named <name>-alb / <name>-instances; EC2 refuses names starting with sg-.
    if aws_rules.security_group_name_problem(f"{name}-alb"):
        fail("name", f"must not start with 'sg-' (EC2 refuses such security-group names) (got {show(name)})")
    if spec.region is not None and not _REGION_RE.fullmatch(spec.region):
        fail("region", f"must be an AWS region such as us-east-1 (got {show(spec.region)})")
    if not _INSTANCE_TYPE_RE.fullmatch(spec.instance.type):
        fail(
            "instance.type",
            f"must look like an EC2 instance type such as t3.small (got {show(spec.instance.type)})",
        )
    from ._router import check_routing  # routing: ALB stickiness limits and the router tier's rules

    check_routing(spec)
    _check_spot(spec)
    return spec


def _check_spot(spec: FleetSpec) -> None:
    """The mixed instances policy's own rules: type names and one architecture (the AMI's) for every type."""
    spot = spec.capacity.spot
    if spot is None:
        return
    for i, t in enumerate(spot.instance_types):
        if not _INSTANCE_TYPE_RE.fullmatch(t.type):
            fail(
                f"capacity.spot.instance_types[{i}].type",
                f"must look like an EC2 instance type such as c7i.large (got {show(t.type)})",
            )
    # The launch template has one AMI; its SSM parameter names the architecture (…-x86_64 / …-arm64).
    param = spec.instance.ami_ssm_parameter
    ami_arch = "arm64" if param.endswith("arm64") else "x86_64" if param.endswith("x86_64") else None
    first = spot.types_for(spec.instance.type)[0].type
    want = ami_arch or aws_rules.instance_architecture(spec.instance.type)
    for i, t in enumerate(spot.types_for(spec.instance.type)):
        arch = aws_rules.instance_architecture(t.type)
        if arch != want:
            where = f"the AMI ({param})" if ami_arch else f"instance.type {spec.instance.type!r}"
            fail(
                f"capacity.spot.instance_types[{i}]" if spot.instance_types else "instance.type",
                aws_rules.cite(
                    "spot-architecture",
                    f"{t.type!r} is {arch} but {where} is {want}: every type must share the AMI's architecture "
                    f"(e.g. keep {first!r}'s family, or split into two fleets)",
                ),
            )
