"""Nobody let in: loopback-only sockets, a private admin socket, secrets that never show, a closed AWS program.

Already pinned elsewhere and not repeated here: a quiet fleet binds 127.0.0.1 and keeps its admin socket 0600 in a
0700 directory (tests/local/test_local_fleet.py); instance ingress on the app port names a security group, IMDSv2
is required, root volumes are encrypted, SSH is closed without ``ssh_cidrs``, the assets bucket is private and
encrypted (tests/aws/test_program.py); a generated passphrase is a 0600 file passed by path (tests/aws/test_stack.py).
This file adds what those do not cover: the same properties *after* faults (a restarted HAProxy, a replaced
worker), every process of the fleet's process groups, secrets in reprs/logs/exceptions of the whole front door,
and the program's exact security-group wiring.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from _reliability import events_of, fault_spec, wait_for

import mlops_lb as ml
from mlops_lb.errors import MlopsLbError

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-fakeSECRETvalue-0001",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEfakeSESSIONtoken-0002",
    "PULUMI_CONFIG_PASSPHRASE": "correct-horse-fake-PASSPHRASE-0003",
    "PULUMI_ACCESS_TOKEN": "pul-fakeACCESStoken-0004",
}


def _group_processes(pgids: set[int]) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) in pgids:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def test_sockets_stay_loopback_and_admin_socket_private_after_faults(fleet_factory, record) -> None:
    """After a HAProxy restart and a worker replacement, every process in the fleet's process groups listens on
    127.0.0.1 only (TCP and UDP, from the socket table), and the recreated admin socket is still 0600 in 0700."""
    fleet = fleet_factory(fault_spec("sec"))
    hp = fleet._haproxy
    assert hp is not None and hp.pid is not None
    os.kill(hp.pid, signal.SIGKILL)
    wait_for(lambda: len(events_of(fleet, "balancer_restart")), 10, "a balancer_restart")
    victim = fleet.status().iloc[0]
    os.killpg(int(victim["pid"]), signal.SIGKILL)

    def replaced() -> bool:
        st = fleet.status()
        return victim["target"] not in set(st["target"]) and (st["health"] == "healthy").sum() == 2

    wait_for(replaced, 30, "a healthy replacement")
    pgids = {int(p) for p in fleet.status()["pid"]} | {int(hp.pid)}
    procs = _group_processes(pgids)
    socks = [c for p in procs for c in p.net_connections(kind="inet")]
    listening = [c for c in socks if c.status == psutil.CONN_LISTEN]
    udp_bound = [c for c in socks if c.type == 2 and c.laddr]  # SOCK_DGRAM
    record(processes=len(procs), listening=len(listening), udp=len(udp_bound))
    assert len(procs) >= 3 and len(listening) >= 3  # HAProxy and two workers at least
    assert {c.laddr.ip for c in listening + udp_bound} == {"127.0.0.1"}
    assert stat.S_IMODE(os.stat(fleet.work_dir).st_mode) == 0o700
    sock = fleet.work_dir / "admin.sock"
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(fleet.work_dir / "haproxy.cfg").st_mode) == 0o600


# --------------------------------------------------------------------------- secrets never shown
@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Fake credentials and a passphrase in the environment, a private toolkit home, no pulumi CLI on PATH."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE0005")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLOPS_LB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # whatever else, no pulumi
    return SECRETS


def _leaks(text: str) -> list[str]:
    return [k for k, v in SECRETS.items() if v in text]


def test_secrets_never_appear_in_reprs_logs_or_errors(
    secret_env: dict[str, str], caplog: pytest.LogCaptureFixture, tmp_path: Path, server
) -> None:
    """With credentials and the Pulumi passphrase in the environment, none of them shows in the repr of an
    AwsFleet, its workspace settings, a spec, a load result or a bundle, in any DEBUG log line, in the text of
    the errors the front door raises, or in the files the toolkit writes."""
    from mlops_lb.aws import AwsFleet, read_fleet_metrics
    from mlops_lb.bundle import RunBundle
    from mlops_lb.load import constant, run_load

    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    spec = ml.FleetSpec(name="demo", region="us-east-1")
    fleet = AwsFleet(spec)
    seen += [repr(fleet), repr(spec), spec.to_yaml(), str(fleet.env_vars()), repr(fleet.stack_config())]
    seen.append(repr(fleet.workspace_options()))
    errors: list[Callable[[], Any]] = [
        lambda: fleet.launch(),  # no pulumi CLI: BackendUnavailable
        lambda: fleet.destroy(confirm="nope"),
        lambda: read_fleet_metrics(load_balancer_arn="x", target_group_arn="y", asg_name="z"),
        lambda: ml.FleetSpec.from_yaml("name: demo\ncapacity: {max: [\n"),
        lambda: ml.open_fleet(spec, backend="nope"),  # type: ignore[arg-type]
    ]
    for make in errors:
        with pytest.raises((MlopsLbError, ValueError)) as info:
            make()
        seen += [str(info.value), repr(info.value), str(info.value.__cause__ or "")]
    bundle = RunBundle.create(root=tmp_path / "runs", name="s", spec=spec)
    result = run_load(
        server.url + "/predict", constant(20, 0.5), progress=False, max_lag_p99_s=10.0, bundle=bundle
    )
    seen += [repr(result), result._repr_html_(), str(result.summary()), repr(RunBundle.load(bundle.path))]
    files = [
        p for root in (tmp_path, Path(os.environ["MLOPS_LB_HOME"])) for p in root.rglob("*") if p.is_file()
    ]
    seen += [p.read_bytes().decode("latin-1") for p in files]
    seen.append(caplog.text)
    leaks = {k for text in seen for k in _leaks(text)}
    assert not leaks, f"secret values leaked: {sorted(leaks)}"
    assert len(caplog.records) > 0 and len(files) > 0  # the check looked at something


# --------------------------------------------------------------------------- the Pulumi program, closed
def _aws_conftest() -> Any:
    """tests/aws/conftest.py (its Pulumi mocks), imported by path under a private name: tests/ is no package."""
    name = "_reliability_aws_conftest"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "aws" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _run_program(spec: ml.FleetSpec, wheel: Path) -> Any:
    """``declare_fleet(spec)`` under tests/aws's recording mocks (preview=False), as tests/aws's run_program."""
    import pulumi

    from mlops_lb.aws.program import _model_file, declare_fleet

    aws_conftest = _aws_conftest()
    rec = aws_conftest.Recorded()
    # without it, this test failed whenever a test that ran asyncio.run() had run before it in the same worker
    aws_conftest.ensure_event_loop()
    pulumi.runtime.set_mocks(aws_conftest.make_mocks(rec), project="mlops-lb", stack="sec", preview=False)

    @pulumi.runtime.test
    def body() -> Any:
        outputs = declare_fleet(spec, wheel=wheel, model=_model_file(spec))
        return pulumi.Output.all(**outputs).apply(rec.outputs.update)

    body()
    return rec


def _mock_sg_id(resource_name: str) -> str:
    """The id tests/aws's mocks give a security group: ``sg-`` + hash of its physical name."""
    h = _aws_conftest()._hex
    return f"sg-{h(resource_name + '-' + h(resource_name, 7))}"


