"""Real AWS: a spot fleet under steady load loses one spot instance to an AWS FIS interruption without a client
error, and ``fleet.events()`` shows the agent's record of it (costs money for ~15 minutes; ``aws``-marked, so it is
deselected under CI=true and skipped without credentials, the pulumi CLI or the FIS role).

Run it (docs/spot.md, "Testing with AWS FIS", says which role and permissions)::

    AWS_PROFILE=<profile> AWS_REGION=us-east-1 MLOPS_LB_FIS_ROLE_ARN=arn:aws:iam::<acct>:role/<fis-role> \\
        .venv/bin/python -m pytest tests/aws/test_spot_fis.py -m aws -s

AWS's rules this test relies on (read 2026-12-07):

* FIS action ``aws:ec2:send-spot-instance-interruptions`` on targets of resource type ``aws:ec2:spot-instance``
  with ``durationBeforeInterruption`` (ISO 8601; PT2M gives the usual two-minute notice); the role FIS assumes
  needs ``ec2:DescribeInstances`` and ``ec2:SendSpotInstanceInterruptions``
  (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html, action syntax:
  https://docs.aws.amazon.com/fis/latest/userguide/action-sequence.html; AWS's own workshop template
  https://raw.githubusercontent.com/awslabs/ec2-spot-workshops/master/workshops/fis/fisspotinterruption.yaml).
* "Amazon EC2 notifies you that your Spot Instance will be interrupted in two minutes, and then, after two
  minutes, the instance is interrupted" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/initiate-a-spot-instance-interruption.html).

The request shape is checked without an account too: ``test_the_experiment_template_is_a_valid_request``
validates it against botocore's FIS model (Stubber), so a typo does not wait for a paid run to show.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

FIS_ROLE_ENV = "MLOPS_LB_FIS_ROLE_ARN"


def experiment_template(instance_arn: str, role_arn: str, name: str) -> dict[str, Any]:
    """CreateExperimentTemplate's arguments: interrupt exactly ``instance_arn`` with a two-minute notice."""
    return {
        "clientToken": uuid.uuid4().hex,
        "description": f"mlops_lb spot test {name}: interrupt one spot instance",
        "targets": {
            "SpotInstance": {
                "resourceType": "aws:ec2:spot-instance",
                "resourceArns": [instance_arn],
                "selectionMode": "ALL",
            }
        },
        "actions": {
            "interrupt": {
                "actionId": "aws:ec2:send-spot-instance-interruptions",
                "parameters": {"durationBeforeInterruption": "PT2M"},
                "targets": {"SpotInstances": "SpotInstance"},
            }
        },
        "stopConditions": [{"source": "none"}],
        "roleArn": role_arn,
        "tags": {"mlops-lb:test": name},
    }


def test_the_experiment_template_is_a_valid_request() -> None:
    """botocore's Stubber validates the parameters against the FIS API model (no call leaves the machine)."""
    import boto3
    from botocore.stub import Stubber

    fis = boto3.client("fis", region_name="us-east-1")
    args = experiment_template(
        "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
        "arn:aws:iam::123456789012:role/mlops-lb-fis",
        "t-0",
    )
    with Stubber(fis) as stub:
        stub.add_response("create_experiment_template", {"experimentTemplate": {"id": "EXT1"}}, args)
        assert fis.create_experiment_template(**args)["experimentTemplate"]["id"] == "EXT1"


def _have_credentials() -> bool:
    try:
        import boto3

        return boto3.session.Session().get_credentials() is not None
    except Exception:
        return False


@pytest.fixture
def aws_home() -> None:
    """Override the suite's fake-credentials fixture: the aws-marked test talks to the real account."""


@pytest.mark.aws
@pytest.mark.timeout(3600)
@pytest.mark.skipif(shutil.which("pulumi") is None, reason="the pulumi CLI is not installed")
def test_fis_interruption_under_load_costs_no_request(aws_home: None) -> None:
    if not _have_credentials():
        pytest.skip("no AWS credentials")
    role_arn = os.environ.get(FIS_ROLE_ENV)
    if not role_arn:
        pytest.skip(f"set {FIS_ROLE_ENV} to the IAM role FIS assumes (docs/spot.md, 'Testing with AWS FIS')")
    import boto3

    import mlops_lb as ml
    from mlops_lb.load import constant, run_load

    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = ml.FleetSpec(
        name=name,
        region=region,
        capacity={"min": 2, "desired": 2, "max": 3,
                  "spot": {"on_demand_base": 0, "on_demand_percent": 0, "capacity_rebalance": True,
                           "instance_types": ["t3.small", "t3a.small"]}},
        health_check={"interval_s": 10, "timeout_s": 5, "healthy_threshold": 2, "grace_period_s": 600},
        target_group={"deregistration_delay_s": 30},
    )  # fmt: skip
    fleet = ml.aws.AwsFleet(spec)
    fis = session.client("fis", region_name=region)
    template_id = None
    started = datetime.now(timezone.utc)
    try:
        url = fleet.launch(on_output=print)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and (fleet.status()["health"] == "healthy").sum() < 2:
            time.sleep(15)
        ids = fleet.status()["target"].tolist()
        ec2 = session.client("ec2", region_name=region)
        spot_ids = [
            i["InstanceId"]
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
            if i.get("InstanceLifecycle") == "spot"
        ]
        assert spot_ids, f"no spot instance among {ids}"
        victim = spot_ids[0]
        account = session.client("sts").get_caller_identity()["Account"]
        partition = session.get_partition_for_region(region)
        arn = f"arn:{partition}:ec2:{region}:{account}:instance/{victim}"
        # Load through the ALB from before the notice until well after the reclaim (2 min) and the replacement.
        result: dict[str, Any] = {}
        load = threading.Thread(
            target=lambda: result.setdefault(
                "r", run_load(url + "/predict", constant(5, 480), connections=8, timeout_s=10, progress=False)
            )
        )
        load.start()
        time.sleep(30)
        template_id = fis.create_experiment_template(**experiment_template(arn, role_arn, name))[
            "experimentTemplate"
        ]["id"]
        exp = fis.start_experiment(experimentTemplateId=template_id, clientToken=uuid.uuid4().hex)[
            "experiment"
        ]
        while fis.get_experiment(id=exp["id"])["experiment"]["state"]["status"] in (
            "pending",
            "initiating",
            "running",
        ):
            time.sleep(10)
        assert fis.get_experiment(id=exp["id"])["experiment"]["state"]["status"] == "completed"
        load.join(600)
        summary = result["r"].summary()
        failed = sum(n for kind, n in summary["errors_by_kind"].items() if kind != "cancelled")
        ev = fleet.events(start=started)
        mine = ev[ev["target"] == victim]
        print(mine.to_string())
    finally:
        if template_id is not None:
            fis.delete_experiment_template(id=template_id)
        fleet.destroy(confirm=name, on_output=print)
    assert failed == 0, summary["errors_by_kind"]
    assert (mine["kind"] == "spot_notice").any(), "the agent's notice record is missing from fleet.events()"
    assert mine["detail"].str.startswith("agent: deregistered:").any()
