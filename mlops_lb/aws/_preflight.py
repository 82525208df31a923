"""Preflight: read-only checks of the account against the spec, before any resource exists.

(Just over 500 lines on purpose: one check list, in the order it runs, each check with its message and fix.)

``preflight(spec)`` resolves everything the Pulumi program needs as explicit ids (VPC, one ALB subnet per AZ,
instance subnets with outbound internet, zones offering the instance type, the AMI for its architecture, the
partition) and checks the rest (credentials, region, vCPU quota, grace period vs boot time). Each check names the
resource, what was found and the fix. A check that cannot run (no permission for Service Quotas) says so and
does not fail. The rules behind each check are in ``mlops_lb/_aws_rules.py`` with their AWS doc sources.

Example::

    pf = ml.aws.preflight(ml.FleetSpec(name="demo", region="us-east-1"))
    pf.ok                   # True
    pf.checks               # DataFrame: check, ok, detail, fix
    pf.resolved["alb_subnet_ids"]
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._aws_rules import ALB_MIN_AZS, RULES, partition_for_region
from ..errors import ProvisionError
from ..spec import FleetSpec
from ._boto import client, error_code
from .spec_rules import check_spec
from .userdata import EXPECTED_BOOT_S

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AL2023_PARAMETERS", "CHECK_COLUMNS", "Preflight", "preflight"]

log = logging.getLogger(__name__)

CHECK_COLUMNS = ("check", "ok", "detail", "fix")
# AL2023 public SSM parameters by architecture, and the NVIDIA-driver AMI for GPU instance types
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-systems-manager-parameter-to-find-AMI.html).
AL2023_PARAMETERS = {
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
GPU_AMI_PARAMETERS = {
    "x86_64": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
    "arm64": "/aws/service/deeplearning/ami/arm64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
}
GPU_AMI_MIN_ROOT_GB = 75  # the DLAMI's root snapshot; a smaller volume cannot be created from it
_DEFAULT_X86_PARAMETER = AL2023_PARAMETERS["x86_64"]
VCPU_QUOTA_CODE = "L-1216C47A"  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
GPU_QUOTA_CODE = "L-DB2E81BA"  # Running On-Demand G and VT instances (rule gpu-vcpu-quota)
P_QUOTA_CODE = "L-417A185B"  # Running On-Demand P instances
_STANDARD_FAMILIES = tuple("acdhimrtz")
# The On-Demand vCPU quota of each family, by its Service Quotas name (rule vcpu-quota-families), the most specific
# prefix first: inf2 is not an I instance, trn1 not a T, dl1 not a D, hpc7g not an H. A code is given where it was
# read from Service Quotas itself; "" looks the quota up by its name (ListServiceQuotas).
_QUOTA_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("inf", "Running On-Demand Inf instances", "L-1945791B"),
    ("trn", "Running On-Demand Trn instances", ""),
    ("dl", "Running On-Demand DL instances", ""),
    ("hpc", "Running On-Demand HPC instances", ""),
    ("vt", "Running On-Demand G and VT instances", GPU_QUOTA_CODE),
    ("g", "Running On-Demand G and VT instances", GPU_QUOTA_CODE),
    ("p", "Running On-Demand P instances", P_QUOTA_CODE),
    ("f", "Running On-Demand F instances", "L-74FC7D96"),
    ("x", "Running On-Demand X instances", ""),
    ("u", "Running On-Demand High Memory instances", ""),
)
# Families the NVIDIA-driver AL2023 DLAMI (GPU_AMI_PARAMETERS) supports, from its release notes'
# supported_ec2_instances (rule gpu-ami-families): x86_64 "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon
# Linux 2023) 20260519", arm64 "... ARM64 ... 20260917". Not g4ad (AMD Radeon GPUs), nor p3 (V100s).
GPU_AMI_FAMILIES = {
    "x86_64": frozenset(
        {"g4dn", "g5", "g6", "gr6", "g6e", "g7e", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300"}
    ),
    "arm64": frozenset({"g5g", "p6e-gb200", "p6e-gb300"}),
}


@dataclass
class Preflight:
    """The outcome of :func:`preflight`: ``ok``, one row per check, and the ids the program will use.

    Example::

        pf = ml.aws.preflight(spec)
        if not pf.ok:
            print(pf)             # the failed checks, each with its fix
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check failed (a check that could not run, ``ok=None``, does not count as failed)."""
        return all(r["ok"] is not False for r in self.rows)

    @property
    def checks(self) -> pd.DataFrame:
        """DataFrame with columns check, ok (True/False/None = could not run), detail, fix."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(CHECK_COLUMNS))

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The rows of failed checks."""
        return [r for r in self.rows if r["ok"] is False]

    def add(self, check: str, ok: bool | None, detail: str, fix: str = "") -> bool | None:
        self.rows.append({"check": check, "ok": ok, "detail": detail, "fix": fix})
        return ok

    def raise_for_failures(self) -> None:
        """Raise ProvisionError listing every failed check with its fix (nothing when all passed)."""
        if not self.ok:
            lines = [
                f"- {r['check']}: {r['detail']}" + (f" -> {r['fix']}" if r["fix"] else "")
                for r in self.failed
            ]
            raise ProvisionError("preflight failed; nothing was created:\n" + "\n".join(lines))

    def __repr__(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}
        lines = [
            f"Preflight: {'ok' if self.ok else 'FAILED'} ({len(self.failed)} failed of {len(self.rows)})"
        ]
        for r in self.rows:
            lines.append(f"  [{mark[r['ok']]}] {r['check']}: {r['detail']}")
            if r["fix"] and r["ok"] is not True:
                lines.append(f"         fix: {r['fix']}")
        if self.resolved:
            lines.append("  resolved:")
            lines += [f"    {k}: {v}" for k, v in self.resolved.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
        label = {True: "ok", False: "FAIL", None: "skipped"}
        rows = "".join(
            f"<tr><td>{html.escape(r['check'])}</td>"
            f"<td style='color:{color[r['ok']]};font-weight:bold'>{label[r['ok']]}</td>"
            f"<td>{html.escape(r['detail'])}</td><td>{html.escape(r['fix'])}</td></tr>"
            for r in self.rows
        )
        res = "".join(
            f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in self.resolved.items()
        )
        head = f"<b>Preflight: {'ok' if self.ok else 'FAILED'}</b>"
        return (
            f"<div>{head}<table><tr><th>check</th><th>ok</th><th>detail</th><th>fix</th></tr>{rows}</table>"
            f"<table><tr><th>resolved</th><th></th></tr>{res}</table></div>"
        )


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _is_gpu(info: dict[str, Any]) -> bool:
    return bool(info.get("GpuInfo", {}).get("Gpus"))


def preflight(spec: FleetSpec, *, session: Any = None, region: str | None = None) -> Preflight:
    """Check the account against ``spec`` with read-only calls and resolve the ids the program needs.

    Example::

        pf = ml.aws.preflight(ml.FleetSpec(name="demo", region="us-east-1"))
        pf.resolved["availability_zones"]     # ['us-east-1a', 'us-east-1b', ...] (zones offering t3.small)
    """
    check_spec(spec)  # names, region, instance type: a SpecError before any call to AWS
    pf = Preflight()
    region = region or spec.region or getattr(session, "region_name", None)
    if not region:
        import os

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        pf.add(
            "region",
            False,
            "no region in the spec, session or environment",
            "set FleetSpec.region or AWS_REGION",
        )
        return pf
    partition = partition_for_region(region)
    pf.resolved["partition"] = partition

    if not _credentials(pf, session, region):
        return pf
    ec2 = client("ec2", session=session, region=region)
    if not _region(pf, ec2, region):
        return pf
    arch = _instance_type(pf, ec2, spec)
    if arch is None:
        return pf
    zones = _offered_zones(pf, ec2, spec.instance.type)
    if zones is None:
        return pf
    try:
        network_ok = _network(pf, ec2, spec, zones)
    except Exception as exc:  # a Describe* call refused (permissions) or failed: say which, do not crash
        pf.add(
            "network",
            False,
            f"reading the VPC, subnets or route tables failed: {error_code(exc) or exc}",
            "allow ec2:DescribeVpcs, ec2:DescribeSubnets and ec2:DescribeRouteTables",
        )
        network_ok = False
    if network_ok:
        _ami(pf, session, region, spec, arch)
        _router_checks(pf, ec2, session, region, spec)  # a router tier's own type: its zones and AL2023 AMI
        _hibernation_root(pf, ec2, spec)
    _quota(pf, session, region, spec)
    if spec.capacity.spot is not None:  # types, architectures, offerings and the spot vCPU quota
        from ._spot import spot_checks

        spot_checks(pf, ec2, client("service-quotas", session=session, region=region), spec)
    _grace(pf, spec)
    _drain(pf, spec)
    return pf


def _credentials(pf: Preflight, session: Any, region: str) -> bool:
    try:
        ident = client("sts", session=session, region=region).get_caller_identity()
    except Exception as exc:
        return bool(
            pf.add(
                "credentials",
                False,
                f"STS GetCallerIdentity failed: {error_code(exc) or type(exc).__name__}: {exc}",
                "configure AWS credentials (aws configure sso, AWS_PROFILE or AWS_ACCESS_KEY_ID/...)",
            )
        )
    arn = str(ident.get("Arn", ""))
    pf.resolved["account"] = str(ident.get("Account", ""))
    if arn.startswith("arn:") and arn.split(":")[1] != pf.resolved["partition"]:
        return bool(
            pf.add(
                "credentials",
                False,
                f"caller {arn} is in partition {arn.split(':')[1]}, region {region} is in {pf.resolved['partition']}",
                "use credentials of the region's partition (GovCloud and China accounts are separate)",
            )
        )
    pf.add("credentials", True, f"caller {arn}")
    return True


def _region(pf: Preflight, ec2: Any, region: str) -> bool:
    try:
        names = {r["RegionName"] for r in ec2.describe_regions(AllRegions=False)["Regions"]}
    except Exception as exc:
        pf.add(
            "region", None, f"could not list regions ({error_code(exc) or exc}); assuming {region} is enabled"
        )
        return True
    if region not in names:
        return bool(
            pf.add(
                "region",
                False,
                f"region {region} is not enabled for this account",
                "enable it or pick another",
            )
        )
    pf.add("region", True, f"{region} (partition {pf.resolved['partition']})")
    return True


def _describe_type(
    pf: Preflight, ec2: Any, itype: str, check: str, what: str
) -> tuple[dict[str, Any], str] | None:
    """DescribeInstanceTypes for one type: its description and the architecture its AMI must have (arm64 only for
    a type that runs no x86_64), or None after a failed ``check`` naming ``what`` to pick instead."""
    try:
        info = ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"][0]
    except Exception as exc:
        pf.add(check, False, f"{itype}: {error_code(exc) or exc}", f"use {what} offered in the region")
        return None
    archs = info.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
    return info, "arm64" if "arm64" in archs and "x86_64" not in archs else "x86_64"


def _instance_type(pf: Preflight, ec2: Any, spec: FleetSpec) -> str | None:
    itype = spec.instance.type
    described = _describe_type(pf, ec2, itype, "instance type", "an instance type")
    if described is None:
        return None
    info, arch = described
    pf.resolved["architecture"] = arch
    pf.resolved["vcpus"] = int(info.get("VCpuInfo", {}).get("DefaultVCpus", 2))
    pf.resolved["gpu"] = _is_gpu(info)
    pf.resolved["memory_mib"] = int(info.get("MemoryInfo", {}).get("SizeInMiB", 0))
    warm = spec.capacity.warm_pool
    if warm is not None and warm.state == "hibernated" and not info.get("HibernationSupported", False):
        pf.add(
            "warm pool",
            False,
            f"{itype} does not support hibernation (warm_pool.state: hibernated)",
            "use warm_pool.state: stopped, or an instance type that supports hibernation",
        )
    pf.add(
        "instance type",
        True,
        f"{itype}: {arch}, {pf.resolved['vcpus']} vCPU" + (", GPU" if pf.resolved["gpu"] else ""),
    )
    return arch


def _offered_zones(pf: Preflight, ec2: Any, itype: str) -> set[str] | None:
    try:
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [itype]}]
        )
        zones = {o["Location"] for p in pages for o in p.get("InstanceTypeOfferings", [])}
    except Exception as exc:
        pf.add(
            "instance type offerings",
            False,
            f"DescribeInstanceTypeOfferings failed: {error_code(exc) or exc}",
            "allow ec2:DescribeInstanceTypeOfferings",
        )
        return None
    return zones


def _routes(ec2: Any, vpc_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Route tables by explicitly associated subnet, and the VPC's main table."""
    by_subnet: dict[str, dict[str, Any]] = {}
    main = None
    for rt in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]:
        for assoc in rt.get("Associations", []):
            if assoc.get("Main"):
                main = rt
            if assoc.get("SubnetId"):
                by_subnet[assoc["SubnetId"]] = rt
    return by_subnet, main


