"""The bootstrap that cannot flap, and the warm pool that needs it (user data + program under mocks).

Rules (DESIGN §4, mlops_lb/_aws_rules.py): instances entering a warm pool are stopped *without waiting for user
data* and cloud-init runs user data on the first boot only, so a lifecycle hook on EC2_INSTANCE_LAUNCHING holds
them until CompleteLifecycleAction, and the server must be a systemd unit enabled at boot
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, WarmPoolSpec
from mlops_lb.aws.userdata import BOOT_STEPS, EXPECTED_BOOT_S, render_user_data
from mlops_lb.errors import SpecError

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"

ARGS = {
    "bucket": "b",
    "region": "us-east-1",
    "wheel_key": "wheels/0123456789abcdef/mlops_lb-0.1.0-py3-none-any.whl",
    "wheelhouse_prefix": "wheelhouse/fedcba9876543210",
    "port": 8080,
}


class TestUserData:
    def test_same_inputs_same_bytes(self) -> None:
        """A pure function: no timestamp, no random value (a changed byte would roll every instance)."""
        assert render_user_data(**ARGS) == render_user_data(**ARGS)

    def test_every_network_step_retries(self) -> None:
        """dnf, every S3 copy and the IMDS calls go through retry with backoff (old code: none retried)."""
        ud = render_user_data(**ARGS, model_key="model/aa/m.joblib")
        for step in ("dnf install", "aws s3 cp", "curl -sSf -X PUT http://169.254.169.254"):
            lines = [ln for ln in ud.splitlines() if step in ln and not ln.lstrip().startswith("#")]
            assert lines and all("retry " in ln for ln in lines), step
        assert "delay=$((delay * 2))" in ud

    def test_installs_pinned_wheels_offline(self) -> None:
        """pip never touches an index: the pinned wheelhouse with --no-index, the package with --no-deps."""
        ud = render_user_data(**ARGS)
        pips = [ln for ln in ud.splitlines() if "pip install" in ln]
        assert pips and all("--no-index" in ln for ln in pips)
        assert any("-r /opt/mlops_lb/wheelhouse/requirements.txt" in ln for ln in pips)
        assert not re.search(r"pip install [^\n]*(>=|upgrade)", ud)  # old: unpinned, --upgrade pip from PyPI

    def test_logs_to_the_console_and_a_file(self) -> None:
        """Everything is teed to /var/log/mlops-lb-bootstrap.log and the console (GetConsoleOutput)."""
        ud = render_user_data(**ARGS)
        assert "tee -a /var/log/mlops-lb-bootstrap.log" in ud and "/dev/console" in ud

    def test_server_and_lifecycle_watcher_are_enabled_at_boot(self) -> None:
        """Both units are enabled (a warmed instance is stopped, then started later without user data); the watcher
        is a long-running service polling target-lifecycle-state (a oneshot at boot never sees a running or
        hibernated pool leave: tests/aws/test_instance_sandbox.py runs both)."""
        ud = render_user_data(**ARGS, lifecycle_hook="demo-launching")
        assert "systemctl enable --now mlops-lb.service" in ud
        assert "systemctl enable --now mlops-lb-lifecycle.service" in ud
        unit = ud.split("mlops-lb-lifecycle.service <<'UNIT'")[1].split("UNIT")[0]
        assert (
            "WantedBy=multi-user.target" in unit and "Restart=always" in unit and "Type=oneshot" not in unit
        )
        watch = ud.split("cat > /opt/mlops_lb/lifecycle.sh <<'WATCH'")[1].split("WATCH")[0]
        assert "autoscaling/target-lifecycle-state" in watch and "HOOK=demo-launching" in watch
        assert watch.index("127.0.0.1:8080/health") < watch.index("complete-lifecycle-action")
        assert "record-lifecycle-action-heartbeat" in watch
        assert "complete-lifecycle-action" not in render_user_data(
            **ARGS
        )  # no warm pool, no hook to complete

    @pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
    def test_the_script_is_valid_bash_and_retry_backs_off(self, tmp_path: Any) -> None:
        """bash -n accepts the script; the retry function gives up after N attempts and succeeds when it can."""
        script = tmp_path / "ud.sh"
        script.write_text(render_user_data(**ARGS, lifecycle_hook="h"))
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
        fn = render_user_data(**ARGS).split("retry() {")[1].split("\n}\n")[0]
        probe = f"sleep() {{ :; }}\nretry() {{{fn}\n}}\nc=0; f() {{ c=$((c+1)); [ $c -ge 3 ]; }}\nretry 5 f && echo ok $c\nretry 2 false || echo gave-up"
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["ok", "3", "gave-up"]

    def test_boot_steps_add_up(self) -> None:
        """The paper bootstrap the preflight uses (docs/aws.md shows the same table)."""
        assert sum(s for _, s in BOOT_STEPS) == EXPECTED_BOOT_S and EXPECTED_BOOT_S > 60


class TestWarmPool:
    def test_spec_fields_and_defaults(self) -> None:
        """Exactly min_size, state, reuse_on_scale_in, max_group_prepared_capacity; YAML round trip."""
        import dataclasses

        assert [f.name for f in dataclasses.fields(WarmPoolSpec)] == [
            "min_size",
            "state",
            "reuse_on_scale_in",
            "max_group_prepared_capacity",
        ]
        wp = WarmPoolSpec()
        assert (wp.min_size, wp.state, wp.reuse_on_scale_in, wp.max_group_prepared_capacity) == (
            0,
            "stopped",
            False,
            None,
        )
        spec = FleetSpec(
            name="w", capacity={"min": 1, "max": 4, "warm_pool": {"min_size": 2, "state": "hibernated"}}
        )
        assert spec.capacity.warm_pool == WarmPoolSpec(min_size=2, state="hibernated")
        assert FleetSpec.from_yaml(spec.to_yaml()) == spec
        assert FleetSpec(name="n").capacity.warm_pool is None

    @pytest.mark.parametrize(
        ("bad", "field"),
        [
            ({"state": "frozen"}, "capacity.warm_pool.state"),
            ({"min_size": -1}, "capacity.warm_pool.min_size"),
            ({"minsize": 1}, "capacity.warm_pool.minsize"),
        ],
    )
    def test_bad_values_name_the_field(self, bad: dict[str, Any], field: str) -> None:
        with pytest.raises(SpecError) as info:
            FleetSpec(name="w", capacity={"warm_pool": bad})
        assert info.value.field == field

    def test_program_declares_the_pool_and_the_launching_hook(self, run_program: Any) -> None:
        """The group gets a warm pool and an EC2_INSTANCE_LAUNCHING hook; user data completes it; the role may."""
        spec = FleetSpec(
            name="warm",
            capacity=CapacitySpec(
                min=1,
                desired=1,
                max=4,
                warm_pool=WarmPoolSpec(min_size=2, reuse_on_scale_in=True, max_group_prepared_capacity=5),
            ),
        )
        rec = run_program(spec)
        asg = rec.one(ASG)
        assert asg["warmPool"] == {
            "poolState": "Stopped",
            "minSize": 2,
            "maxGroupPreparedCapacity": 5,
            "instanceReusePolicy": {"reuseOnScaleIn": True},
        }
        (hook,) = asg["initialLifecycleHooks"]
        assert (
            hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
            and hook["name"] == "warm-launching"
        )
        assert hook["heartbeatTimeout"] >= max(spec.aws_health_check.grace_period_s, 4 * EXPECTED_BOOT_S)
        # pulumi-aws applies initial_lifecycle_hooks on group creation only: the standalone hook carries it on a
        # live group (adding a warm pool later), with the same settings.
        standalone = rec.one("aws:autoscaling/lifecycleHook:LifecycleHook")
        assert {k: v for k, v in standalone.items() if k != "autoscalingGroupName"} == hook
        assert standalone["autoscalingGroupName"] == rec.outputs["asg_name"]
        ud = base64.b64decode(rec.one(LT)["userData"]).decode()
        assert "HOOK=warm-launching" in ud and "hibernationOptions" not in rec.one(LT)
        doc = json.loads(rec.one("aws:iam/rolePolicy:RolePolicy")["policy"])
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert {
            "autoscaling:CompleteLifecycleAction",
            "autoscaling:RecordLifecycleActionHeartbeat",
        } <= actions

    def test_hibernated_pool_launches_hibernation_enabled_instances(self, run_program: Any) -> None:
        """Hibernation can only be enabled at launch (enabling-hibernation.html): the template asks for it."""
        warm = WarmPoolSpec(min_size=1, state="hibernated")
        rec = run_program(
            FleetSpec(name="hib", capacity=CapacitySpec(min=1, desired=1, max=3, warm_pool=warm))
        )
        lt = rec.one(LT)
        assert lt["hibernationOptions"] == {"configured": True}
        assert lt["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"  # a hibernation prerequisite

    def test_no_pool_no_hook(self, run_program: Any) -> None:
        asg = run_program(FleetSpec(name="cold")).one(ASG)
        assert "warmPool" not in asg and "initialLifecycleHooks" not in asg
