"""What an EC2 instance runs, run here: the launch template's user data, executed byte for byte in the sandbox.

The user data comes from the Pulumi program under the strict mocks (tests/aws/conftest.py), never from a "test
mode" rendering: the sha256 of what bash executed equals the sha256 of what the launch template declares. See
tests/aws/instance_sandbox/ for what is real (bash, curl, tar, Python, pip, our server) and what is a PATH shim
(dnf, systemctl, aws), each with the documented rules it follows.

Warm pools (https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html, read
2026-12-06): with a launching hook an instance pauses at ``Warmed:Pending:Wait`` when it enters the pool and again
at ``Pending:Wait`` when it leaves it; Auto Scaling stops or hibernates it as soon as it has launched into the pool
(stopped/hibernated pools), without waiting for user data; cloud-init runs user data on the first boot only. The
instance sees where it is headed in the IMDS item ``autoscaling/target-lifecycle-state``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, WarmPoolSpec

sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None
from instance_sandbox import available, fixtures  # noqa: E402
from instance_sandbox.fixtures import CACHE, Instance  # noqa: E402

launch, pip_wheels = fixtures.launch, fixtures.pip_wheels  # the sandbox's fixtures, shared with other modules

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(available() is not None, reason=str(available()))]

PORT = 8080


def command_spec(**kw: Any) -> FleetSpec:
    server = {
        "command": ["python", "app/server.py", "--port", "{port}"],
        "install": "app",
        **kw.pop("server", {}),
    }
    return FleetSpec.from_dict({"name": "demo", "server": server, **kw})


def assert_booted(inst: Instance) -> None:
    proc = inst.bootstrap  # type: ignore[attr-defined]
    assert inst.executed_sha256 == inst.declared_sha256  # type: ignore[attr-defined]
    assert proc.returncode == 0, inst.diagnose()
    # The user data's output reaches the console through `exec > >(tee | logger ...)`: a process substitution that
    # bash does not wait for, so its last lines may land just after the script exited (cloud-init does not wait
    # either). Wait for them, bounded.
    deadline = time.monotonic() + 10.0
    while "mlops-lb: bootstrap done" not in inst.console() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "mlops-lb: bootstrap done" in inst.console(), inst.diagnose()


@pytest.mark.slow
class TestCommandServer:
    def test_user_data_runs_byte_for_byte_and_the_server_answers_health(self, launch: Any) -> None:
        """kind: command, no warm pool: the declared user data boots the user's server on the target-group port."""
        inst = launch(command_spec())
        assert_booted(inst)
        inst.wait_for(lambda: inst.get(PORT, "/health") == 200, timeout=30, what="/health 200")
        installed = [c["argv"] for c in inst.dnf_calls()]
        assert ["install", "-y", "python3.13", "python3.13-pip"] in installed
        env = inst.file("/etc/mlops-lb.env")
        assert env.is_file() and "TARGET_ID=i-0123456789abcdef0" in env.read_text()
        assert_console_and_units_clean(inst)


HOOK = "demo-launching"
WARMED = {"stopped": "Warmed:Stopped", "running": "Warmed:Running", "hibernated": "Warmed:Hibernated"}


def warm_spec(state: str) -> FleetSpec:
    return command_spec(
        capacity=CapacitySpec(min=1, desired=1, max=4, warm_pool=WarmPoolSpec(min_size=1, state=state))
    )


def completions(inst: Instance) -> list[float]:
    """When CompleteLifecycleAction succeeded (the recorded calls: moto 5 has no CompleteLifecycleAction)."""
    return [
        c["t"] for c in inst.aws_calls() if c["argv"][1:2] == ["complete-lifecycle-action"] and c["rc"] == 0
    ]


@pytest.mark.serial
class TestWarmPool:
    """From launch into the pool (Warmed:Pending:Wait) to InService (Pending:Wait), for each pool state."""

    # Suite budget: one sandbox boot in the default run (the hibernated pool: a non-boot transition, the case the
    # oneshot unit missed); the other states and kinds run with -m slow.
    @pytest.mark.parametrize(
        "state",
        [
            pytest.param("stopped", marks=pytest.mark.slow),
            pytest.param("running", marks=pytest.mark.slow),
            "hibernated",
        ],
    )
    def test_warm_instance_reaches_in_service_and_serves(self, launch: Any, state: str) -> None:
        """The hook is completed once entering the pool and once leaving it; the server then answers /health."""
        inst = launch(warm_spec(state), lifecycle=WARMED[state], hook=HOOK)
        assert_booted(inst)
        assert_console_and_units_clean(inst)
        inst.wait_for(lambda: not inst.action_pending(), timeout=60, what="the warm-pool hook completed")
        assert len(completions(inst)) == 1
        if state == "stopped":
            inst.stop()
            inst.set_lifecycle("InService", hook=HOOK)
            inst.boot()
        elif state == "hibernated":
            inst.hibernate()
            inst.set_lifecycle("InService", hook=HOOK)
            inst.resume()
        else:
            inst.set_lifecycle("InService", hook=HOOK)
        inst.wait_for(
            lambda: not inst.action_pending(), timeout=45, what=f"the hook completed leaving a {state} pool"
        )
        assert len(completions(inst)) == 2
        assert inst.get(PORT, "/health") == 200
        inst.mark("test", "InService and /health 200")
        print(
            f"\ntimeline, warm pool {state}:\n"
            + "\n".join(f"{t:8.2f}  {s:12} {w}" for t, s, w in inst.timeline())
        )


