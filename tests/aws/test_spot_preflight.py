"""Preflight for capacity.spot (mlops_lb/aws/_spot.py: spot_checks) against botocore Stubber answers in the
documented response shapes: DescribeInstanceTypes, DescribeInstanceTypeOfferings (LocationType
availability-zone) and Service Quotas GetServiceQuota. Rules: spot-offerings, spot-architecture, and the spot vCPU
quotas (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html). Each check both ways.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

import mlops_lb as ml
from mlops_lb._aws_rules import RULES
from mlops_lb.aws._preflight import Preflight
from mlops_lb.aws._spot import spot_checks, spot_quota_code

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def _spec(types: list[str], **spot: Any) -> ml.FleetSpec:
    return ml.FleetSpec(
        name="sp",
        target_group={"deregistration_delay_s": 60},
        capacity={"min": 1, "desired": 2, "max": 10, "spot": {"instance_types": types, **spot}},
    )


def _info(t: str, vcpus: int, arch: str = "x86_64") -> dict[str, Any]:
    return {
        "InstanceType": t,
        "VCpuInfo": {"DefaultVCpus": vcpus},
        "ProcessorInfo": {"SupportedArchitectures": [arch]},
    }


def _run(
    spec: ml.FleetSpec, infos: list[dict[str, Any]], offered: dict[str, list[str]], quota: float | None
) -> Preflight:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    sq = boto3.client("service-quotas", region_name="us-east-1")
    names = [t.type for t in spec.capacity.spot.types_for(spec.instance.type)]
    with Stubber(ec2) as s_ec2, Stubber(sq) as s_sq:
        s_ec2.add_response("describe_instance_types", {"InstanceTypes": infos}, {"InstanceTypes": names})
        s_ec2.add_response(
            "describe_instance_type_offerings",
            {"InstanceTypeOfferings": [
                {"InstanceType": t, "LocationType": "availability-zone", "Location": z}
                for t, zs in offered.items() for z in zs
            ]},
            {"LocationType": "availability-zone", "Filters": [{"Name": "instance-type", "Values": names}]},
        )  # fmt: skip
        if quota is not None:
            s_sq.add_response(
                "get_service_quota",
                {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-34B43A08", "Value": quota}},
                {"ServiceCode": "ec2", "QuotaCode": ANY},
            )
        pf = Preflight(resolved={"availability_zones": ZONES, "architecture": "x86_64"})
        spot_checks(pf, ec2, sq, spec)
    return pf


def test_offered_types_of_one_architecture_within_quota_pass() -> None:
    spec = _spec(["c7i.large", "c6i.large"])
    pf = _run(
        spec, [_info("c7i.large", 2), _info("c6i.large", 2)], {"c7i.large": ZONES, "c6i.large": ZONES}, 640
    )
    assert pf.ok, pf
    assert [r["check"] for r in pf.rows] == ["spot instance types", "spot vcpu quota"]
    assert "20 spot vCPU" in pf.rows[1]["detail"]  # 10 spot at max x 2 vCPU


def test_a_type_missing_in_a_zone_fails_naming_the_rule() -> None:
    spec = _spec(["c7i.large", "c6i.large"])
    pf = _run(
        spec,
        [_info("c7i.large", 2), _info("c6i.large", 2)],
        {"c7i.large": ZONES, "c6i.large": ZONES[:2]},
        640,
    )
    [bad] = pf.failed
    assert "c6i.large is not offered in us-east-1c" in bad["detail"]
    assert RULES["spot-offerings"].source in bad["detail"]


def test_a_graviton_type_with_an_x86_ami_fails() -> None:
    # The spec check guesses from the name; the preflight asks EC2 (a type the guess could miss).
    spec = _spec(["c7i.large", "c6i.large"])
    pf = _run(
        spec,
        [_info("c7i.large", 2), _info("c6i.large", 2, "arm64")],
        {"c7i.large": ZONES, "c6i.large": ZONES},
        640,
    )
    assert any(RULES["spot-architecture"].source in r["detail"] for r in pf.failed), pf


def test_quota_too_small_for_the_spot_share_fails() -> None:
    spec = _spec(["c7i.large"], on_demand_base=2, on_demand_percent=50)  # max 10: 2 + 4 on-demand, 4 spot
    pf = _run(spec, [_info("c7i.large", 2)], {"c7i.large": ZONES}, 7)
    [bad] = pf.failed
    assert bad["check"] == "spot vcpu quota" and "need up to 8 vCPU > quota 7" in bad["detail"]
    assert "L-34B43A08" in bad["fix"]


@pytest.mark.parametrize(
    ("itype", "code"),
    [
        ("c7i.large", "L-34B43A08"),
        ("g5.xlarge", "L-3819A6DF"),
        ("p4d.24xlarge", "L-7212CCBC"),
        ("inf2.xlarge", None),
    ],
)
def test_quota_code_by_family(itype: str, code: str | None) -> None:
    found = spot_quota_code(itype)
    assert (found[0] if found else None) == code
