"""The stack pins its assets: ``scale()`` never rebuilds the wheel or the wheelhouse; ``update_code()`` ships new ones.

Old code rebuilt every asset from the launching environment on every ``pulumi up``: upgrade one package, pull a
commit, or scale from another machine, and ``fleet.scale(max=8)`` wrote new bucket keys into user data, hence a new
launch-template version and an instance refresh of every instance (docs/aws.md promised the opposite).

Each test drives a real ``AwsFleet`` whose Pulumi stack runs the fleet's own inline program under
the strict mocks (every resource checked against the AWS rules in mlops_lb/_aws_rules.py); only the Pulumi engine is
replaced, and the resolver and wheelhouse download (PyPI) are the "local environment" the tests change.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec
from mlops_lb.aws import AwsFleet
from mlops_lb.aws.assets import Wheelhouse
from mlops_lb.errors import ProvisionError

REGION = "us-east-1"
SPEC = FleetSpec(name="demo", region=REGION, capacity=CapacitySpec(min=1, desired=1, max=4))
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"


class MockedStack:
    """A Pulumi stack whose ``up``/``preview`` run the inline program under the strict mocks; config kept here."""

    def __init__(self, program: Callable[[], None], strict_mocks: Any) -> None:
        self.program = program
        self.recorded_type, self.make_mocks = strict_mocks
        self.config: dict[str, str] = {}
        self.ups: list[Any] = []  # one Recorded per up
        self.previews = 0

    # the parts of pulumi.automation.Stack that AwsFleet uses
    def set_all_config(self, cfg: dict[str, Any]) -> None:
        self.config.update({k: v.value for k, v in cfg.items()})

    def get_all_config(self) -> dict[str, Any]:
        from pulumi import automation as auto

        return {
            (k if ":" in k else f"mlops-lb:{k}"): auto.ConfigValue(value=v) for k, v in self.config.items()
        }

    def _run(self) -> Any:
        import pulumi

        rec = self.recorded_type()
        mocks = self.make_mocks(rec, region=REGION)
        policy = asyncio.get_event_loop_policy()
        try:
            policy.get_event_loop()
        except RuntimeError:
            policy.set_event_loop(policy.new_event_loop())
        pulumi.runtime.set_mocks(mocks, project="mlops-lb", stack="demo", preview=False)
        pulumi.runtime.set_all_config(
            {(k if ":" in k else f"mlops-lb:{k}"): v for k, v in self.config.items()}
        )
        exported: dict[str, Any] = {}
        real_export = pulumi.export
        pulumi.export = lambda k, v: exported.__setitem__(k, v)  # type: ignore[assignment]

        @pulumi.runtime.test
        def body() -> Any:
            self.program()
            return pulumi.Output.all(**exported).apply(rec.outputs.update)

        try:
            body()
        finally:
            pulumi.export = real_export  # type: ignore[assignment]
            pulumi.runtime.set_all_config({})
        return rec

    def up(self, **_: Any) -> Any:
        from pulumi import automation as auto

        rec = self._run()
        self.ups.append(rec)
        return type(
            "UpResult", (), {"outputs": {k: auto.OutputValue(v, False) for k, v in rec.outputs.items()}}
        )

    def preview(self, **_: Any) -> Any:
        rec = self._run()
        self.previews += 1
        last = self.ups[-1] if self.ups else None
        changed = sum(
            1
            for t, n, i in rec.resources
            if last is None or [j for u, m, j in last.resources if (u, m) == (t, n)] != [i]
        )
        return type("PreviewResult", (), {"change_summary": {"update": changed}})

    def outputs(self) -> dict[str, Any]:
        from pulumi import automation as auto

        return {k: auto.OutputValue(v, False) for k, v in (self.ups[-1].outputs if self.ups else {}).items()}


class LocalEnv:
    """What the launching machine would build: the resolver's pins and the wheel's bytes, changeable by a test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pins: tuple[str, ...] = ("fastapi==0.115.0", "numpy==2.0.0")
        self.code = b"v1"
        self.resolves = 0
        self.wheel_builds = 0

    def resolve(self, roots: Any = None, *, python_version: str = "3.11", **_: Any) -> tuple[str, ...]:
        self.resolves += 1
        return self.pins

    def build_house(
        self, pins: Any, *, architecture: str = "x86_64", python_version: str = "3.11", **_: Any
    ) -> Any:
        import hashlib

        key = hashlib.sha256("|".join(pins).encode()).hexdigest()
        d = self.tmp / "houses" / key[:12]
        d.mkdir(parents=True, exist_ok=True)
        for p in pins:  # one stand-in wheel per pin, named as pip would name it
            name, _, ver = p.partition("==")
            (d / f"{name}-{ver}-py3-none-any.whl").write_bytes(b"PK\x05\x06" + p.encode())
        (d / "requirements.txt").write_text("".join(f"{p}\n" for p in pins))
        return Wheelhouse(path=d, requirements=tuple(pins), digest=key, python_version=python_version,
                          architecture=architecture)  # fmt: skip

    def build_wheel(self, *a: Any, **k: Any) -> Path:
        self.wheel_builds += 1
        d = self.tmp / "wheels" / str(self.wheel_builds)
        d.mkdir(parents=True)
        path = d / "mlops_lb-0.1.0-py3-none-any.whl"
        path.write_bytes(b"PK\x05\x06" + self.code)
        return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalEnv:
    import mlops_lb.aws.assets as assets
    import mlops_lb.aws.program as program

    e = LocalEnv(tmp_path / "env")
    monkeypatch.setattr(assets, "resolve_requirements", e.resolve)
    monkeypatch.setattr(assets, "build_wheelhouse", e.build_house)
    monkeypatch.setattr(assets, "build_wheel", e.build_wheel)
    monkeypatch.setattr(program, "build_wheel", e.build_wheel)  # where the old program built it on every run
    monkeypatch.delenv("MLOPS_LB_WHEEL", raising=False)
    return e


