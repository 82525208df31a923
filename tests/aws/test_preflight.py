"""ml.aws.preflight against moto: network resolution, zones, AMI, quota, grace period, credentials.

moto's us-east-1 default VPC has six AZs, one default subnet each, and us-east-1e does not offer t3.small (as in
reality, DescribeInstanceTypeOfferings). The ``moto_account`` fixture adds the internet gateway and route that a
real default VPC has. Custom VPCs below are built the way AWS documents public (IGW route + public IP mapping)
and private (NAT route, or none) subnets.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, HealthCheckSpec, InstanceSpec, NetworkSpec
from mlops_lb.aws import preflight
from mlops_lb.aws._preflight import AL2023_PARAMETERS, CHECK_COLUMNS

REGION = "us-east-1"


def _spec(**kw: Any) -> FleetSpec:
    return FleetSpec(name="demo", region=REGION, **kw)


def _check(pf: Any, name: str) -> dict[str, Any]:
    (row,) = [r for r in pf.rows if r["check"] == name]
    return row


class TestDefaultVpc:
    def test_resolves_one_alb_subnet_per_az_and_drops_zones_without_the_type(self, moto_account: Any) -> None:
        """Six AZs for the ALB (one subnet each); the group leaves out us-east-1e, which has no t3.small.

        Old code: every default subnet went to the group, us-east-1e included, so scaling activities failed."""
        pf = preflight(_spec())
        assert pf.ok, pf
        res = pf.resolved
        subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in moto_account.describe_subnets()["Subnets"]}
        alb_azs = [subnets[s] for s in res["alb_subnet_ids"]]
        assert sorted(alb_azs) == [f"us-east-1{z}" for z in "abcdef"] and len(set(alb_azs)) == len(alb_azs)
        assert res["availability_zones"] == [f"us-east-1{z}" for z in "abcdf"]
        assert sorted(subnets[s] for s in res["instance_subnet_ids"]) == res["availability_zones"]
        assert res["partition"] == "aws" and res["architecture"] == "x86_64"
        assert res["vpc_id"].startswith("vpc-") and res["ami_id"].startswith("ami-")
        assert "us-east-1e" in _check(pf, "instance zones")["detail"]

    def test_checks_frame_and_views(self, moto_account: Any) -> None:
        """checks is a DataFrame (check, ok, detail, fix); repr and HTML name every check."""
        pf = preflight(_spec())
        assert tuple(pf.checks.columns) == CHECK_COLUMNS
        assert set(pf.checks["check"]) >= {
            "credentials",
            "region",
            "vpc",
            "alb subnets",
            "instance subnets",
            "ami",
        }
        assert "Preflight: ok" in repr(pf) and "alb_subnet_ids" in repr(pf)
        assert "<table>" in pf._repr_html_() and "instance subnets" in pf._repr_html_()

    def test_graviton_types_get_the_arm64_ami(self, moto_account: Any) -> None:
        """t4g is arm64: the AMI comes from the ...-arm64 AL2023 parameter (old code: always x86_64)."""
        import boto3

        pf = preflight(_spec(instance=InstanceSpec(type="t4g.small")))
        want = boto3.client("ssm", region_name=REGION).get_parameter(Name=AL2023_PARAMETERS["arm64"])
        assert pf.resolved["architecture"] == "arm64"
        assert pf.resolved["ami_id"] == want["Parameter"]["Value"]
        assert pf.resolved["ami_parameter"].endswith("-arm64")

    def test_quota_that_cannot_be_read_is_skipped_not_failed(self, moto_account: Any) -> None:
        """moto has no Service Quotas here: the check says so (ok=None) and preflight still passes."""
        pf = preflight(_spec())
        row = _check(pf, "vcpu quota")
        assert row["ok"] is None and "L-1216C47A" in row["detail"] and pf.ok

    def test_grace_period_shorter_than_boot_fails_with_the_fix(self, moto_account: Any) -> None:
        """The demo's local 60 s grace period would replace instances before they finish booting."""
        spec = _spec(health_check=HealthCheckSpec(grace_period_s=60, interval_s=10, healthy_threshold=2))
        pf = preflight(spec)
        row = _check(pf, "grace period")
        assert not pf.ok and row["ok"] is False and "aws.health_check.grace_period_s" in row["fix"]
        assert preflight(FleetSpec.example("demo").replace(region=REGION)).ok  # the aws: overrides fix it

    def test_no_default_vpc_names_the_fix(self, moto_account: Any) -> None:
        """A region without a default VPC fails the vpc check with create-default-vpc or network.vpc_id."""
        vpc = moto_account.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
        for s in moto_account.describe_subnets()["Subnets"]:
            moto_account.delete_subnet(SubnetId=s["SubnetId"])
        for igw in moto_account.describe_internet_gateways()["InternetGateways"]:
            moto_account.detach_internet_gateway(
                InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc["VpcId"]
            )
        moto_account.delete_vpc(VpcId=vpc["VpcId"])
        pf = preflight(_spec())
        assert not pf.ok and "create-default-vpc" in _check(pf, "vpc")["fix"]