def _default_route(rt: dict[str, Any] | None) -> str:
    """'igw', 'nat' or '' for a route table's 0.0.0.0/0 route."""
    for r in (rt or {}).get("Routes", []):
        if r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("State", "active") == "active":
            if str(r.get("GatewayId", "")).startswith("igw-"):
                return "igw"
            if (
                r.get("NatGatewayId")
                or r.get("InstanceId")
                or r.get("NetworkInterfaceId")
                or r.get("TransitGatewayId")
            ):
                return "nat"
    return ""


def _network(pf: Preflight, ec2: Any, spec: FleetSpec, zones: set[str]) -> bool:
    net = spec.network
    try:
        if net.vpc_id:
            vpcs = ec2.describe_vpcs(VpcIds=[net.vpc_id])["Vpcs"]
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    except Exception as exc:
        return bool(
            pf.add(
                "vpc",
                False,
                f"{net.vpc_id or 'default VPC'}: {error_code(exc) or exc}",
                "set network.vpc_id to a VPC of this account and region",
            )
        )
    if not vpcs:
        return bool(
            pf.add(
                "vpc",
                False,
                "this region has no default VPC",
                "create one (aws ec2 create-default-vpc) or set network.vpc_id and network.subnet_ids",
            )
        )
    vpc_id = vpcs[0]["VpcId"]
    pf.add("vpc", True, f"{vpc_id}" + (" (default)" if vpcs[0].get("IsDefault") else ""))
    pf.resolved["vpc_id"] = vpc_id
    flt = [{"Name": "vpc-id", "Values": [vpc_id]}]
    if net.subnet_ids:
        subnets = ec2.describe_subnets(SubnetIds=list(net.subnet_ids))["Subnets"]
        wrong = [s["SubnetId"] for s in subnets if s["VpcId"] != vpc_id]
        if wrong:
            return bool(
                pf.add(
                    "subnets", False, f"subnets {wrong} are not in {vpc_id}", "list subnets of network.vpc_id"
                )
            )
    else:
        subnets = ec2.describe_subnets(Filters=flt)["Subnets"]
    by_subnet, main = _routes(ec2, vpc_id)
    info = []
    for s in subnets:
        route = _default_route(by_subnet.get(s["SubnetId"], main))
        info.append(
            {
                "id": s["SubnetId"],
                "az": s["AvailabilityZone"],
                "route": route,
                "public_ip": bool(s.get("MapPublicIpOnLaunch")),
                "default": bool(s.get("DefaultForAz")),
            }
        )
    info.sort(key=lambda i: (i["az"], not i["default"], i["id"]))

    # ALB: one subnet per AZ; internet-facing prefers (needs) a route to an internet gateway.
    want_igw = not net.internal
    alb: dict[str, str] = {}
    for i in info:
        if i["az"] in alb or (want_igw and i["route"] != "igw"):
            continue
        alb[i["az"]] = i["id"]
    if not net.internal and len(alb) < ALB_MIN_AZS:
        return bool(
            pf.add(
                "alb subnets",
                False,
                f"{vpc_id} has public subnets (route to an internet gateway) in {len(alb)} AZ(s): {sorted(alb)}",
                "an internet-facing ALB needs public subnets in at least two AZs: add them, or set network.internal",
            )
        )
    if len(alb) < ALB_MIN_AZS:
        alb = {}
        for i in info:
            alb.setdefault(i["az"], i["id"])
    if len(alb) < ALB_MIN_AZS:
        return bool(
            pf.add(
                "alb subnets",
                False,
                f"{vpc_id} has subnets in {len(alb)} AZ(s)",
                f"add a subnet in a second AZ ({RULES['alb-subnets'].source})",
            )
        )

    pf.add("alb subnets", True, ", ".join(f"{az}: {sid}" for az, sid in sorted(alb.items())))
    pf.resolved["alb_subnet_ids"] = [alb[az] for az in sorted(alb)]

    # Instances: zones that offer the type, subnets with outbound internet (public IP + IGW, or a NAT route).
    usable = [i for i in info if i["az"] in zones]
    dropped = sorted({i["az"] for i in info} - zones)
    if dropped:
        pf.add(
            "instance zones", True, f"{spec.instance.type} is not offered in {', '.join(dropped)}: not used"
        )
    outbound = [i for i in usable if (i["route"] == "igw" and i["public_ip"]) or i["route"] == "nat"]
    no_way_out = [i["id"] for i in usable if i not in outbound]
    inst: dict[str, str] = {}
    for i in sorted(outbound, key=lambda i: (i["az"], i["route"] != "nat", not i["default"], i["id"])):
        inst.setdefault(i["az"], i["id"])
    if len(inst) < ALB_MIN_AZS:
        detail = (
            f"{len(inst)} AZ(s) offer {spec.instance.type} with a subnet that reaches the internet "
            f"(public IP on launch + internet gateway, or a NAT route)"
        )
        if no_way_out:
            detail += f"; without a way out: {', '.join(no_way_out)}"
        return bool(
            pf.add(
                "instance subnets",
                False,
                detail,
                "add a NAT gateway route to the private subnets, or enable MapPublicIpOnLaunch on the "
                "public ones, in at least two AZs offering the instance type",
            )
        )
    pf.add("instance subnets", True, ", ".join(f"{az}: {sid}" for az, sid in sorted(inst.items())))
    pf.resolved["instance_subnet_ids"] = [inst[az] for az in sorted(inst)]
    pf.resolved["availability_zones"] = sorted(inst)
    return True