@pytest.fixture
def stacks(fake_cli: Any, strict_mocks: Any, monkeypatch: pytest.MonkeyPatch) -> list[MockedStack]:
    """Every stack AwsFleet selects is a MockedStack (one per fleet object; they share the config like Pulumi)."""
    from pulumi import automation as auto

    made: list[MockedStack] = []

    def select(*, stack_name: str, project_name: str, program: Any, opts: Any) -> MockedStack:
        st = MockedStack(program, strict_mocks)
        if made:  # the same stack seen from a new fleet object (a restarted kernel, another machine)
            st.config, st.ups = made[-1].config, made[-1].ups
        made.append(st)
        return st

    monkeypatch.setattr(auto, "create_or_select_stack", select)

    # The account the strict mocks pretend to be (its subnets and offerings), as a passing preflight resolves it;
    # preflight itself is tested on moto in test_preflight.py.
    from _awsaccount import RESOLVED

    from mlops_lb.aws._preflight import Preflight

    def preflight(self: AwsFleet) -> Preflight:
        pf = Preflight(resolved=dict(RESOLVED))
        pf.add("account", True, "the strict mocks' account")
        return pf

    monkeypatch.setattr(AwsFleet, "preflight", preflight)
    return made


def _user_data(rec: Any) -> str:
    return base64.b64decode(rec.one(LT)["userData"]).decode()


def _group_refresh(rec: Any) -> tuple[Any, Any]:
    g = rec.one(ASG)
    return g["launchTemplate"], g["instanceRefresh"]


