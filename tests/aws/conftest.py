"""Shared fixtures of the AWS tests: Pulumi mocks that record every resource *and reject any resource that breaks
an AWS rule* (mlops_lb/_aws_rules.py, each rule with its doc source), a fake wheel, moto credentials."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCOUNT = "123456789012"
REGION = "us-east-1"

# The account the mocks pretend to be (moto's us-east-1 default VPC); importable by tests as _awsaccount.
sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None
from _awsaccount import OFFERED_AZS, RESOLVED, SUBNET_AZS, RuleViolation  # noqa: E402


@dataclass
class Recorded:
    """What a mocked Pulumi run registered: resources by type, ignore_changes by name, the program's outputs."""

    resources: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    ignore_changes: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    instance_type: str | None = None
    parents: dict[tuple[str, str], str] = field(default_factory=dict)
    aliases: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    group_target_groups: dict[str, list[str]] = field(default_factory=dict)  # ASG name -> attached TG ARNs

    def of_type(self, typ: str) -> list[tuple[str, dict[str, Any]]]:
        return [(n, i) for t, n, i in self.resources if t == typ]

    def one(self, typ: str, name: str | None = None) -> dict[str, Any]:
        found = [i for n, i in self.of_type(typ) if name is None or n == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def types(self) -> set[str]:
        return {t for t, _, _ in self.resources}


def _hex(seed: str, n: int = 16) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def make_mocks(rec: Recorded, *, region: str = REGION, strict: bool = True) -> Any:
    """Mocks that record resources and, when ``strict``, raise RuleViolation for one that breaks an AWS rule."""
    import pulumi

    from mlops_lb._aws_rules import partition_for_region, resource_violations

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = dict(args.inputs)
            if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
                rec.instance_type = inputs.get("instanceType")
            problems = resource_violations(
                args.typ,
                args.name,
                inputs,
                region=region,
                subnet_azs=SUBNET_AZS,
                offered_azs=OFFERED_AZS,
                instance_type=rec.instance_type,
                group_target_groups=rec.group_target_groups,
            )
            if problems and strict:
                rec.violations.extend(problems)
                raise RuleViolation(f"{args.typ} {args.name}: " + "; ".join(problems))
            rec.resources.append((args.typ, args.name, inputs))
            phys = f"{args.name}-{_hex(args.name, 7)}"
            state: dict[str, Any] = {**args.inputs, "id": f"{args.name}-id"}
            if args.typ == "aws:lb/loadBalancer:LoadBalancer":
                suffix = f"app/{phys}/{_hex(phys)}"
                state.update(
                    name=phys,
                    arnSuffix=suffix,
                    dnsName=f"{phys}-1234567890.{REGION}.elb.amazonaws.com",
                    arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/{suffix}",
                )
            elif args.typ == "aws:lb/targetGroup:TargetGroup":
                suffix = f"targetgroup/{phys}/{_hex(phys)}"
                state.update(
                    name=phys,
                    arnSuffix=suffix,
                    arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:{suffix}",
                )
            elif args.typ == "aws:s3/bucket:Bucket":
                # AWS gives a bucket the ARN of its region's partition (arn:aws-us-gov:s3:::... in GovCloud).
                state.update(bucket=phys, arn=f"arn:{partition_for_region(region)}:s3:::{phys}")
            elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
                state.update(latestVersion=1, id=f"lt-{_hex(phys)}")
            elif args.typ == "aws:autoscaling/group:Group":
                state.update(name=phys)
                rec.group_target_groups[phys] = list(inputs.get("targetGroupArns") or [])
            elif args.typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
                state.update(
                    name=phys, arn=f"arn:aws:iam::{ACCOUNT}:{args.typ.split(':')[-1].lower()}/{phys}"
                )
            elif args.typ == "aws:ec2/securityGroup:SecurityGroup":
                state.update(id=f"sg-{_hex(phys)}")
            elif args.typ == "aws:lb/listener:Listener":
                state.update(
                    arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/x/{_hex(phys)}"
                )
            elif args.typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
                state.update(name=phys)
            return state["id"], state

        def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
            rec.calls.append((args.token, dict(args.args)))
            if args.token == "aws:ec2/getVpc:getVpc":
                return {"id": "vpc-0default0", "cidrBlock": "172.31.0.0/16"}
            if args.token == "aws:ec2/getSubnets:getSubnets":
                return {"id": "subnets", "ids": sorted(SUBNET_AZS)[:3]}
            if args.token == "aws:ssm/getParameter:getParameter":
                return {
                    "id": args.args["name"],
                    "name": args.args["name"],
                    "value": "ami-0123456789abcdef0",
                    "type": "String",
                }
            return {}

    return Mocks()


@pytest.fixture(autouse=True, scope="session")
def _service_models_parsed_once() -> Iterator[None]:
    """boto3's default session shares the package's parsed service models (``mlops_lb.aws._boto``).

    moto resets boto3's default session for every ``mock_aws()``, so each ``boto3.client()`` a test made inside
    one parsed its service's model again (0.15-0.2 s of CPU per client; EC2's is megabytes of JSON). Credentials,
    region and profile are still read anew by every session, as the package's own clients do.
    """
    import boto3

    from mlops_lb.aws._boto import _new_session

    real = boto3.setup_default_session

    def setup_default_session(**kwargs: Any) -> None:
        if kwargs:
            real(**kwargs)
        else:
            boto3.DEFAULT_SESSION = _new_session()

    boto3.setup_default_session = setup_default_session  # type: ignore[assignment]
    yield
    boto3.setup_default_session = real  # type: ignore[assignment]


@pytest.fixture(scope="session")
def fake_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in wheel file: the program uploads it; nothing here installs it."""
    path = tmp_path_factory.mktemp("wheel") / "mlops_lb-0.1.0-py3-none-any.whl"
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    return path


def ensure_event_loop() -> None:
    """Give the main thread a current event loop again, as the interpreter starts with: Pulumi's mocks need one, and
    an earlier ``asyncio.run()`` in the same process (another test's) leaves none (it sets the loop to None)."""
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())


def run_declare(
    spec: Any,
    *,
    assets: Any,
    resolved: Any = RESOLVED,
    config: dict[str, str] | None = None,
    stack: str = "teststack",
    region: str = REGION,
) -> Recorded:
    """``declare_fleet`` under the strict mocks; a RuleViolation from a resource fails the run (raised here)."""
    import pulumi

    from mlops_lb.aws.program import declare_fleet

    rec = Recorded()
    mocks = make_mocks(rec, region=region)
    ensure_event_loop()

    class Monitor(pulumi.runtime.mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            if request.ignoreChanges:
                rec.ignore_changes[request.name] = list(request.ignoreChanges)
            rec.parents[(request.type, request.name)] = request.parent
            rec.aliases[(request.type, request.name)] = [str(a) for a in request.aliases]
            return super().RegisterResource(request)

    pulumi.runtime.set_mocks(mocks, project="mlops-lb", stack=stack, preview=False, monitor=Monitor(mocks))
    pulumi.runtime.set_all_config({"aws:region": region, **(config or {})})

    @pulumi.runtime.test
    def body() -> Any:
        outputs = declare_fleet(spec, assets=assets, resolved=resolved)
        return pulumi.Output.all(**outputs).apply(rec.outputs.update)

    try:
        body()
    finally:
        pulumi.runtime.set_all_config({})
    if rec.violations:
        raise RuleViolation("; ".join(rec.violations))
    return rec


@pytest.fixture
def run_program(fake_wheel: Path) -> Iterator[Callable[..., Recorded]]:
    """Run ``declare_fleet(spec)`` under the strict Pulumi mocks (preview=False) and return what it registered."""
    from mlops_lb.aws.program import Assets, _install_file, _model_file, check_aws_server

    def run(
        spec: Any, *, config: dict[str, str] | None = None, stack: str = "teststack", **kw: Any
    ) -> Recorded:
        check_aws_server(spec)  # what fleet_program refuses before any cloud call
        assets = kw.pop("assets", None) or Assets(
            wheel=fake_wheel, model=_model_file(spec), install=_install_file(spec)
        )
        return run_declare(spec, assets=assets, config=config, stack=stack, **kw)

    yield run


@pytest.fixture
def strict_mocks() -> tuple[type[Recorded], Callable[..., Any]]:
    """(Recorded, make_mocks): for tests that run a whole inline program (AwsFleet's own) under the strict mocks."""
    return Recorded, make_mocks


@pytest.fixture(autouse=True)
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own toolkit home and fake AWS credentials; no real state or account is touched."""
    home = tmp_path / "mlops-home"
    monkeypatch.setenv("MLOPS_LB_HOME", str(home))
    for var in (
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_CONFIG_PASSPHRASE_FILE",
        "AWS_PROFILE",
        "PULUMI_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    return home


FAKE_PULUMI = textwrap.dedent("""
    import json, os, sys
    args = [a for a in sys.argv[1:] if a != "--non-interactive"]
    log = os.environ["FAKE_PULUMI_LOG"]
    state_path = log + ".config.json"
    config = json.load(open(state_path)) if os.path.exists(state_path) else {}
    with open(log, "a") as f:
        f.write(json.dumps({"args": args, "cwd": os.getcwd(), "config": config,
                            "env": {k: v for k, v in os.environ.items()
                                    if k.startswith(("PULUMI_", "AWS_REGION", "AWS_PROFILE"))}}) + "\\n")
    mode = os.environ.get("FAKE_PULUMI_MODE", "ok")
    if args[:1] == ["version"]:
        print("v3.272.0"); sys.exit(0)
    if args[:2] == ["config", "set-all"]:
        # ... --stack NAME [--plaintext|--secret] key=value ...; keys without a namespace belong to the project
        for a in args[2:]:
            if "=" in a and not a.startswith("-"):
                k, v = a.split("=", 1)
                config[k if ":" in k else "mlops-lb:" + k] = {"value": v, "secret": False}
        json.dump(config, open(state_path, "w")); sys.exit(0)
    if args[:1] == ["config"] and "--json" in args:
        print(json.dumps(config)); sys.exit(0)
    if args[:2] == ["stack", "history"]:
        print(json.dumps([{"kind": "update", "startTime": "2026-12-01T10:00:00.000Z", "message": "",
                           "environment": {}, "config": {}, "result": "succeeded",
                           "endTime": "2026-12-01T10:01:00.000Z", "version": 1}])); sys.exit(0)
    if args[:1] in (["up"], ["preview"], ["destroy"], ["refresh"]):
        if mode == "conflict":
            sys.stderr.write("error: [409] Conflict: Another update is currently in progress.\\n"); sys.exit(255)
        sys.stdout.write("Updating (teststack)\\n    aws:lb:LoadBalancer demo creating\\n")
        if mode == "up-ok":  # a succeeding update (the real CLI would run the inline program here)
            sys.stdout.write("Resources:\\n    14 unchanged\\n"); sys.exit(0)
        sys.stderr.write("warning: something harmless\\nerror: creating ELBv2 Load Balancer: AccessDenied: "
                         "User is not authorized to perform: elasticloadbalancing:CreateLoadBalancer\\n")
        sys.exit(255)
    if args[:2] == ["stack", "output"] and os.environ.get("FAKE_PULUMI_OUTPUTS"):
        print(os.environ["FAKE_PULUMI_OUTPUTS"]); sys.exit(0)
    if args[:2] == ["stack", "output"]:
        print(json.dumps({"url": "http://demo-1.elb.amazonaws.com", "asg_name": "demo-asg-123",
                          "token": "[secret]" if "--show-secrets" not in args else "s3cr3t"}))
        sys.exit(0)
    sys.exit(0)
""")


class FakeCli:
    """The fake CLI's call log."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    """A `pulumi` on PATH that records every invocation (args, cwd, PULUMI_* env) into a JSON-lines log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "pulumi"
    exe.write_text(f"#!{sys.executable}\n{FAKE_PULUMI}")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "pulumi-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    return FakeCli(log)


def complete_default_vpc(ec2: Any) -> str:
    """Give moto's default VPC what AWS's has: an attached internet gateway and a 0.0.0.0/0 route to it in the
    main route table (https://docs.aws.amazon.com/vpc/latest/userguide/default-vpc.html); moto leaves both out."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    main = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    return vpc


@pytest.fixture
def moto_account() -> Iterator[Any]:
    """A moto account in us-east-1 whose default VPC looks like AWS's (six AZs; no t3.small in us-east-1e)."""
    from moto import mock_aws

    from mlops_lb.aws._boto import client

    with mock_aws():
        # the package's own client: it reuses botocore's parsed models across tests (boto3.client would parse
        # them anew, since moto resets boto3's default session for every mock)
        ec2 = client("ec2", region=REGION)
        complete_default_vpc(ec2)
        yield ec2


@pytest.fixture
def fake_wheelhouse(tmp_path: Path) -> Any:
    """A prebuilt wheelhouse (one stand-in wheel + requirements.txt): launch() never downloads from PyPI here."""
    from mlops_lb.aws.assets import Wheelhouse

    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (house / "requirements.txt").write_text("numpy==2.0.0\n")
    return Wheelhouse(path=house, requirements=("numpy==2.0.0",), digest="0" * 64)
