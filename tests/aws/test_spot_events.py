"""AWS: spot interruptions in ``fleet.events()`` from the spot agent's own record, read from the instance console.

The record lines are the real agent's (mlops_lb/serving/spot_agent.py's SpotAgent with its ``_file_record``, the
writer the instance's unit uses for /var/log/mlops-lb-spot.jsonl and stdout; tests/aws/test_spot_sandbox.py
reads the same file on a sandboxed instance). On the console journald prefixes forwarded lines with
``[  seconds.micros] identifier[pid]: `` (systemd src/journal/journald-console.c, server_forward_console).
GetConsoleOutput answers base64 in ``Output``
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetConsoleOutput.html): botocore's Stubber checks
the request and response shapes against the EC2 model.

The group's activities come from a Stubber on DescribeScalingActivities; the join is by instance id and time
(the activity's Cause text here is the test's own, not AWS's wording, and nothing is asserted about it).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_boto_paths import REGION, cloud  # noqa: F401 - the moto account with the fleet's resources

from mlops_lb import FleetSpec
from mlops_lb.aws import AwsFleet
from mlops_lb.aws._spot_record import parse_agent_record
from mlops_lb.serving.spot_agent import INSTANCE_ACTION, REBALANCE, SpotAgent, _file_record

IID = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"


class FakeImds:
    """What IMDS serves on a spot instance after EC2 decided to interrupt it."""

    def __init__(self, notice_time: str) -> None:
        self.items = {
            REBALANCE: json.dumps({"noticeTime": notice_time}),
            INSTANCE_ACTION: json.dumps({"action": "terminate", "time": notice_time}),
        }

    def get(self, path: str) -> str | None:
        return self.items.get(path)


def agent_lines(tmp_path: Path) -> list[str]:
    """The record the agent writes for one notice (rebalance, notice, deregistered), as the .jsonl holds it."""
    path = tmp_path / "mlops-lb-spot.jsonl"
    agent = SpotAgent(FakeImds("2026-12-07T04:02:00Z"), deregister=lambda: None,  # type: ignore[arg-type]
                      record=_file_record(str(path)), poll_s=0.1)  # fmt: skip
    assert agent.poll_once() is True
    return path.read_text().splitlines()


def console(lines: list[str]) -> str:
    """A console: boot output, the agent's lines as journald forwards them, and two lines that are not records."""
    boot = ["[    0.000000] Linux version 6.1.0", "mlops-lb: bootstrap done"]
    fwd = [f"[   {61.5 + i:.6f}] python3[812]: {line}" for i, line in enumerate(lines)]
    junk = [
        '[   70.000000] python3[812]: {"event": "notice", "t": "soon", "detail": "a clock that is not one"}',
        '{"event": "rm -rf /", "t": 1796616001.0, "detail": "an event the agent never writes"}',
    ]
    return "\n".join(boot + fwd + junk) + "\n"


def test_parse_keeps_the_agents_lines_and_counts_the_bad_ones(tmp_path: Path) -> None:
    lines = agent_lines(tmp_path)
    assert [json.loads(x)["event"] for x in lines] == ["rebalance", "notice", "deregistered"]
    rows, bad = parse_agent_record(console(lines), IID)
    assert [r["kind"] for r in rows] == ["spot_agent", "spot_notice", "spot_agent"]
    assert bad == 2
    assert all(r["target"] == IID for r in rows)
    assert rows[2]["detail"].startswith("agent: deregistered: deregistered ")
    # the record's own time, not when it was read
    assert abs(rows[1]["timestamp"].timestamp() - json.loads(lines[1])["t"]) < 1e-6
    # the .jsonl file itself (no console prefix) reads the same
    assert [r["kind"] for r in parse_agent_record("\n".join(lines), IID)[0]] == [r["kind"] for r in rows]
    # a detail is data: control characters and length are cut
    evil = json.dumps({"event": "notice", "t": time.time(), "detail": "\x1b[2J" + "x" * 1000})
    [row], _ = parse_agent_record(evil, IID)
    assert "\x1b" not in row["detail"] and len(row["detail"]) < 400