class TestScaleKeepsTheAssets:
    def test_scale_after_a_package_upgrade_and_a_code_change_rolls_nothing(
        self, stacks: list[MockedStack], env: LocalEnv
    ) -> None:
        """launch; then the resolver pins other versions and the wheel's bytes change; scale(max=8) declares the
        same user data and the same launch template for the group (no new version, no refresh); nothing rebuilt."""
        fleet = AwsFleet(SPEC)
        fleet.launch()
        first = stacks[-1].ups[-1]
        env.pins, env.code = ("fastapi==0.116.0", "numpy==2.1.0"), b"v2"

        fleet.scale(max=8)
        after = stacks[-1].ups[-1]
        assert after.one(ASG)["maxSize"] == 8  # the update did run and changed the group
        assert _user_data(after) == _user_data(first)
        assert _group_refresh(after) == _group_refresh(first)
        restarted = AwsFleet(SPEC)  # a restarted kernel: a new fleet object, the same stack
        restarted.scale(max=6)
        assert stacks[-1].ups[-1].one(ASG)["maxSize"] == 6
        assert _user_data(stacks[-1].ups[-1]) == _user_data(first)
        assert env.resolves == 1 and env.wheel_builds == 1
        assert "numpy==2.0.0" in fleet.assets_lock().requirements  # type: ignore[union-attr]

    def test_scale_from_another_machine_fetches_the_pinned_assets_from_the_stacks_bucket(
        self,
        moto_account: Any,
        stacks: list[MockedStack],
        env: LocalEnv,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A second machine (empty asset cache, other local pins) scales the stack: the assets come back from the
        stack's bucket by the recorded keys, checked by hash, and user data stays byte-identical."""
        import boto3

        fleet = AwsFleet(SPEC)
        fleet.launch()
        first = stacks[-1].ups[-1]
        # What `pulumi up` uploaded: every staged object, into the (moto) bucket the stack outputs.
        bucket = first.outputs["bucket"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=bucket)
        cache = Path(str(tmp_path / "mlops-home" / "assets"))
        for f in cache.rglob("*"):
            if f.is_file():
                s3.put_object(Bucket=bucket, Key=f.relative_to(cache).as_posix(), Body=f.read_bytes())

        monkeypatch.setenv("MLOPS_LB_HOME", str(tmp_path / "other-machine"))
        env.pins, env.code = ("fastapi==0.116.0", "numpy==2.1.0"), b"v2"
        other = AwsFleet(SPEC)
        other.scale(max=8)
        assert _user_data(stacks[-1].ups[-1]) == _user_data(first)
        assert env.resolves == 1 and env.wheel_builds == 1

        # An object changed behind the stack's back is refused, not shipped.
        lock = other.assets_lock()
        assert lock is not None
        s3.put_object(Bucket=bucket, Key=lock.wheel_key, Body=b"tampered")
        monkeypatch.setenv("MLOPS_LB_HOME", str(tmp_path / "third-machine"))
        with pytest.raises(ProvisionError, match="changed outside the stack"):
            AwsFleet(SPEC).scale(max=6)


class TestUpdateCode:
    def test_update_code_shows_the_diff_then_refreshes_keeping_capacity(
        self, stacks: list[MockedStack], env: LocalEnv
    ) -> None:
        """update_code() rebuilds, says which packages and code change before the preview and the update, and the
        new user data reaches the template; the group's refresh keeps capacity (min healthy 100 %)."""
        fleet = AwsFleet(SPEC)
        fleet.launch()
        first = stacks[-1].ups[-1]
        env.pins, env.code = ("fastapi==0.115.0", "numpy==2.1.0", "scipy==1.14.0"), b"v2"
        seen: list[str] = []
        assert fleet.update_code(on_output=seen.append) is True
        text = "".join(seen)
        assert "numpy 2.0.0 -> 2.1.0" in text and "scipy added (1.14.0)" in text and "mlops_lb wheel" in text
        assert "fastapi" not in text  # unchanged pins are not listed
        assert text.index("numpy 2.0.0 -> 2.1.0") < text.index("preview:")  # the diff first
        assert stacks[-1].previews == 1
        after = stacks[-1].ups[-1]
        assert _user_data(after) != _user_data(first)
        prefs = after.one(ASG)["instanceRefresh"]["preferences"]
        assert prefs["minHealthyPercentage"] == 100 and prefs["maxHealthyPercentage"] == 200
        assert "numpy==2.1.0" in fleet.assets_lock().requirements  # type: ignore[union-attr]

    def test_update_code_with_nothing_new_runs_no_update(
        self, stacks: list[MockedStack], env: LocalEnv
    ) -> None:
        """The same environment rebuilt gives the same assets: no preview, no up, False."""
        fleet = AwsFleet(SPEC)
        fleet.launch()
        ups = len(stacks[-1].ups)
        seen: list[str] = []
        assert fleet.update_code(on_output=seen.append) is False
        assert "nothing to ship" in "".join(seen)
        assert len(stacks[-1].ups) == ups and stacks[-1].previews == 0

    def test_a_failed_update_code_leaves_the_old_assets_pinned(
        self, stacks: list[MockedStack], env: LocalEnv, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The update fails (here: the preview): the stack keeps the assets its instances run, so the next
        scale() ships nothing new behind the user's back."""
        fleet = AwsFleet(SPEC)
        fleet.launch()
        first = stacks[-1].ups[-1]
        env.pins, env.code = ("fastapi==0.115.0", "numpy==2.1.0"), b"v2"

        def boom(**_: Any) -> Any:
            raise RuntimeError("preview interrupted")

        monkeypatch.setattr(stacks[-1], "preview", boom)
        with pytest.raises(ProvisionError, match="preview"):
            fleet.update_code()
        assert "numpy==2.0.0" in fleet.assets_lock().requirements  # type: ignore[union-attr]
        fleet.scale(max=8)
        assert _user_data(stacks[-1].ups[-1]) == _user_data(first)