def _ami(pf: Preflight, session: Any, region: str, spec: FleetSpec, arch: str) -> None:
    if spec.instance.ami:
        pf.resolved["ami_id"] = spec.instance.ami
        pf.add("ami", True, f"{spec.instance.ami} (pinned in the spec)")
        return
    param = spec.instance.ami_ssm_parameter
    if pf.resolved.get("gpu"):
        param = GPU_AMI_PARAMETERS[arch]
    elif param == _DEFAULT_X86_PARAMETER:  # the default follows the instance's architecture
        param = AL2023_PARAMETERS[arch]
    try:
        value = client("ssm", session=session, region=region).get_parameter(Name=param)["Parameter"]["Value"]
    except Exception as exc:
        pf.add(
            "ami",
            False,
            f"SSM parameter {param}: {error_code(exc) or exc}",
            "allow ssm:GetParameter, or pin instance.ami",
        )
        return
    pf.resolved["ami_id"] = value
    pf.resolved["ami_parameter"] = param
    pf.add("ami", True, f"{value} from {param}")
    fam = _family(spec.instance.type)
    if pf.resolved.get("gpu") and fam not in GPU_AMI_FAMILIES[arch]:
        pf.add(
            "gpu ami",
            False,
            f"{spec.instance.type}: the NVIDIA-driver AL2023 DLAMI does not support {fam} instances (it supports "
            f"{', '.join(sorted(GPU_AMI_FAMILIES[arch]))}; {RULES['gpu-ami-families'].source})",
            "pick a supported GPU family (g6.xlarge, g5.xlarge, ...), or pin instance.ami to an AMI whose "
            "drivers support this GPU",
        )
    if pf.resolved.get("gpu") and spec.instance.root_volume_gb < GPU_AMI_MIN_ROOT_GB:
        pf.add(
            "root volume",
            False,
            f"instance.root_volume_gb={spec.instance.root_volume_gb} is below the NVIDIA AMI's "
            f"{GPU_AMI_MIN_ROOT_GB} GB snapshot: the launch would fail",
            f"set instance.root_volume_gb: {GPU_AMI_MIN_ROOT_GB} (or more)",
        )


