"""The account tests/aws's Pulumi mocks pretend to be (a uniquely named module, so tests can import it).

moto's us-east-1 default VPC: six AZs, one default subnet each; t3.small is offered in every zone but
us-east-1e, as in reality (DescribeInstanceTypeOfferings) and in moto.
"""

from __future__ import annotations

from typing import Any

SUBNET_AZS = {f"subnet-0{az}{az}{az}{az}1111": f"us-east-1{az}" for az in "abcdef"}
OFFERED_AZS = {"t3.small": {f"us-east-1{az}" for az in "abcdf"}}
RESOLVED: dict[str, Any] = {
    "vpc_id": "vpc-0default0",
    "alb_subnet_ids": sorted(SUBNET_AZS),
    "instance_subnet_ids": sorted(s for s, az in SUBNET_AZS.items() if az in OFFERED_AZS["t3.small"]),
    "availability_zones": sorted(OFFERED_AZS["t3.small"]),
    "ami_id": "ami-0123456789abcdef0",
    "architecture": "x86_64",
    "partition": "aws",
}


class RuleViolation(Exception):
    """A resource the program declared breaks a documented AWS rule: AWS would refuse it."""
