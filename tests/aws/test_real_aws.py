"""Real AWS, end to end (costs money for a few minutes; skipped unless credentials and the pulumi CLI exist).

Run with::

    AWS_PROFILE=<profile> AWS_REGION=us-east-1 .venv/bin/python -m pytest tests/aws/test_real_aws.py -m aws -s
"""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest


def _have_credentials() -> bool:
    try:
        import boto3

        return boto3.session.Session().get_credentials() is not None
    except Exception:
        return False


pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="the pulumi CLI is not installed"),
]


@pytest.fixture(autouse=True)
def aws_home() -> None:
    """Override the suite's fake-credentials fixture: this module talks to the real account."""


@pytest.mark.timeout(3600)
def test_launch_serve_scale_read_destroy() -> None:
    """A 1-instance fleet comes up healthy, serves /predict through the ALB, scales, reports metrics, is destroyed."""
    if not _have_credentials():
        pytest.skip("no AWS credentials")
    import boto3

    import mlops_lb as ml
    from mlops_lb.frames import check_events_frame, check_metric_frame, check_status_frame

    region = boto3.session.Session().region_name or "us-east-1"
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = ml.FleetSpec(
        name=name,
        region=region,
        capacity=ml.CapacitySpec(min=1, desired=1, max=2),
        health_check=ml.HealthCheckSpec(interval_s=10, timeout_s=5, healthy_threshold=2, grace_period_s=600),
        target_group=ml.TargetGroupSpec(deregistration_delay_s=5),
    )
    fleet = ml.aws.AwsFleet(spec)
    started = datetime.now(timezone.utc)
    try:
        url = fleet.launch(on_output=print)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            st = fleet.status()
            if (st["health"] == "healthy").any():
                break
            time.sleep(15)
        check_status_frame(st)
        assert (st["health"] == "healthy").any()
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            assert resp.status == 200 and resp.headers["X-Target-Id"].startswith("i-")
        fleet.scale(desired=2)
        check_events_frame(fleet.events(start=started))
        df = fleet.metrics(start=started - timedelta(minutes=5))
        check_metric_frame(df)
        assert df.attrs["api_calls"] >= 1
    finally:
        fleet.destroy(confirm=name, on_output=print)
    assert ml.aws.find_orphans(region=region, stacks=[]).query("stack == @name").empty