def _router_checks(pf: Preflight, ec2: Any, session: Any, region: str, spec: FleetSpec) -> None:
    """With ``routing.router``: the router type's zones among the instance subnets (rule instance-type-offerings)
    and the plain AL2023 AMI of its architecture (never the models' GPU AMI), as ``router_subnet_ids`` and
    ``router_ami_id``."""
    from ._router import has_router_tier, router_of

    if not has_router_tier(spec):
        return
    router: Any = router_of(spec)  # has_router_tier(spec) holds here
    itype = str(router.instance_type)
    described = _describe_type(pf, ec2, itype, "router type", "a router type")
    if described is None:
        return
    arch = described[1]
    zones = _offered_zones(pf, ec2, itype)
    if zones is None:
        return
    pairs = zip(
        pf.resolved.get("availability_zones", []), pf.resolved.get("instance_subnet_ids", []), strict=True
    )
    subnets = [sid for az, sid in pairs if az in zones]
    if not subnets:
        pf.add(
            "router zones",
            False,
            f"{itype} is offered in none of the instance zones {pf.resolved.get('availability_zones')}",
            f"pick another routing.router.instance_type ({RULES['instance-type-offerings'].source})",
        )
        return
    pf.resolved["router_subnet_ids"] = subnets
    pf.add("router zones", True, f"{itype} ({arch}) in {len(subnets)} instance subnet(s)")
    param = AL2023_PARAMETERS[arch]
    try:
        value = client("ssm", session=session, region=region).get_parameter(Name=param)["Parameter"]["Value"]
    except Exception as exc:
        pf.add(
            "router ami", False, f"SSM parameter {param}: {error_code(exc) or exc}", "allow ssm:GetParameter"
        )
        return
    pf.resolved["router_ami_id"] = value
    pf.add("router ami", True, f"{value} from {param}")


