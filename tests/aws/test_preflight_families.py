"""Preflight rules that depend on the instance family, each with its AWS source (mlops_lb/_aws_rules.py):
vCPU quota families (vcpu-quota-families), the NVIDIA AL2023 DLAMI's supported families (gpu-ami-families), the root
volume of a hibernated warm pool (hibernation-root), the grace period's stated margin, and the GPU quota the example
tells users to request.

Old code: inf2/trn1/dl1/hpc7g/mac2 were checked against the Standard quota (their first letter is a Standard one);
g4ad and p3 got the DLAMI (which has no driver for them); a hibernated pool's root volume was never compared with
the RAM it must hold; the default grace period equalled boot + checks exactly; examples/vllm-g6.yaml said "request
8 or more" vCPUs where the preflight needs 16 (docs/aws.md said 16).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, InstanceSpec
from mlops_lb.aws import preflight
from mlops_lb.aws._preflight import (
    GPU_AMI_PARAMETERS,
    GRACE_MARGIN_S,
    Preflight,
    _ami,
    _quota,
    _quota_code,
    _vcpus_needed,
    grace_needed,
)
from mlops_lb.aws.userdata import EXPECTED_BOOT_S

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]


def _row(pf: Preflight, name: str) -> dict[str, Any]:
    (row,) = [r for r in pf.rows if r["check"] == name]
    return row


def _stub_client(monkeypatch: pytest.MonkeyPatch, service: str, calls: list[tuple[str, Any, Any]]) -> None:
    """``service``'s client answers ``calls`` (operation, response, expected params) through botocore's Stubber."""
    from botocore.stub import Stubber

    from mlops_lb.aws import _boto

    real = _boto.client

    def client(name: str, **kw: Any) -> Any:
        c = real(name, **kw)
        if name == service:
            stub = Stubber(c)
            for op, resp, params in calls:
                stub.add_response(op, resp, params)
            stub.activate()
        return c

    monkeypatch.setattr("mlops_lb.aws._preflight.client", client)


class TestQuotaFamilies:
    @pytest.mark.parametrize(
        ("itype", "quota"),
        [
            ("inf2.xlarge", "Running On-Demand Inf instances"),
            ("trn1.2xlarge", "Running On-Demand Trn instances"),
            ("dl1.24xlarge", "Running On-Demand DL instances"),
            ("hpc7g.4xlarge", "Running On-Demand HPC instances"),
            ("u-6tb1.metal", "Running On-Demand High Memory instances"),
            ("i4i.large", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
            ("m7i.large", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
            ("d3.xlarge", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
        ],
    )
    def test_each_family_names_its_own_quota(self, itype: str, quota: str) -> None:
        """The family's own quota, not the Standard one its first letter suggests (and Standard where it is)."""
        found = _quota_code(itype)
        assert found is not None and found[1] == quota

    def test_mac_is_not_a_vcpu_quota(self) -> None:
        """mac instances run on Dedicated Hosts (a host quota): not checked against any vCPU quota."""
        assert _quota_code("mac2.metal") is None

    def test_a_quota_without_a_known_code_is_found_by_its_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """trn1: ListServiceQuotas finds "Running On-Demand Trn instances"; 2 x 8 x 8 vCPU = 128 > 64 fails."""
        quotas = [
            {"QuotaCode": "L-0000STD", "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
             "Value": 1024.0},
            {"QuotaCode": "L-0000TRN", "QuotaName": "Running On-Demand Trn instances", "Value": 64.0},
        ]  # fmt: skip
        _stub_client(
            monkeypatch,
            "service-quotas",
            [("list_service_quotas", {"Quotas": quotas}, {"ServiceCode": "ec2"})],
        )
        pf = Preflight(resolved={"vcpus": 8})
        spec = FleetSpec(name="trn", region=REGION, instance=InstanceSpec(type="trn1.2xlarge"),
                         capacity=CapacitySpec(min=1, desired=1, max=8))  # fmt: skip
        _quota(pf, None, REGION, spec)
        row = _row(pf, "vcpu quota")
        assert row["ok"] is False and "128 > quota 64" in row["detail"] and "L-0000TRN" in row["fix"]


