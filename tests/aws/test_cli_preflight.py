"""`mlops-lb preflight SPEC` against moto: prints every check and the resolved ids; exit 1 when one fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec
from mlops_lb.cli import main


def test_preflight_command_prints_checks_and_exit_code(
    moto_account: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    FleetSpec.example("demo").replace(region="us-east-1").to_yaml(good)
    assert main(["preflight", str(good)]) == 0
    out = capsys.readouterr().out
    assert "Preflight: ok" in out and "alb_subnet_ids" in out and "us-east-1e" in out

    bad = tmp_path / "bad.yaml"
    FleetSpec(name="demo", region="us-east-1", health_check={"grace_period_s": 30}).to_yaml(bad)
    assert main(["preflight", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] grace period" in out and "fix: set aws.health_check.grace_period_s" in out
