"""The boto3 fast paths of AwsFleet against moto: desired capacity, status, events, orphans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec
from mlops_lb.aws import AwsFleet, find_orphans, read_scaling_activities
from mlops_lb.errors import ProvisionError
from mlops_lb.frames import check_events_frame, check_status_frame

REGION = "us-east-1"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto account with a fleet's ALB, target group, launch template and 2-instance ASG."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        elb = boto3.client("elbv2", region_name=REGION)
        asg = boto3.client("autoscaling", region_name=REGION)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        tag = [{"Key": "mlops-lb:stack", "Value": "demo"}]
        lb = elb.create_load_balancer(Name="demo-abc1234", Subnets=subnets, Tags=tag)["LoadBalancers"][0]
        tg = elb.create_target_group(
            Name="demo-def5678", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance", Tags=tag
        )["TargetGroups"][0]
        ec2.create_launch_template(
            LaunchTemplateName="demo-lt",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.small"},
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName="demo-asg-123",
            LaunchTemplate={"LaunchTemplateName": "demo-lt", "Version": "$Latest"},
            MinSize=1,
            MaxSize=5,
            DesiredCapacity=2,
            VPCZoneIdentifier=",".join(subnets),
            TargetGroupARNs=[tg["TargetGroupArn"]],
        )
        outputs = {
            "url": f"http://{lb['DNSName']}",
            "alb_arn": lb["LoadBalancerArn"],
            "target_group_arn": tg["TargetGroupArn"],
            "asg_name": "demo-asg-123",
            "region": REGION,
        }
        monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", json.dumps(outputs))
        yield {"outputs": outputs, "asg": asg, "elb": elb, "ec2": ec2, "vpc": vpc}


@pytest.fixture
def fleet(cloud: dict[str, Any], fake_cli: Any, fake_wheel: Path) -> AwsFleet:
    """An AwsFleet whose stack outputs (from the fake CLI) name the moto resources."""
    return AwsFleet(
        FleetSpec(name="demo", region=REGION, capacity=CapacitySpec(min=1, desired=2, max=5)),
        wheel=fake_wheel,
    )


class TestDesiredCapacity:
    def test_scale_desired_sets_the_group_immediately(
        self, fleet: AwsFleet, cloud: dict[str, Any], fake_cli: Any
    ) -> None:
        """scale(desired=3) calls SetDesiredCapacity (no pulumi up) and the group now wants 3."""
        fleet.scale(desired=3)
        g = cloud["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=["demo-asg-123"])[
            "AutoScalingGroups"
        ][0]
        assert g["DesiredCapacity"] == 3
        assert not [c for c in fake_cli.calls() if c["args"][:1] == ["up"]]
        assert fleet.spec.capacity.desired == 3

    def test_scale_outside_bounds_is_a_spec_error_before_any_call(self, fleet: AwsFleet) -> None:
        """desired above max is refused by the spec's validation, not by AWS."""
        from mlops_lb.errors import SpecError

        with pytest.raises(SpecError, match=r"capacity\.desired"):
            fleet.scale(desired=9)

    def test_scale_checks_through_rescaled_before_any_call(
        self, cloud: dict[str, Any], fake_cli: Any, fake_wheel: Path
    ) -> None:
        """scale() validates with FleetSpec.rescaled like the local fleet: a rate target on a concurrency policy
        is refused before pulumi or boto3 runs, and a numpy desired reaches AWS as a plain int."""
        import numpy as np

        from mlops_lb.errors import SpecError

        spec = FleetSpec(
            name="demo",
            region=REGION,
            scaling={"metric": "concurrency_per_target", "target_concurrency_per_target": 4},
        )
        fleet = AwsFleet(spec, wheel=fake_wheel)
        calls = len(fake_cli.calls())
        with pytest.raises(SpecError, match="target_rps_per_target does not apply"):
            fleet.scale(target_rps_per_target=20)
        assert len(fake_cli.calls()) == calls and fleet.spec == spec
        fleet.scale(desired=np.int64(3))
        g = cloud["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=["demo-asg-123"])
        assert g["AutoScalingGroups"][0]["DesiredCapacity"] == 3
        assert type(fleet.spec.capacity.desired) is int

    def test_access_denied_is_a_provision_error_with_the_code(
        self, cloud: dict[str, Any], fake_cli: Any, fake_wheel: Path
    ) -> None:
        """A botocore ClientError becomes ProvisionError naming the AWS code, the original chained."""
        import boto3
        import botocore.exceptions
        from botocore.stub import Stubber

        stubbed = boto3.client("autoscaling", region_name=REGION)
        stub = Stubber(stubbed)
        stub.add_client_error(
            "set_desired_capacity",
            service_error_code="AccessDenied",
            service_message="User is not authorized to perform: autoscaling:SetDesiredCapacity",
            http_status_code=403,
        )
        stub.activate()

        class Session:  # the seam AwsFleet takes: anything with .client(service, region_name=, config=)
            region_name = REGION
            profile_name = None

            def client(self, service: str, **kw: Any) -> Any:
                return stubbed

        fleet = AwsFleet(FleetSpec(name="demo", region=REGION), wheel=fake_wheel, session=Session())
        with pytest.raises(ProvisionError) as info:
            fleet.scale(desired=1)
        assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
        assert "[AccessDenied]" in str(info.value) and "IAM" in str(info.value)


class TestStatusAndEvents:
    def test_status_has_one_row_per_instance_with_health(
        self, fleet: AwsFleet, cloud: dict[str, Any]
    ) -> None:
        """status() lists every ASG instance with address ip:port, in_service state and ALB health."""
        df = fleet.status()
        check_status_frame(df)
        assert len(df) == 2
        assert set(df["state"]) == {"in_service"}
        assert set(df["health"]) <= {"healthy", "unused"}
        assert "healthy" in set(df["health"])
        assert all(a.endswith(":8080") for a in df["address"])
        assert str(df["launched_at"].dtype) == "datetime64[us, UTC]" or "UTC" in str(df["launched_at"].dtype)
        assert set(df.columns) >= {"az", "lifecycle"}

    def test_events_include_target_health(self, fleet: AwsFleet) -> None:
        """events() merges scaling activities with the current health of each registered target."""
        df = fleet.events()
        check_events_frame(df)
        assert "healthy" in set(df["kind"])


class TestScalingActivities:
    def test_activities_become_scale_and_launch_events(self) -> None:
        """One capacity change becomes one scale_out event plus a launch event per instance, Cause in detail."""
        import boto3
        from botocore.stub import Stubber

        cl = boto3.client("autoscaling", region_name=REGION)
        t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
        cause = (
            "At 2026-01-01T10:00:00Z a monitor alarm TargetTracking-AlarmHigh in state ALARM triggered policy "
            "demo-requests changing the desired capacity from 1 to 3. At 2026-01-01T10:00:05Z an instance was "
            "started in response to a difference between desired and actual capacity, increasing the capacity from 1 to 3."
        )
        acts = [
            {
                "ActivityId": f"a{i}",
                "AutoScalingGroupName": "demo-asg",
                "Cause": cause,
                "StartTime": t0,
                "StatusCode": "Successful",
                "Progress": 100,
                "Description": f"Launching a new EC2 instance: i-0abc00000000000{i}",
            }
            for i in (1, 2)
        ]
        acts.append(
            {
                "ActivityId": "a3",
                "AutoScalingGroupName": "demo-asg",
                "StartTime": t0 + timedelta(minutes=5),
                "StatusCode": "Successful",
                "Progress": 100,
                "Cause": "At 2026-01-01T10:05:00Z a monitor alarm AlarmLow triggered policy demo-requests changing the desired capacity from 3 to 2.",
                "Description": "Terminating EC2 instance: i-0abc000000000001",
            }
        )
        with Stubber(cl) as stub:
            stub.add_response(
                "describe_scaling_activities",
                {"Activities": acts[:2], "NextToken": "p2"},
                {"AutoScalingGroupName": "demo-asg"},
            )
            stub.add_response(
                "describe_scaling_activities",
                {"Activities": acts[2:]},
                {"AutoScalingGroupName": "demo-asg", "NextToken": "p2"},
            )
            df = read_scaling_activities("demo-asg", autoscaling_client=cl)
        check_events_frame(df)
        assert list(df["kind"]) == ["scale_out", "launch", "launch", "scale_in", "terminate"]
        assert df.iloc[0]["detail"].startswith("desired 1 -> 3")
        assert df.iloc[1]["target"] == "i-0abc000000000001" and "TargetTracking" in df.iloc[1]["detail"]


class TestOrphans:
    def test_resources_of_vanished_stacks_are_listed(self, cloud: dict[str, Any]) -> None:
        """find_orphans lists tagged resources whose stack is not among the live ones, and nothing else."""
        import boto3

        boto3.client("ec2", region_name=REGION).create_security_group(
            GroupName="old",
            Description="old",
            VpcId=cloud["vpc"],
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": [{"Key": "mlops-lb:stack", "Value": "gone"}]}
            ],
        )
        df = find_orphans(region=REGION, stacks=["demo"])
        assert list(df["stack"]) == ["gone"]
        assert df.iloc[0]["service"] == "ec2" and df.iloc[0]["region"] == REGION
        assert df.iloc[0]["resource_type"] == "security-group"
        assert find_orphans(region=REGION, stacks=["demo", "gone"]).empty

    def test_an_orphaned_bucket_is_typed_bucket_not_named(self, cloud: dict[str, Any]) -> None:
        """arn:aws:s3:::name has no type part: the bucket's name was reported as its type."""
        import boto3

        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="mlops-lb-old-assets")
        s3.put_bucket_tagging(
            Bucket="mlops-lb-old-assets", Tagging={"TagSet": [{"Key": "mlops-lb:stack", "Value": "gone2"}]}
        )
        df = find_orphans(region=REGION, stacks=["demo"])
        (row,) = df[df["stack"] == "gone2"].to_dict("records")
        assert (row["service"], row["resource_type"]) == ("s3", "bucket")

    def test_live_stacks_are_read_from_the_local_file_backend(
        self, cloud: dict[str, Any], aws_home: Path
    ) -> None:
        """Without stacks=, the live stacks are those in the local file backend: none here, so all are orphans."""
        df = find_orphans(region=REGION)
        assert set(df["stack"]) == {"demo"} and len(df) == 2
        (aws_home / "pulumi" / ".pulumi" / "stacks" / "mlops-lb").mkdir(parents=True)
        (aws_home / "pulumi" / ".pulumi" / "stacks" / "mlops-lb" / "demo.json").write_text("{}")
        assert find_orphans(region=REGION).empty
