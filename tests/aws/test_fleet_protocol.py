"""AwsFleet's side of the Fleet protocol (capacity, decisions) against moto and botocore's Stubber."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from test_boto_paths import cloud, fleet  # noqa: F401 - fixtures shared with the boto fast paths

from mlops_lb.aws import AwsFleet
from mlops_lb.errors import MetricsError
from mlops_lb.fleet import Capacity, Fleet


def test_capacity_is_the_live_group(fleet: AwsFleet, cloud: dict[str, Any]) -> None:  # noqa: F811
    """capacity reads the group itself (DescribeAutoScalingGroups), so a change made by target tracking shows."""
    assert fleet.capacity == Capacity(1, 2, 5)
    cloud["asg"].set_desired_capacity(AutoScalingGroupName="demo-asg-123", DesiredCapacity=4)
    assert fleet.capacity.desired == 4 and isinstance(fleet.capacity.desired, int)
    assert isinstance(fleet, Fleet)  # main's protocol gained `closed`; AwsFleet lacked it
    assert fleet.metric_period_s == 60.0  # CloudWatch's one-minute datapoints, not spec.local.period_s


def test_closed_after_close(fleet: AwsFleet) -> None:  # noqa: F811
    """closed is False until close() forgets the handle (the stack itself keeps running on AWS)."""
    assert fleet.closed is False
    fleet.close()
    assert fleet.closed is True


def test_decisions_are_the_groups_capacity_changes(fleet: AwsFleet, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """decisions() has the local fleet's columns, one row per capacity change named in a scaling activity's cause
    (AWS keeps no record of periods where nothing changed)."""
    import boto3
    from botocore.stub import Stubber

    cl = boto3.client("autoscaling", region_name="us-east-1")
    t0 = datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    cause = (
        "At 2026-01-01T10:00:00Z a monitor alarm TargetTracking-AlarmHigh triggered policy demo-requests "
        "changing the desired capacity from 2 to 4."
    )
    acts = [
        {
            "ActivityId": f"a{i}",
            "AutoScalingGroupName": "demo-asg-123",
            "Cause": cause,
            "StartTime": t0,
            "StatusCode": "Successful",
            "Progress": 100,
            "Description": f"Launching a new EC2 instance: i-0abc00000000000{i}",
        }
        for i in (1, 2)
    ]
    monkeypatch.setattr("mlops_lb.aws.cloudwatch.client", lambda *a, **k: cl)
    with Stubber(cl) as stub:
        stub.add_response(
            "describe_scaling_activities", {"Activities": acts}, {"AutoScalingGroupName": "demo-asg-123"}
        )
        d = fleet.decisions()
    from mlops_lb.frames import DECISION_COLUMNS
    from mlops_lb.local import autoscaler

    # The contract moved to frames; the old import still works.
    assert autoscaler.DECISION_COLUMNS is DECISION_COLUMNS
    assert list(d.columns) == list(DECISION_COLUMNS) and len(d) == 1
    row = d.iloc[0]
    assert (row["action"], row["desired_before"], row["desired_after"]) == ("scale_out", 2, 4)
    assert "TargetTracking-AlarmHigh" in row["reason"] and "capacity changes only" in d.attrs["source"]


def test_a_failed_read_stays_a_metrics_error(fleet: AwsFleet, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """events() no longer re-wraps the reader's MetricsError as ProvisionError(str(exc)): code and hint survive."""
    import boto3
    from botocore.stub import Stubber

    cl = boto3.client("autoscaling", region_name="us-east-1")
    monkeypatch.setattr("mlops_lb.aws.cloudwatch.client", lambda *a, **k: cl)
    with Stubber(cl) as stub:
        stub.add_client_error(
            "describe_scaling_activities", service_error_code="AccessDenied", http_status_code=403
        )
        with pytest.raises(MetricsError) as info:
            fleet.events()
    assert info.value.code == "AccessDenied"