def _custom_vpc(ec2: Any, *, nat: bool, public_ip: bool = True) -> dict[str, Any]:
    """A VPC with a public subnet (IGW route) and a private one (NAT route or none) in each of two AZs."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    pub_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=pub_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    priv_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    out: dict[str, Any] = {"vpc": vpc, "public": [], "private": []}
    for i, az in enumerate(("us-east-1a", "us-east-1b")):
        pub = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        if public_ip:
            ec2.modify_subnet_attribute(SubnetId=pub, MapPublicIpOnLaunch={"Value": True})
        ec2.associate_route_table(RouteTableId=pub_rt, SubnetId=pub)
        priv = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{10 + i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        ec2.associate_route_table(RouteTableId=priv_rt, SubnetId=priv)
        out["public"].append(pub)
        out["private"].append(priv)
    if nat:
        alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
        natgw = ec2.create_nat_gateway(SubnetId=out["public"][0], AllocationId=alloc)["NatGateway"][
            "NatGatewayId"
        ]
        ec2.create_route(RouteTableId=priv_rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=natgw)
    return out


class TestCustomVpc:
    def test_alb_on_public_subnets_instances_behind_nat(self, moto_account: Any) -> None:
        """With vpc_id and no subnets: the ALB takes the public subnet of each AZ (never two in one AZ, the old
        "cannot be attached to multiple subnets in the same Availability Zone"), instances the NAT-routed ones."""
        net = _custom_vpc(moto_account, nat=True)
        pf = preflight(_spec(network=NetworkSpec(vpc_id=net["vpc"])))
        assert pf.ok, pf
        assert pf.resolved["alb_subnet_ids"] == net["public"]
        assert pf.resolved["instance_subnet_ids"] == net["private"]

    def test_private_subnets_without_nat_fail_naming_the_fix(self, moto_account: Any) -> None:
        """Only private subnets given, no NAT route and no public IPs: instances could never reach dnf or S3.

        Old code: accepted, and nothing ever turned healthy."""
        net = _custom_vpc(moto_account, nat=False)
        spec = _spec(network=NetworkSpec(vpc_id=net["vpc"], subnet_ids=tuple(net["private"]), internal=True))
        pf = preflight(spec)
        row = _check(pf, "instance subnets")
        assert not pf.ok and row["ok"] is False
        assert all(s in row["detail"] for s in net["private"]) and "NAT" in row["fix"]
        with pytest.raises(Exception, match="instance subnets"):
            pf.raise_for_failures()

    def test_public_subnets_that_do_not_map_public_ips_are_not_a_way_out(self, moto_account: Any) -> None:
        """An IGW route without public IPs on launch gives instances no internet (custom VPCs default to no IP)."""
        net = _custom_vpc(moto_account, nat=False, public_ip=False)
        pf = preflight(_spec(network=NetworkSpec(vpc_id=net["vpc"])))
        assert not pf.ok and _check(pf, "instance subnets")["ok"] is False
        assert _check(pf, "alb subnets")["ok"] is not False


def test_quota_too_small_fails(moto_account: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """max x vCPUs (x2 for a launch-before-terminate refresh) above quota L-1216C47A fails, naming the quota."""
    from botocore.stub import Stubber

    from mlops_lb.aws import _boto

    real = _boto.client

    def client(service: str, **kw: Any) -> Any:
        c = real(service, **kw)
        if service == "service-quotas":
            stub = Stubber(c)
            stub.add_response(
                "get_service_quota",
                {"Quota": {"Value": 16.0}},
                {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"},
            )
            stub.activate()
        return c

    monkeypatch.setattr("mlops_lb.aws._preflight.client", client)
    pf = preflight(_spec(capacity=CapacitySpec(min=1, desired=1, max=8)))
    row = _check(pf, "vcpu quota")
    assert row["ok"] is False and "32 > quota 16" in row["detail"] and "L-1216C47A" in row["fix"]


def test_credentials_that_fail_stop_before_any_other_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials: one failed 'credentials' check naming the fix, and nothing else is tried."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name=REGION)
        from botocore.stub import Stubber

        from mlops_lb.aws import _boto

        real = _boto.client

        def client(service: str, **kw: Any) -> Any:
            c = real(service, **kw)
            assert service == "sts", f"{service} called after failed credentials"
            stub = Stubber(c)
            stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "bad token")
            stub.activate()
            return c

        monkeypatch.setattr("mlops_lb.aws._preflight.client", client)
        pf = preflight(_spec(), session=session)
    assert [r["check"] for r in pf.rows] == ["credentials"] and "aws configure" in pf.rows[0]["fix"]


def test_gpu_types_get_the_nvidia_ami_and_need_its_root_volume(
    moto_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """g4dn has an NVIDIA GPU: the AMI is the DLAMI base OSS NVIDIA driver AL2023 (public SSM parameter, stubbed:
    moto does not carry it), and a root volume below its 75 GB snapshot fails naming the fix."""
    from botocore.stub import Stubber

    from mlops_lb.aws import _boto
    from mlops_lb.aws._preflight import GPU_AMI_PARAMETERS

    real = _boto.client
    asked: list[str] = []

    def client(service: str, **kw: Any) -> Any:
        c = real(service, **kw)
        if service == "ssm":
            stub = Stubber(c)
            stub.add_response(
                "get_parameter",
                {"Parameter": {"Name": GPU_AMI_PARAMETERS["x86_64"], "Value": "ami-0123456789abcdef0"}},
                {"Name": GPU_AMI_PARAMETERS["x86_64"]},
            )
            stub.activate()
            asked.append(service)
        return c

    monkeypatch.setattr("mlops_lb.aws._preflight.client", client)
    small = preflight(_spec(instance=InstanceSpec(type="g4dn.xlarge")))
    assert small.resolved["gpu"] and small.resolved["ami_parameter"] == GPU_AMI_PARAMETERS["x86_64"]
    assert _check(small, "root volume")["ok"] is False and "75" in _check(small, "root volume")["fix"]
    big = preflight(_spec(instance=InstanceSpec(type="g4dn.xlarge", root_volume_gb=100)))
    assert not [r for r in big.rows if r["check"] == "root volume"] and asked == ["ssm", "ssm"]


def test_a_refused_describe_call_is_a_failed_check_not_a_crash(
    moto_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DescribeRouteTables denied: the 'network' check fails naming the permissions; preflight returns."""
    from botocore.exceptions import ClientError

    from mlops_lb.aws import _boto

    real = _boto.client

    def client(service: str, **kw: Any) -> Any:
        c = real(service, **kw)
        if service == "ec2":

            def denied(**_: Any) -> Any:
                raise ClientError(
                    {"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeRouteTables"
                )

            c.describe_route_tables = denied
        return c

    monkeypatch.setattr("mlops_lb.aws._preflight.client", client)
    pf = preflight(_spec())
    row = _check(pf, "network")
    assert not pf.ok and "UnauthorizedOperation" in row["detail"] and "DescribeRouteTables" in row["fix"]
