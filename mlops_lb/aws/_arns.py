"""ARN suffixes and the CloudWatch dimensions derived from them.

CloudWatch's AWS/ApplicationELB dimensions are *suffixes* of the ARNs: ``LoadBalancer`` is ``app/<name>/<id>``
(what follows ``loadbalancer/``) and ``TargetGroup`` is ``targetgroup/<name>/<id>``. The target-tracking
resource label joins the two with ``/``.

Example::

    dims = FleetDimensions.from_arns(
        load_balancer_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo/50dc6c495c0c9188",
        target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo/73e2d6bc24d8a067",
        asg_name="demo-asg")
    dims.resource_label    # 'app/demo/50dc6c495c0c9188/targetgroup/demo/73e2d6bc24d8a067'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MetricsError

__all__ = ["FleetDimensions", "arn_suffix"]

_LB_RE = re.compile(r"^arn:aws[\w-]*:elasticloadbalancing:[\w-]+:\d{12}:loadbalancer/(app/[^/]+/[0-9a-f]+)$")
_TG_RE = re.compile(r"^arn:aws[\w-]*:elasticloadbalancing:[\w-]+:\d{12}:(targetgroup/[^/]+/[0-9a-f]+)$")


def arn_suffix(arn: str, *, argument: str = "arn") -> str:
    """The CloudWatch dimension value of an ALB or target-group ARN.

    ``...:loadbalancer/app/demo/50dc...`` -> ``app/demo/50dc...``; ``...:targetgroup/demo/73e2...`` ->
    ``targetgroup/demo/73e2...``. Anything else (a network load balancer, a truncated ARN) raises MetricsError
    naming ``argument``.

    Example::

        arn_suffix("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/tg/0123abcd")
    """
    if isinstance(arn, str):
        for rx in (_LB_RE, _TG_RE):
            m = rx.match(arn)
            if m:
                return m.group(1)
    raise MetricsError(
        f"{argument} must be an Application Load Balancer or target-group ARN such as "
        f"arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id> (got {arn!r})",
        code="InvalidArn",
        hint="pass the stack outputs alb_arn / target_group_arn (fleet.outputs())",
    )


def target_group_suffix(arn: str, *, argument: str = "target_group_arn") -> str:
    """``targetgroup/<name>/<id>`` of a target-group ARN; an ALB's or a malformed ARN raises MetricsError."""
    tg = arn_suffix(arn, argument=argument)
    if not tg.startswith("targetgroup/"):
        raise MetricsError(
            f"{argument} must be a target-group ARN (got {arn!r})",
            code="InvalidArn",
            hint="pass the target group's ARN, not the ALB's",
        )
    return tg


def check_asg_name(name: object, *, argument: str = "asg_name") -> str:
    """An Auto Scaling group name (1-255 characters), checked before any AWS client is built."""
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise MetricsError(
            f"{argument} must be the Auto Scaling group's name (got {name!r})",
            code="InvalidParameter",
            hint="pass the stack output asg_name",
        )
    return name


@dataclass(frozen=True)
class FleetDimensions:
    """The dimension values of one fleet's CloudWatch metrics.

    Example::

        FleetDimensions.from_arns(load_balancer_arn=lb_arn, target_group_arn=tg_arn, asg_name="demo-asg")
    """

    load_balancer: str
    target_group: str
    asg_name: str

    @classmethod
    def from_arns(cls, *, load_balancer_arn: str, target_group_arn: str, asg_name: str) -> FleetDimensions:
        """Derive dimensions from ARNs; a wrong ARN raises MetricsError naming the argument."""
        lb = arn_suffix(load_balancer_arn, argument="load_balancer_arn")
        if not lb.startswith("app/"):
            raise MetricsError(
                f"load_balancer_arn must be a load balancer ARN (got {load_balancer_arn!r})",
                code="InvalidArn",
                hint="pass the ALB's ARN, not the target group's",
            )
        tg = target_group_suffix(target_group_arn)
        return cls(load_balancer=lb, target_group=tg, asg_name=check_asg_name(asg_name))

    @property
    def resource_label(self) -> str:
        """The ALBRequestCountPerTarget resource label: ``<alb suffix>/<target-group suffix>``."""
        return f"{self.load_balancer}/{self.target_group}"
