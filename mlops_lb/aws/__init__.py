"""The AWS backend: the Pulumi program, the Automation API fleet and the CloudWatch readers.

Importing this package loads neither pulumi, pulumi_aws nor boto3; they load when a function needs them.

Example::

    import mlops_lb as ml
    spec = ml.FleetSpec(name="demo", region="us-east-1")
    ml.aws.preflight(spec)                     # read-only checks of the account; launch() runs them first
    fleet = ml.open_fleet(spec, backend="aws")
    fleet.launch(on_output=print)              # pulumi up (needs the pulumi CLI and AWS credentials)
    ml.aws.read_fleet_metrics(load_balancer_arn=fleet.outputs()["alb_arn"], ...)
    fleet.destroy(confirm="demo")
"""

from __future__ import annotations

from ._arns import FleetDimensions, arn_suffix
from ._preflight import Preflight, preflight
from .assets import build_wheel
from .cloudwatch import CATALOGUE, read_fleet_metrics, read_scaling_activities, read_target_health
from .program import STACK_TAG, declare_fleet, fleet_program
from .stack import AwsFleet, find_orphans


def prices(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Current EC2 prices with their source and date (see :func:`mlops_lb.analysis.pricing.prices`).

    Example::

        ml.aws.prices(["g5.xlarge"], ["us-east-1", "us-west-2"], spot=True)
    """
    from ..analysis.pricing import prices as _prices

    return _prices(*args, **kwargs)


__all__ = [
    "CATALOGUE",
    "STACK_TAG",
    "AwsFleet",
    "FleetDimensions",
    "Preflight",
    "arn_suffix",
    "build_wheel",
    "declare_fleet",
    "find_orphans",
    "fleet_program",
    "preflight",
    "prices",
    "read_fleet_metrics",
    "read_scaling_activities",
    "read_target_health",
]
