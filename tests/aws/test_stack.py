"""AwsFleet up to the CLI boundary: real pulumi.automation objects, a fake `pulumi` executable on PATH."""

from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, ScalingPolicySpec
from mlops_lb.aws import AwsFleet
from mlops_lb.errors import BackendUnavailable, ProvisionError, SpecError


@pytest.fixture(autouse=True)
def _account(moto_account: Any) -> Any:
    """Every fleet here preflights against moto's us-east-1 (launch() runs the preflight first)."""
    return moto_account


def _fleet(fake_wheel: Path, **kw: Any) -> AwsFleet:
    spec = kw.pop(
        "spec",
        FleetSpec(
            name="demo",
            region="us-east-1",
            capacity=CapacitySpec(min=1, desired=2, max=5),
            scaling=ScalingPolicySpec(target_rps_per_target=40),
        ),
    )
    from mlops_lb.aws.assets import Wheelhouse

    house = fake_wheel.parent / "house"
    house.mkdir(exist_ok=True)
    (house / "requirements.txt").write_text("")
    kw.setdefault("wheelhouse", Wheelhouse(path=house, requirements=(), digest="0" * 64))
    return AwsFleet(spec, wheel=fake_wheel, **kw)


class TestWorkspace:
    def test_state_and_work_dir_live_under_the_toolkit_home(self, aws_home: Path, fake_wheel: Path) -> None:
        """Default backend is file://$MLOPS_LB_HOME/pulumi; the stack's work dir is $MLOPS_LB_HOME/stacks/<stack>."""
        fleet = _fleet(fake_wheel)
        env = fleet.env_vars()
        assert env["PULUMI_BACKEND_URL"] == f"file://{aws_home / 'pulumi'}"
        assert fleet.work_dir == aws_home / "stacks" / "demo"
        assert env["AWS_REGION"] == "us-east-1"

    def test_backend_url_from_the_environment_wins(
        self, aws_home: Path, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PULUMI_BACKEND_URL, when set, is used as is (e.g. s3:// or the Pulumi Cloud)."""
        monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://my-state-bucket")
        assert _fleet(fake_wheel).env_vars()["PULUMI_BACKEND_URL"] == "s3://my-state-bucket"

    def test_passphrase_is_generated_once_with_0600_and_passed_by_path(
        self, aws_home: Path, fake_wheel: Path
    ) -> None:
        """A generated passphrase lives in a 0600 file, is reused, and only its path reaches Pulumi."""
        env1 = _fleet(fake_wheel).env_vars()
        path = Path(env1["PULUMI_CONFIG_PASSPHRASE_FILE"])
        assert path == aws_home / "passphrase"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = path.read_text()
        assert len(secret) >= 32
        env2 = _fleet(fake_wheel).env_vars()
        assert path.read_text() == secret and env2 == env1
        assert "PULUMI_CONFIG_PASSPHRASE" not in env1
        assert all(secret not in v for v in env1.values())

    def test_passphrase_from_the_environment_is_inherited_not_copied(
        self, aws_home: Path, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With PULUMI_CONFIG_PASSPHRASE set, no file is created and the value is not copied into the workspace."""
        monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "hunter2-from-env")
        env = _fleet(fake_wheel).env_vars()
        assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env and "hunter2-from-env" not in repr(env)
        assert not (aws_home / "passphrase").exists()

    def test_stack_config_comes_from_the_spec(self, aws_home: Path, fake_wheel: Path) -> None:
        """Stack config carries the region, min/max and the per-second target (the program converts to per minute)."""
        assert _fleet(fake_wheel).stack_config() == {
            "aws:region": "us-east-1",
            "minSize": "1",
            "maxSize": "5",
            "targetRpsPerTarget": "40.0",
        }

    def test_real_workspace_options_and_stack_settings(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any
    ) -> None:
        """The real LocalWorkspace writes Pulumi.yaml (name, python runtime, backend) into the persistent work dir."""
        import yaml

        fleet = _fleet(fake_wheel)
        stack = fleet._get_stack()
        project = yaml.safe_load((fleet.work_dir / "Pulumi.yaml").read_text())
        assert project["name"] == "mlops-lb" and project["runtime"] == "python"
        assert project["backend"]["url"] == f"file://{aws_home / 'pulumi'}"
        assert stack.name == "demo"
        assert "PULUMI_CONFIG_PASSPHRASE_FILE" in stack.workspace.env_vars
        secret = (aws_home / "passphrase").read_text()
        assert secret not in repr(stack.workspace) and secret not in repr(fleet)
        calls = fake_cli.calls()
        select = [c for c in calls if c["args"][:1] == ["stack"]]
        assert select and "demo" in select[0]["args"]
        assert all(c["cwd"] == str(fleet.work_dir) for c in calls if c["args"][:1] != ["version"])
        assert all(c["env"]["PULUMI_BACKEND_URL"] == f"file://{aws_home / 'pulumi'}" for c in calls[1:])

    def test_work_dir_persists_across_fleet_objects(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any
    ) -> None:
        """A second AwsFleet for the same stack (a restarted kernel) reuses the same work dir and settings file."""
        a = _fleet(fake_wheel)
        a._get_stack()
        b = _fleet(fake_wheel)
        b._get_stack()
        assert a.work_dir == b.work_dir and (b.work_dir / "Pulumi.yaml").is_file()

    def test_outputs_leave_secrets_out(self, aws_home: Path, fake_wheel: Path, fake_cli: Any) -> None:
        """outputs() returns plain values and drops secret outputs."""
        out = _fleet(fake_wheel).outputs()
        assert out == {"url": "http://demo-1.elb.amazonaws.com", "asg_name": "demo-asg-123"}


class TestErrors:
    def test_missing_cli_is_backend_unavailable_with_the_install_command(
        self, aws_home: Path, fake_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without pulumi on PATH, launch() raises BackendUnavailable naming the install command, before any cloud call."""
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        assert shutil.which("pulumi") is None
        fleet = _fleet(fake_wheel, session=_ExplodingSession())
        with pytest.raises(BackendUnavailable) as info:
            fleet.launch()
        assert info.value.program == "pulumi"
        assert "get.pulumi.com" in str(info.value) and "brew install pulumi" in str(info.value)
        assert not fleet.work_dir.exists()

    def test_real_automation_api_reports_a_missing_cli_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The error pulumi.automation itself raises without a CLI is translated into BackendUnavailable."""
        from pulumi import automation as auto

        from mlops_lb.aws.stack import _translate

        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(FileNotFoundError) as info:
            auto.LocalWorkspace(work_dir=str(tmp_path))
        err = _translate("selecting stack", info.value)
        assert isinstance(err, BackendUnavailable) and "get.pulumi.com" in str(err)

    def test_destroy_needs_the_stack_name_as_confirmation(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any
    ) -> None:
        """destroy(confirm=...) with anything but the stack name is a SpecError and calls nothing."""
        with pytest.raises(SpecError) as info:
            _fleet(fake_wheel).destroy(confirm="yes")
        assert info.value.field == "confirm" and "'demo'" in str(info.value)
        assert fake_cli.calls() == []

    def test_failed_up_is_a_provision_error_with_the_useful_lines(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any
    ) -> None:
        """A failing `pulumi up` becomes ProvisionError carrying the CLI's error lines, the original chained."""
        from pulumi.automation import errors as auto_errors

        fleet = _fleet(fake_wheel)
        seen: list[str] = []
        with pytest.raises(ProvisionError) as info:
            fleet.launch(on_output=seen.append)
        assert "AccessDenied" in info.value.stderr and "CreateLoadBalancer" in info.value.stderr
        assert "harmless" not in info.value.stderr
        assert isinstance(info.value.__cause__, auto_errors.CommandError)
        up = [c for c in fake_cli.calls() if c["args"][:1] == ["up"]]
        assert len(up) == 1 and "--yes" in up[0]["args"]
        config = [c for c in fake_cli.calls() if c["args"][:2] == ["config", "set-all"]]
        assert (
            config
            and "targetRpsPerTarget=40.0" in config[0]["args"]
            and "aws:region=us-east-1" in config[0]["args"]
        )
        assert any("Updating" in line for line in seen)

    def test_failed_scale_leaves_the_spec_as_the_stack_has_it(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any
    ) -> None:
        """scale(max=...) whose `pulumi up` fails keeps the old bounds, so later calls check against what AWS has."""
        fleet = _fleet(fake_wheel)
        before = fleet.spec
        with pytest.raises(ProvisionError):
            fleet.scale(max=8, target_rps_per_target=20)
        assert fleet.spec == before

    def test_concurrent_update_is_named(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A locked stack (409 / concurrent update) is a ProvisionError that says so."""
        monkeypatch.setenv("FAKE_PULUMI_MODE", "conflict")
        with pytest.raises(ProvisionError, match="another update"):
            _fleet(fake_wheel).launch()

    def test_region_is_required_before_anything(
        self, aws_home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a region in the spec, arguments, session or environment, construction fails with SpecError."""
        monkeypatch.delenv("AWS_REGION", raising=False)
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        with pytest.raises(SpecError) as info:
            AwsFleet(FleetSpec(name="demo"))
        assert info.value.field == "region"

    def test_passphrase_never_reaches_logs(
        self, aws_home: Path, fake_wheel: Path, fake_cli: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Nothing logged while launching contains the passphrase."""
        caplog.set_level(logging.DEBUG)
        with pytest.raises(ProvisionError) as info:
            _fleet(fake_wheel).launch()
        secret = (aws_home / "passphrase").read_text()
        assert secret not in caplog.text and secret not in str(info.value)


class _ExplodingSession:
    """A boto3 session stand-in that fails the test if any AWS client is made."""

    region_name = "us-east-1"
    profile_name = None

    def client(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("no AWS call may happen before the CLI check")
