"""The Pulumi inline program that declares one fleet on AWS (pulumi-aws only, no awsx).

What it builds, and the AWS rules behind each choice (DESIGN §4; the limits live in ``mlops_lb/_aws_rules.py``):

* security groups: the ALB takes 80 (and 443 with a certificate) from ``network.client_cidrs``; instances take
  the app port **only from the ALB's security group**; SSH only when ``instance.ssh_cidrs`` lists sources;
* an ALB on exactly one subnet per AZ, a target group (GET health check, deregistration delay, slow start,
  algorithm) and listeners (HTTP forward; with a certificate HTTPS forward + HTTP->HTTPS redirect);
* a private, encrypted S3 bucket holding content-addressed assets (this package's wheel, the pinned wheelhouse,
  a user model), readable only by the instances' role; managed policies in the region's partition;
* a **LaunchTemplate** (accounts made since 2024-10-01 cannot create launch configurations): IMDSv2 required,
  encrypted gp3 root volume, user data from :mod:`mlops_lb.aws.userdata`, byte-identical for the same inputs;
* an ASG with **ELB health checks** and a grace period, ``1Minute`` group metrics, ``ignore_changes`` on desired
  capacity, and an instance refresh that keeps capacity (min healthy 100 %, max healthy 200 %: launch before
  terminate); optionally a warm pool with its ``EC2_INSTANCE_LAUNCHING`` lifecycle hook;
* target tracking on **ALBRequestCountPerTarget**, a per-*minute* value: ``target_rps_per_target * 60``;
* after the first ``fleet.rollout()`` (stack config ``rollout``), two slots behind the one ALB: slot b's target
  group, template, group and policy, a weighted forward and per-slot guard alarms (:mod:`mlops_lb.aws._rollout`).

Network, AMI and zones come from the preflight's ``resolved`` dict (explicit ids, no lookups in the program).
Stack config (``minSize``, ``maxSize``, ``targetRpsPerTarget``) overrides the spec, so ``AwsFleet.scale()``
changes those, and only the group and the policy, without a new spec.

Example::

    from pulumi import automation as auto
    stack = auto.create_or_select_stack(stack_name="demo", project_name="mlops-lb",
                                        program=fleet_program(FleetSpec(name="demo"), resolved=pf.resolved))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Which env names hold secrets is decided in one place for every backend and every display.
from .._redact import is_secret_name
from ..errors import ProvisionError, SpecError
from ..spec import FleetSpec
from . import _router
from ._parts import (
    ENABLED_METRICS,
    REFRESH_PREFERENCES,
    _assets_bucket,
    _Ctx,
    _group,
    _instance_role,
    _launch_template,
    _load_balancer,
    _scaling,
    _security_groups,
    algorithm_settings,
)
from ._spot import spot_role_policy
from .assets import Assets, Wheelhouse, build_wheel

__all__ = [
    "ENABLED_METRICS",
    "REFRESH_PREFERENCES",
    "STACK_TAG",
    "Assets",
    "algorithm_settings",
    "build_wheel",
    "declare_fleet",
    "fleet_program",
]

log = logging.getLogger(__name__)

STACK_TAG = "mlops-lb:stack"


def _model_file(spec: FleetSpec) -> Path | None:
    src = spec.model.source
    if src == "demo" or (src == "demo.onnx" and not Path(src).is_file()):  # bundled with the package
        return None
    if src.startswith("s3://"):  # the instances download it with their role; the stack does not copy it
        bucket, _, key = src[len("s3://") :].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise SpecError("model.source", f"must be s3://<bucket>/<key> of one object (got {src!r})")
        return None
    if "://" in src:
        raise SpecError(
            "model.source",
            f"must be 'demo', a local file (uploaded to the stack's bucket) or s3://bucket/key on AWS "
            f"(got {src!r}; download it first)",
        )
    path = Path(src).expanduser()
    if not path.is_file():
        raise SpecError("model.source", f"file does not exist (got {src!r})")
    return path


def _install_file(spec: FleetSpec) -> Path | None:
    """``server.install`` as the one file to upload (a project directory becomes a reproducible archive)."""
    from .assets import build_project_archive

    inst = spec.server.install
    if inst is None:
        return None
    path = Path(inst).expanduser()
    kind = spec.server.install_kind
    if kind == "project":
        if not path.is_dir():
            raise SpecError("server.install", f"project directory does not exist (got {inst!r})")
        return build_project_archive(path)
    if not path.is_file():
        raise SpecError("server.install", f"{kind} file does not exist (got {inst!r})")
    return path


def check_aws_server(spec: FleetSpec) -> None:
    """What the AWS backend refuses in ``server`` before any cloud call (SpecError naming the field and fix)."""
    _router.check_routing(spec)  # routing: stickiness limits, the router tier's rules
    srv = spec.server
    if srv.kind == "command" and srv.image is None and srv.install is None:
        log.info(
            "server.command without server.install: the instance's venv has only what the command brings"
        )
    if spec.scaling.metric == "concurrency_per_target" and srv.default_metrics_path is None:
        raise SpecError(
            "server.metrics_path",
            "is required with scaling.metric concurrency_per_target for your own server: the instances' agent "
            "scrapes it for vllm:num_requests_running + vllm:num_requests_waiting (e.g. metrics_path: /metrics)",
        )
    if srv.install is not None and srv.image is not None:
        raise SpecError("server.install", "applies to server.command; an image brings its own software")
    for name, ref in (getattr(srv, "secrets", None) or {}).items():  # helper security's spec field
        if "env" in ref:
            raise SpecError(
                f"server.secrets.{name}.env",
                "reads the launching process's environment, which only the local fleet has: on AWS the "
                "instances read secrets themselves at boot; use {ssm: /param/name} or "
                "{secretsmanager: arn-or-name, key: optional-json-key}",
            )
    for name in srv.env:
        if is_secret_name(name):  # the value itself is never quoted: it would reach logs and reports
            raise SpecError(
                f"server.env.{name}",
                "looks like a secret, and the AWS backend writes server.env into the launch template's user data, "
                "which anyone allowed ec2:DescribeLaunchTemplateVersions (and the instance's IMDS) can read: store "
                f"it in SSM Parameter Store or Secrets Manager and reference it as server.secrets.{name} "
                "({ssm: /param/name} or {secretsmanager: arn-or-name})",
            )


def fleet_program(
    spec: FleetSpec,
    *,
    wheel: str | os.PathLike[str] | None = None,
    resolved: Mapping[str, Any] | None = None,
    wheelhouse: Wheelhouse | None = None,
    python_version: str | None = None,
) -> Callable[[], None]:
    """The inline Pulumi program (a no-argument function) that declares the whole fleet for ``spec``.

    ``wheel`` is the mlops_lb wheel to install on instances; by default ``$MLOPS_LB_WHEEL`` or one zipped
    reproducibly from the installed package. ``resolved`` is :attr:`Preflight.resolved`. ``python_version`` is the
    instances' Python when there is no wheelhouse to carry it (the stack's pinned one; default: from this launcher).

    Example::

        program = fleet_program(FleetSpec(name="demo"), wheel="dist/mlops_lb-0.1.0-py3-none-any.whl")
    """
    if not isinstance(spec, FleetSpec):
        raise SpecError("spec", f"must be a FleetSpec (got {type(spec).__name__})")
    model = _model_file(spec)  # fail on a bad model path before any cloud call
    check_aws_server(spec)
    install = _install_file(spec)
    wheel_arg = wheel if wheel is not None else os.environ.get("MLOPS_LB_WHEEL") or None

    def program() -> None:
        import pulumi

        assets = Assets(
            wheel=Path(wheel_arg) if wheel_arg else build_wheel(),
            model=model,
            wheelhouse=wheelhouse,
            install=install,
            python_version=python_version,
        )
        for key, value in declare_fleet(spec, assets=assets, resolved=resolved).items():
            pulumi.export(key, value)

    program.__name__ = f"fleet_program_{spec.name.replace('-', '_')}"
    return program


def _import_pulumi_aws() -> Any:
    import warnings

    # pulumi_aws loads submodules on first attribute access, and some (ec2) warn at import about resources
    # we never use; a test suite that turns warnings into errors would fail on the provider's own code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pulumi_aws as aws

        for sub, attr in (
            ("autoscaling", "Group"),
            ("ec2", "LaunchTemplate"),
            ("iam", "Role"),
            ("lb", "LoadBalancer"),
            ("s3", "Bucket"),
            ("ssm", "get_parameter"),
        ):
            getattr(getattr(aws, sub), attr)
    return aws


def _legacy_resolution(aws: Any, spec: FleetSpec) -> dict[str, Any]:
    """Lookups for callers without a preflight (AwsFleet always passes one): default VPC or the named subnets."""
    net = spec.network
    if net.vpc_id and net.subnet_ids:
        return {
            "vpc_id": net.vpc_id,
            "alb_subnet_ids": list(net.subnet_ids),
            "instance_subnet_ids": list(net.subnet_ids),
            "ami_id": spec.instance.ami,
        }
    vpc = aws.ec2.get_vpc(id=net.vpc_id) if net.vpc_id else aws.ec2.get_vpc(default=True)
    filters = [{"name": "vpc-id", "values": [vpc.id]}]
    if not net.vpc_id:
        filters.append({"name": "default-for-az", "values": ["true"]})
    subnets = aws.ec2.get_subnets(filters=filters).ids
    if len(subnets) < 2:
        raise ProvisionError(
            f"the VPC {vpc.id} has {len(subnets)} usable subnet(s); an ALB needs two in different zones: "
            "run ml.aws.preflight(spec) to see why"
        )
    return {
        "vpc_id": vpc.id,
        "alb_subnet_ids": subnets,
        "instance_subnet_ids": subnets,
        "ami_id": spec.instance.ami,
    }


def declare_fleet(
    spec: FleetSpec,
    *,
    wheel: Path | None = None,
    model: Path | None = None,
    assets: Assets | None = None,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Declare every resource of the fleet in the current Pulumi program; returns the outputs (not exported).

    Example (inside a Pulumi program or a mocked test)::

        outputs = declare_fleet(FleetSpec(name="demo"), assets=Assets(wheel=Path("dist/mlops_lb-0.1.0-py3-none-any.whl")),
                                resolved=ml.aws.preflight(spec).resolved)
        outputs["url"]      # Output[str]
    """
    import pulumi

    aws = _import_pulumi_aws()
    if assets is None:
        if wheel is None:
            raise ProvisionError("declare_fleet needs assets=Assets(wheel=...) (or wheel=...)")
        assets = Assets(wheel=wheel, model=model)
    if not assets.wheel.is_file():
        raise ProvisionError(f"wheel {str(assets.wheel)!r} does not exist")
    stack = pulumi.get_stack()
    region = pulumi.Config("aws").get("region") or spec.region or os.environ.get("AWS_REGION") or "us-east-1"
    ours = {STACK_TAG: stack, "mlops-lb:fleet": spec.name}
    ctx = _Ctx(
        aws=aws,
        spec=spec,
        name=spec.name,
        tags={**spec.tags, **ours},
        asset_tags=ours,
        region=region,
        resolved=dict(resolved) if resolved is not None else _legacy_resolution(aws, spec),
    )
    from ._rollout import declare_slots, read_plan

    plan = read_plan()  # None until the first fleet.rollout(): one slot, as always
    alb_sg, inst_sg = _security_groups(ctx)
    lb = _load_balancer(ctx, alb_sg, weights=plan.weights if plan is not None else None)
    bucket, keys = _assets_bucket(ctx, assets)
    profile = _instance_role(ctx, bucket)
    extra: dict[str, Any] = {}
    tg = lb["tg"]
    if plan is None:
        spot_role_policy(
            ctx, profile, lb["tg"]
        )  # capacity.spot only: the agent's DeregisterTargets, this group only
        lt, ami = _launch_template(ctx, inst_sg, profile, bucket, keys, lb["tg"])
        asg = _group(ctx, lt, lb["tg"])
        resource_label = _scaling(ctx, asg, lb)
    else:  # two slots (issue 29): the live one runs `spec`, the other the plan's spec
        other = plan.spec_of("b" if plan.live == "a" else "a", spec)
        files = (_model_file(other), _install_file(other)) if other is not None else (None, None)
        slots = declare_slots(
            ctx, plan, lb=lb, inst_sg=inst_sg, profile=profile, bucket=bucket, keys=keys, other_files=files
        )
        asg, ami, resource_label, tg = slots["asg"], slots["ami"], slots["resource_label"], slots["tg"]
        extra = slots["outputs"]
    # routing.policy consistent_hash: HAProxy routers behind the ALB (refused together with rollouts: a plan and a
    # router tier never meet here)
    if _router.has_router_tier(spec):
        routers = _router.declare_router_tier(
            ctx,
            router_sg=ctx.extras["router_sg"],
            tg=lb["tg"],
            model_asg=asg,
            bucket=bucket,
            keys=keys,
            enabled_metrics=ENABLED_METRICS,
            refresh_preferences=REFRESH_PREFERENCES,
        )
        extra["router_asg_name"] = routers.name
    return {
        **extra,
        "listener_arn": lb["listener"].arn,
        "url": lb["url"],
        "alb_arn": lb["alb"].arn,
        "alb_arn_suffix": lb["alb"].arn_suffix,
        "alb_dns_name": lb["alb"].dns_name,
        "target_group_arn": tg.arn,
        "target_group_arn_suffix": tg.arn_suffix,
        "asg_name": asg.name,
        "region": region,
        "bucket": bucket.bucket,
        "resource_label": resource_label,
        "ami_id": ami,
        "architecture": ctx.resolved.get("architecture", "x86_64"),
        "wheel_key": keys["wheel"],
        "instance_python": keys["python"],
    }