def assert_console_and_units_clean(inst: Instance) -> None:
    """No IMDS token in the console or journal (set -x traced TOKEN=... there, and GetConsoleOutput shows the
    console), /etc/mlops-lb.env is 0600 (was 0644), and systemd-analyze verify accepts every unit written (run
    inside the instance, where the ExecStart programs exist; verify exits 0 on a line it ignores, so any complaint
    naming the file fails)."""
    tokens = inst.tokens()
    assert tokens, "the user data asked IMDS for no token"
    seen = inst.console() + (inst.root / "journal.log").read_text(errors="replace")
    assert not [t for t in tokens if t in seen]
    assert inst.file("/etc/mlops-lb.env").stat().st_mode & 0o777 == 0o600
    units = sorted(p.name for p in inst.file("/etc/systemd/system").glob("mlops-lb*.service"))
    assert "mlops-lb.service" in units
    for unit in units:
        proc = inst.run(["systemd-analyze", "verify", "--man=no", f"/etc/systemd/system/{unit}"])
        assert proc.returncode == 0 and f"{unit}:" not in proc.stderr, (unit, proc.stderr)


def cached_wheelhouse(python: str) -> Any:
    """The wheelhouse scripts/instance_wheelhouses.py (setup.sh --dev) resolved for ``python``, or skip."""
    from mlops_lb.aws.assets import build_wheelhouse

    tag = f"cp{python.replace('.', '')}"
    for req in sorted((CACHE / "wheelhouse").glob("*/requirements.txt")):
        if any(tag in w.name for w in req.parent.glob("numpy-*.whl")):
            pins = tuple(req.read_text().split())
            return build_wheelhouse(
                pins, python_version=python, cache_dir=CACHE / "wheelhouse"
            )  # a cache hit
    pytest.skip(f"no wheelhouse for Python {python} cached: python scripts/instance_wheelhouses.py {python}")


class TestModelServer:
    @pytest.mark.parametrize(
        "python", [pytest.param("3.13", marks=pytest.mark.slow), pytest.param("3.12", marks=pytest.mark.slow),
                   pytest.param("3.11", marks=pytest.mark.slow)],
    )  # fmt: skip
    def test_default_model_server_installs_offline_and_serves(
        self, launch: Any, fake_wheel: Path, python: str
    ) -> None:
        """The default model server: AL2023's pip installs the wheelhouse resolved for the instance's Python with
        --no-index (the sandbox has no network but its IMDS), and `mlops-lb serve` answers /health with its id."""
        from mlops_lb.aws.assets import build_wheel
        from mlops_lb.aws.program import Assets

        house = cached_wheelhouse(python)
        spec = FleetSpec(name="demo")
        assets = Assets(wheel=build_wheel(Path("dist")), wheelhouse=house)
        inst = launch(spec, python=python, assets=assets)
        assert_booted(inst)
        inst.wait_for(lambda: inst.get(PORT, "/health") == 200, timeout=120, what="model server /health 200")
        assert [c["argv"] for c in inst.dnf_calls()] == [
            ["install", "-y", f"python{python}", f"python{python}-pip"]
        ]
        print(
            f"\ntimeline, model server on {python}:\n"
            + "\n".join(f"{t:8.2f}  {s:12} {w}" for t, s, w in inst.timeline())
        )


def metric_puts(inst: Instance) -> list[dict[str, Any]]:
    return [c for c in inst.aws_calls() if c["argv"][:2] == ["cloudwatch", "put-metric-data"]]


@pytest.mark.slow  # two of the agent's 60 s publishing periods, at least
@pytest.mark.serial
class TestMetricsAgent:
    def test_the_agent_publishes_only_in_service_after_the_hook(self, launch: Any) -> None:
        """concurrency_per_target with a running warm pool: while Warmed:Running (server healthy, scrapes
        succeeding) a whole publishing period passes with no put-metric-data; once InService and the hook
        completed, the agent publishes. Old agent: it published from the pool (AWS leaves warm-pool instances out of
        its own group metrics, not out of a customized one), diluting the average target tracking follows."""
        spec = command_spec(
            server={"metrics_path": "/metrics"},
            scaling={"metric": "concurrency_per_target", "target_concurrency_per_target": 4},
            capacity=CapacitySpec(
                min=1, desired=1, max=4, warm_pool=WarmPoolSpec(min_size=1, state="running")
            ),
        )
        inst = launch(spec, lifecycle=WARMED["running"], hook=HOOK)
        assert_booted(inst)
        inst.wait_for(lambda: not inst.action_pending(), timeout=60, what="the warm-pool hook completed")
        inst.wait_for(lambda: inst.get(PORT, "/metrics") == 200, timeout=30, what="/metrics answers")
        time.sleep(75)  # more than one publishing period (60 s) with the server healthy, in the pool
        assert metric_puts(inst) == [], "published from the warm pool"
        inst.set_lifecycle("InService", hook=HOOK)
        inst.wait_for(lambda: not inst.action_pending(), timeout=45, what="the hook completed for InService")
        inst.wait_for(lambda: bool(metric_puts(inst)), timeout=90, what="put-metric-data once InService")
        inst.mark("test", "published InService")
        print(
            "\ntimeline, metrics agent:\n" + "\n".join(f"{t:8.2f}  {s:12} {w}" for t, s, w in inst.timeline())
        )