class TestGpuAmiFamilies:
    def _ami(self, monkeypatch: pytest.MonkeyPatch, itype: str) -> Preflight:
        param = GPU_AMI_PARAMETERS["x86_64"]
        _stub_client(
            monkeypatch,
            "ssm",
            [
                (
                    "get_parameter",
                    {"Parameter": {"Name": param, "Value": "ami-0123456789abcdef0"}},
                    {"Name": param},
                )
            ],
        )
        pf = Preflight(resolved={"gpu": True})  # what _instance_type reads from GpuInfo (AMD GPUs included)
        _ami(
            pf,
            None,
            REGION,
            FleetSpec(name="g", region=REGION, instance=InstanceSpec(type=itype, root_volume_gb=100)),
            "x86_64",
        )
        return pf

    @pytest.mark.parametrize("itype", ["g4ad.xlarge", "p3.2xlarge"])
    def test_families_the_dlami_does_not_support_fail(
        self, monkeypatch: pytest.MonkeyPatch, itype: str
    ) -> None:
        """g4ad (AMD GPUs) and p3 are not in the DLAMI's supported_ec2_instances: a failed check naming the fix."""
        row = _row(self._ami(monkeypatch, itype), "gpu ami")
        assert row["ok"] is False and itype.split(".")[0] in row["detail"] and "instance.ami" in row["fix"]

    @pytest.mark.parametrize("itype", ["g4dn.xlarge", "g6.xlarge", "p5.48xlarge"])
    def test_supported_families_pass(self, monkeypatch: pytest.MonkeyPatch, itype: str) -> None:
        pf = self._ami(monkeypatch, itype)
        assert pf.ok and not [r for r in pf.rows if r["check"] == "gpu ami"]


class TestHibernationRoot:
    def _spec(self, root_gb: int) -> FleetSpec:
        return FleetSpec(
            name="hib",
            region=REGION,
            instance=InstanceSpec(type="m5.large", root_volume_gb=root_gb),
            capacity=CapacitySpec(min=1, desired=1, max=2, warm_pool={"min_size": 1, "state": "hibernated"}),
        )

    def test_a_root_volume_smaller_than_ram_plus_ami_fails(self, moto_account: Any) -> None:
        """m5.large: 8 GiB of RAM on top of the AMI's root snapshot (moto's AL2023 image: 15 GiB) -> 23 GiB."""
        row = _row(preflight(self._spec(20)), "hibernation root")
        assert row["ok"] is False and "23 GiB" in row["detail"] and "root_volume_gb: 23" in row["fix"]

    def test_a_root_volume_that_holds_them_passes(self, moto_account: Any) -> None:
        assert _row(preflight(self._spec(30)), "hibernation root")["ok"] is True


class TestGrace:
    def test_the_default_grace_leaves_the_stated_margin(self) -> None:
        """The default spec: grace >= boot + checks + margin, and the margin is real (> 0)."""
        spec = FleetSpec(name="g")
        hc = spec.aws_health_check
        assert GRACE_MARGIN_S > 0
        assert grace_needed(spec) == EXPECTED_BOOT_S + hc.healthy_threshold * hc.interval_s + GRACE_MARGIN_S
        assert hc.grace_period_s >= grace_needed(spec)

    def test_a_grace_with_no_margin_fails(self, moto_account: Any) -> None:
        """Exactly boot + checks (the old default, 300 s) leaves nothing for a slow boot: the check fails."""
        spec = FleetSpec(name="g", region=REGION, health_check={"grace_period_s": 300})
        row = _row(preflight(spec), "grace period")
        assert row["ok"] is False and f"margin {GRACE_MARGIN_S} s" in row["detail"]


def test_the_gpu_example_asks_for_the_quota_the_preflight_needs() -> None:
    """examples/vllm-g6.yaml's comment and docs/aws.md name the vCPUs the preflight requires (max x 4 x 2)."""
    path = ROOT / "examples" / "vllm-g6.yaml"
    spec = FleetSpec.from_yaml(path)
    need = _vcpus_needed(spec, 4)  # g6.xlarge: 4 vCPU (the example's first line says so)
    asked = re.search(r"request (\d+) or more", path.read_text())
    assert asked and int(asked[1]) == need
    docs = re.search(r"request L-DB2E81BA >= (\d+)", (ROOT / "docs" / "aws.md").read_text())
    assert docs and int(docs[1]) == need