PROGRAM_SPECS = {
    "default": ml.FleetSpec(name="demo"),
    "ssh-and-tls": ml.FleetSpec(
        name="sec",
        instance=ml.InstanceSpec(ssh_cidrs=("198.51.100.7/32",)),
        network=ml.NetworkSpec(
            client_cidrs=("203.0.113.0/24",),
            certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
        ),
        target_group=ml.TargetGroupSpec(port=9000),
    ),
}


@pytest.mark.parametrize("key", list(PROGRAM_SPECS))
def test_program_opens_instances_to_the_alb_only(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instance ingress names exactly the ALB's security group on the app port (no CIDR, no IPv6, no other
    port but listed SSH sources), no separate rule resource widens it, the launch template has no key pair,
    requires IMDSv2 with hop limit 1, and encrypts every volume."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    wheel = tmp_path / "mlops_lb-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    spec = PROGRAM_SPECS[key]
    rec = _run_program(spec, wheel)
    sgs = dict(rec.of_type("aws:ec2/securityGroup:SecurityGroup"))
    name = spec.name
    alb_sg_id, inst_sg_id = _mock_sg_id(f"{name}-alb"), _mock_sg_id(f"{name}-instances")
    inst = sgs[f"{name}-instances"]
    app = [r for r in inst["ingress"] if r["fromPort"] == spec.target_group.port]
    assert len(app) == 1 and app[0]["securityGroups"] == [alb_sg_id]
    assert not app[0].get("cidrBlocks") and not app[0].get("ipv6CidrBlocks")
    others = [r for r in inst["ingress"] if r is not app[0]]
    assert all(r["fromPort"] == r["toPort"] == 22 for r in others)
    assert [c for r in others for c in r.get("cidrBlocks") or []] == list(spec.instance.ssh_cidrs)
    for r in inst["ingress"]:
        assert "0.0.0.0/0" not in (r.get("cidrBlocks") or []) and "::/0" not in (
            r.get("ipv6CidrBlocks") or []
        )
        assert r["protocol"] == "tcp"
    widening = {
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    }
    assert not widening & rec.types
    (lt,) = [i for _, i in rec.of_type("aws:ec2/launchTemplate:LaunchTemplate")]
    assert not lt.get("keyName")
    assert (
        lt["metadataOptions"]["httpTokens"] == "required"
        and lt["metadataOptions"]["httpPutResponseHopLimit"] == 1
    )
    assert lt["vpcSecurityGroupIds"] == [inst_sg_id]
    assert all(b["ebs"]["encrypted"] == "true" for b in lt["blockDeviceMappings"])
    assert not lt.get("networkInterfaces")  # no interface that could carry another security group
    alb = sgs[f"{name}-alb"]
    assert {c for r in alb["ingress"] for c in r["cidrBlocks"]} == set(spec.network.client_cidrs)
    assert {r["fromPort"] for r in alb["ingress"]} <= {80, 443}


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_spec_refuses_ssh_open_to_the_world(cidr: str) -> None:
    """SSH from anywhere is refused by the spec, naming instance.ssh_cidrs[0]."""
    with pytest.raises(ml.SpecError) as info:
        ml.InstanceSpec(ssh_cidrs=(cidr,))
    assert info.value.field == "instance.ssh_cidrs[0]"