def _hibernation_root(pf: Preflight, ec2: Any, spec: FleetSpec) -> None:
    """A hibernated warm pool writes each instance's RAM to its root volume (rule hibernation-root): the volume must
    hold the RAM on top of what the AMI itself occupies (its root snapshot, read with DescribeImages)."""
    warm = spec.capacity.warm_pool
    if warm is None or warm.state != "hibernated":
        return
    ram_gib = -(-int(pf.resolved.get("memory_mib", 0)) // 1024)
    ami_gib, known = 0, False
    ami = pf.resolved.get("ami_id")
    try:
        image = ec2.describe_images(ImageIds=[ami])["Images"][0] if ami else {}
        root = image.get("RootDeviceName")
        for m in image.get("BlockDeviceMappings", []):
            if m.get("DeviceName") == (root or m.get("DeviceName")) and "VolumeSize" in m.get("Ebs", {}):
                ami_gib, known = int(m["Ebs"]["VolumeSize"]), True
                break
    except Exception as exc:  # the AMI's size is best effort; the RAM alone is still checked
        log.debug("describe_images %s: %s", ami, exc)
    need = ram_gib + ami_gib
    what = f"RAM {ram_gib} GiB + AMI root {ami_gib} GiB" if known else f"RAM {ram_gib} GiB (AMI size unknown)"
    if spec.instance.root_volume_gb < need:
        pf.add(
            "hibernation root",
            False,
            f"instance.root_volume_gb={spec.instance.root_volume_gb} cannot hold a hibernated "
            f"{spec.instance.type}: {what} = {need} GiB ({RULES['hibernation-root'].source})",
            f"set instance.root_volume_gb: {need} or more (what the server writes needs room too), or "
            "warm_pool.state: stopped",
        )
    else:
        pf.add("hibernation root", True, f"{spec.instance.root_volume_gb} GiB >= {what}")


def _vcpus_needed(spec: FleetSpec, vcpus: int) -> int:
    warm = spec.capacity.warm_pool
    extra = 0 if warm is None or warm.state != "running" else warm.min_size
    # An instance refresh launches before it terminates: up to max + max (max healthy 200 %) for a moment.
    return vcpus * (spec.capacity.max * 2 + extra)


def _quota_code(instance_type: str) -> tuple[str, str] | None:
    """(quota code or "" for a lookup by name, quota name) of the On-Demand vCPU quota of ``instance_type``'s
    family; None for mac (Dedicated Hosts, counted in hosts, not vCPUs) and unknown families."""
    fam = _family(instance_type)
    if fam.startswith("mac"):
        return None
    for prefix, name, code in _QUOTA_FAMILIES:
        if fam.startswith(prefix):
            return code, name
    if fam.startswith(_STANDARD_FAMILIES):
        return VCPU_QUOTA_CODE, "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
    return None


def _quota_by_name(sq: Any, name: str) -> tuple[str, float]:
    for page in sq.get_paginator("list_service_quotas").paginate(ServiceCode="ec2"):
        for q in page.get("Quotas", []):
            if q.get("QuotaName") == name:
                return str(q["QuotaCode"]), float(q["Value"])
    raise LookupError(f"no EC2 quota named {name!r}")


def _quota(pf: Preflight, session: Any, region: str, spec: FleetSpec) -> None:
    found = _quota_code(spec.instance.type)
    if found is None:
        why = (
            "mac instances run on Dedicated Hosts, whose quota counts hosts (Running Dedicated mac* Hosts)"
            if _family(spec.instance.type).startswith("mac")
            else "no known On-Demand vCPU quota"
        )
        pf.add("vcpu quota", None, f"{spec.instance.type}: {why}; not checked")
        return
    code, quota_name = found
    try:
        sq = client("service-quotas", session=session, region=region)
        if code:
            limit = float(sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
        else:
            code, limit = _quota_by_name(sq, quota_name)
    except Exception as exc:
        pf.add(
            "vcpu quota",
            None,
            f"could not read quota {code or quota_name} ({quota_name}): {error_code(exc) or exc}; not checked",
            "allow servicequotas:GetServiceQuota and servicequotas:ListServiceQuotas to have it checked",
        )
        return
    need = _vcpus_needed(spec, int(pf.resolved.get("vcpus", 2)))
    if need > limit:
        pf.add(
            "vcpu quota",
            False,
            f"max {spec.capacity.max} x {pf.resolved.get('vcpus')} vCPU (x2 during a refresh) = {need} > quota {limit:g} ({quota_name})",
            f"request an increase of {code} in Service Quotas, or lower capacity.max",
        )
    else:
        pf.add(
            "vcpu quota",
            True,
            f"{need} vCPU at most (refresh included) <= quota {limit:g} ({code})",
        )


# The boot is an estimate on paper (BOOT_STEPS); a slow package mirror or a burstable instance out of CPU credits
# stretches it. Half the estimate again is the margin a grace period must leave before the checks start to count.
GRACE_MARGIN_S = EXPECTED_BOOT_S // 2


def grace_needed(spec: FleetSpec) -> int:
    """The shortest safe grace period: the bootstrap on paper, healthy_threshold x interval, and GRACE_MARGIN_S."""
    hc = spec.aws_health_check
    return EXPECTED_BOOT_S + hc.healthy_threshold * hc.interval_s + GRACE_MARGIN_S


def _grace(pf: Preflight, spec: FleetSpec) -> None:
    hc = spec.aws_health_check
    need = grace_needed(spec)
    parts = (
        f"boot {EXPECTED_BOOT_S} s + {hc.healthy_threshold} x {hc.interval_s} s + margin {GRACE_MARGIN_S} s = "
        f"{need} s"
    )
    if hc.grace_period_s < need:
        pf.add(
            "grace period",
            False,
            f"health_check.grace_period_s={hc.grace_period_s} < {parts}: instances would be replaced before "
            "they serve",
            f"set aws.health_check.grace_period_s: {need} (or more) in the spec",
        )
    else:
        pf.add("grace period", True, f"{hc.grace_period_s} s >= {parts}")


def _drain(pf: Preflight, spec: FleetSpec) -> None:
    """The ALB drains a scaled-in target for the deregistration delay, then systemd gives the server
    drain_timeout_s after SIGTERM: a delay shorter than drain_timeout_s cuts requests the server would finish."""
    delay, drain = spec.target_group.deregistration_delay_s, spec.server.drain_timeout_s
    if delay < drain:
        pf.add(
            "drain",
            False,
            f"target_group.deregistration_delay_s={delay} < server.drain_timeout_s={drain}: the ALB closes "
            f"in-flight requests after {delay} s ({RULES['deregistration-delay'].source})",
            f"set target_group.deregistration_delay_s: {drain} (or more), or lower server.drain_timeout_s",
        )
    else:
        pf.add("drain", True, f"ALB drains {delay} s >= server drain {drain} s (systemd TimeoutStopSec)")


def failed_names(pf: Preflight) -> Iterable[str]:
    """The names of failed checks (for messages and tests)."""
    return [r["check"] for r in pf.failed]
