"""The successful path to the CLI boundary: a fake `pulumi` whose `up` succeeds and records the config.

launch() -> scale() -> a fresh AwsFleet on the same stack -> launch(): the spec/live difference goes through
on_output before anything is applied (old code put the YAML's min/max back silently). Plus the AMI pinned in
stack state, fleet.logs() through GetConsoleOutput, and errors that keep their type.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec
from mlops_lb.aws import AwsFleet
from mlops_lb.errors import MetricsError, ProvisionError

REGION = "us-east-1"
SPEC = FleetSpec(name="demo", region=REGION, capacity=CapacitySpec(min=1, desired=1, max=4))


@pytest.fixture
def up_ok(moto_account: Any, fake_cli: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_PULUMI_MODE", "up-ok")
    return fake_cli


def _ups(cli: Any) -> list[dict[str, Any]]:
    return [c for c in cli.calls() if c["args"][:1] == ["up"]]


def test_launch_scale_relaunch_shows_the_drift_before_applying(
    up_ok: Any, fake_wheel: Path, fake_wheelhouse: Any
) -> None:
    """scale(max=8) is kept in the stack; a fresh fleet's launch() with the YAML's max=4 says so first."""
    fleet = AwsFleet(SPEC, wheel=fake_wheel, wheelhouse=fake_wheelhouse)
    first: list[str] = []
    fleet.launch(on_output=first.append)
    assert not any("differs from the spec" in line for line in first)
    assert _ups(up_ok)[-1]["config"]["mlops-lb:maxSize"]["value"] == "4"

    fleet.scale(max=8)
    assert _ups(up_ok)[-1]["config"]["mlops-lb:maxSize"]["value"] == "8"

    fresh = AwsFleet(SPEC, wheel=fake_wheel, wheelhouse=fake_wheelhouse)  # a restarted kernel, the same YAML
    seen: list[str] = []
    fresh.launch(on_output=seen.append)
    calls = up_ok.calls()
    up_at = max(i for i, c in enumerate(calls) if c["args"][:1] == ["up"])
    text = "".join(seen)
    assert "maxSize: 8 (live) -> 4 (spec)" in text
    # shown before the update ran: the config still said 8 when the drift was read
    assert calls[up_at]["config"]["mlops-lb:maxSize"]["value"] == "4"
    assert text.index("differs from the spec") < text.index("Updating")


def test_failed_preflight_creates_nothing(
    moto_account: Any, fake_cli: Any, fake_wheel: Path, fake_wheelhouse: Any
) -> None:
    """A grace period shorter than the boot fails the preflight: ProvisionError listing it, no `pulumi up`."""
    spec = SPEC.replace(health_check={"grace_period_s": 30, "interval_s": 10, "healthy_threshold": 2})
    with pytest.raises(ProvisionError, match="grace period") as info:
        AwsFleet(spec, wheel=fake_wheel, wheelhouse=fake_wheelhouse).launch()
    assert "nothing was created" in str(info.value)
    assert not _ups(fake_cli) and not [c for c in fake_cli.calls() if c["args"][:1] == ["preview"]]


def test_ami_stays_pinned_until_update_ami(
    up_ok: Any, fake_wheel: Path, fake_wheelhouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's AMI (output ami_id) is reused even when SSM now names a newer one; update_ami() moves it."""
    monkeypatch.setenv(
        "FAKE_PULUMI_OUTPUTS",
        json.dumps(
            {
                "url": "http://x",
                "asg_name": "demo-asg",
                "ami_id": "ami-0aaaaaaaaaaaaaaaa",
                "architecture": "x86_64",
            }
        ),
    )
    fleet = AwsFleet(SPEC, wheel=fake_wheel, wheelhouse=fake_wheelhouse)
    assert fleet.preflight().resolved["ami_id"] == "ami-0aaaaaaaaaaaaaaaa"
    fleet._repin_ami = True
    assert fleet.preflight().resolved["ami_id"] != "ami-0aaaaaaaaaaaaaaaa"  # the latest from SSM
    fleet._repin_ami = False
    resolved_at_up: list[str] = []
    real_launch = AwsFleet.launch

    def spy(self: AwsFleet, **kw: Any) -> str:
        out = real_launch(self, **kw)
        resolved_at_up.append(str((self._resolved or {}).get("ami_id")))
        return out

    monkeypatch.setattr(AwsFleet, "launch", spy)
    fleet.update_ami()
    assert resolved_at_up[-1] != "ami-0aaaaaaaaaaaaaaaa" and not fleet._repin_ami


def test_logs_read_the_console_output(moto_account: Any, fake_cli: Any, fake_wheel: Path) -> None:
    """fleet.logs(id) decodes GetConsoleOutput and keeps the last `tail` lines."""
    import boto3

    from mlops_lb.errors import SpecError

    iid = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    fleet = AwsFleet(SPEC, wheel=fake_wheel)
    text = fleet.logs(iid, tail=1)
    assert text and "\n" not in text
    assert len(fleet.logs(iid, tail=200).splitlines()) >= 1
    with pytest.raises(SpecError):
        fleet.logs("not-an-instance")


def test_logs_decode_base64_from_a_stubbed_api(fake_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API returns base64 (botocore Stubber, the documented shape)."""
    from botocore.stub import Stubber

    from mlops_lb.aws import _boto

    console = "".join(f"line {i}\n" for i in range(300)) + "mlops-lb: bootstrap done\n"
    real = _boto.client

    def client(service: str, **kw: Any) -> Any:
        c = real(service, **kw)
        stub = Stubber(c)
        stub.add_response(
            "get_console_output",
            {"InstanceId": "i-0123456789abcdef0", "Output": base64.b64encode(console.encode()).decode()},
            {"InstanceId": "i-0123456789abcdef0", "Latest": True},
        )
        stub.activate()
        return c

    monkeypatch.setattr("mlops_lb.aws.stack.client", client)
    text = AwsFleet(SPEC, wheel=fake_wheel).logs("i-0123456789abcdef0", tail=2)
    assert text.splitlines() == ["line 299", "mlops-lb: bootstrap done"]


def test_metrics_errors_keep_their_type_code_and_hint(
    fake_cli: Any, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status()/events() let a MetricsError through with its AWS code and hint (old: ProvisionError(str(exc)))."""
    from mlops_lb.aws import cloudwatch

    def boom(*a: Any, **k: Any) -> Any:
        raise MetricsError("DescribeTargetHealth failed", code="AccessDenied", hint="allow it")

    monkeypatch.setattr(cloudwatch, "read_target_health", boom)
    monkeypatch.setattr(cloudwatch, "read_scaling_activities", boom)
    fleet = AwsFleet(SPEC, wheel=fake_wheel)
    with pytest.raises(MetricsError) as info:
        fleet.events()
    assert info.value.code == "AccessDenied" and info.value.hint == "allow it"


def test_scale_keeps_the_warm_pool(up_ok: Any, fake_wheel: Path, fake_wheelhouse: Any) -> None:
    """scale(max=...) rebuilds capacity from the old one: the warm pool must not be dropped (and so destroyed)."""
    from mlops_lb import WarmPoolSpec

    spec = SPEC.replace(capacity=CapacitySpec(min=1, desired=1, max=4, warm_pool=WarmPoolSpec(min_size=2)))
    fleet = AwsFleet(spec, wheel=fake_wheel, wheelhouse=fake_wheelhouse)
    fleet.scale(max=8)
    assert fleet.spec.capacity.max == 8 and fleet.spec.capacity.warm_pool == WarmPoolSpec(min_size=2)