def _stub_clients(monkeypatch: pytest.MonkeyPatch, console_text: str, acts: list[dict[str, Any]]) -> Any:
    import boto3
    from botocore.stub import Stubber

    from mlops_lb.aws import _boto

    asg = boto3.client("autoscaling", region_name=REGION)
    asg_stub = Stubber(asg)
    for _ in range(2):
        asg_stub.add_response("describe_scaling_activities", {"Activities": acts},
                              {"AutoScalingGroupName": "demo-asg-123"})  # fmt: skip
    asg_stub.activate()
    real = _boto.client

    def cw_client(service: str, **kw: Any) -> Any:
        return asg if service == "autoscaling" else real(service, **kw)

    ec2 = real("ec2", region=REGION)
    ec2_stub = Stubber(ec2)
    out = base64.b64encode(console_text.encode()).decode()
    # one read per instance: the second events() call finds both records complete or cached
    ec2_stub.add_response("get_console_output", {"InstanceId": IID, "Output": out},
                          {"InstanceId": IID, "Latest": True})  # fmt: skip
    ec2_stub.add_client_error("get_console_output", service_error_code="InvalidInstanceID.NotFound",
                              expected_params={"InstanceId": OTHER, "Latest": True})  # fmt: skip
    ec2_stub.activate()
    reads: list[str] = []  # every GetConsoleOutput the fleet makes, stubbed or not
    ec2.meta.events.register("provide-client-params.ec2.GetConsoleOutput",
                             lambda params, **_: reads.append(params["InstanceId"]))  # fmt: skip
    monkeypatch.setattr("mlops_lb.aws.cloudwatch.client", cw_client)
    monkeypatch.setattr(
        "mlops_lb.aws.stack.client", lambda service, **kw: ec2 if service == "ec2" else real(service, **kw)
    )
    return ec2_stub, reads


def test_events_carry_the_agents_record_joined_with_the_group(
    cloud: dict[str, Any],  # noqa: F811
    fake_cli: Any,
    fake_wheel: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = agent_lines(tmp_path)
    notice_t = datetime.fromtimestamp(json.loads(lines[1])["t"], timezone.utc)
    acts = [
        {"ActivityId": "a1", "AutoScalingGroupName": "demo-asg-123", "StatusCode": "Successful", "Progress": 100,
         "Cause": "test cause: the instance was interrupted", "StartTime": notice_t + timedelta(seconds=110),
         "Description": f"Terminating EC2 instance: {IID}"},
        {"ActivityId": "a2", "AutoScalingGroupName": "demo-asg-123", "StatusCode": "Successful", "Progress": 100,
         "Cause": "test cause: replacement", "StartTime": notice_t - timedelta(seconds=5),
         "Description": f"Launching a new EC2 instance: {OTHER}"},
    ]  # fmt: skip
    stub, reads = _stub_clients(monkeypatch, console(lines), acts)
    spec = FleetSpec(name="demo", region=REGION, target_group={"deregistration_delay_s": 60},
                     capacity={"min": 1, "desired": 2, "max": 5, "spot": {"instance_types": ["t3.small"]}})  # fmt: skip
    fleet = AwsFleet(spec, wheel=fake_wheel)
    ev = fleet.events()
    spot = ev[ev["kind"].isin(["spot_notice", "spot_agent"])]
    assert spot["target"].tolist() == [IID] * 3
    notice = spot[spot["kind"] == "spot_notice"].iloc[0]
    assert "interruption notice: terminate at 2026-12-07T04:02:00Z" in notice["detail"]
    assert (
        "the group: terminate at" in notice["detail"]
        and "test cause: the instance was interrupted" in notice["detail"]
    )
    # OTHER's console is gone (NotFound); the moto group's own instances have no stubbed console either
    assert ev.attrs["spot_agent_bad_lines"] == 2 and OTHER in ev.attrs["spot_agent_unreadable"]
    # the same events again: neither the finished record nor the unreadable consoles are read again so soon
    # (a third GetConsoleOutput is not stubbed and would fail the call)
    again = fleet.events()
    assert len(again[again["kind"] == "spot_notice"]) == 1
    stub.assert_no_pending_responses()
    n_reads = len(reads)
    assert IID in reads and OTHER in reads
    # the same group without capacity.spot reads no console (none is stubbed) and adds no agent rows (its
    # events() path, without the stack outputs' seconds of fake-CLI calls)
    plain = AwsFleet(FleetSpec(name="demo", region=REGION, capacity={"min": 1, "desired": 2, "max": 5}),
                     wheel=fake_wheel)  # fmt: skip
    acts_rows = [{"timestamp": notice_t, "kind": "terminate", "target": IID, "detail": "x"}]
    assert plain._spot_agent_rows(acts_rows, ev, start=None, end=None) == ([], 0, [])
    assert len(reads) == n_reads
