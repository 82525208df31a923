"""Reproducible, content-addressed assets: the same code gives the same bytes, so a second `up` is a no-op.

Old code: `pip wheel --no-build-isolation` (fails without a recent setuptools, impossible from site-packages) and
wheels whose METADATA/RECORD timestamps differ per build; the hash went into user data, so every `pulumi up`
(every `fleet.scale(max=...)`) made a new launch-template version and replaced every instance.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec
from mlops_lb.aws.assets import (
    Wheelhouse,
    build_wheel,
    build_wheelhouse,
    pinned_requirements,
    pip_download_command,
    platform_tags,
)
from mlops_lb.aws.program import Assets

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
POLICY = "aws:autoscaling/policy:Policy"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestWheel:
    def test_two_builds_are_byte_identical(self, tmp_path: Path) -> None:
        """Two builds of the same installed package, in different directories and times, hash the same."""
        a = build_wheel(tmp_path / "a")
        b = build_wheel(tmp_path / "b")
        assert a.name == b.name and _sha(a) == _sha(b)
        with zipfile.ZipFile(a) as zf:
            infos = zf.infolist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert [i.filename for i in infos][: len(infos) - 4] == sorted(i.filename for i in infos[:-4])

    def test_a_site_packages_copy_gives_the_same_wheel_without_setuptools(self, tmp_path: Path) -> None:
        """From a plain copy of the package (what a site-packages install is), with setuptools unimportable,
        in a fresh interpreter: the same bytes as from the source tree."""
        site = tmp_path / "site-packages"
        shutil.copytree(
            Path(__import__("mlops_lb").__file__).parent,
            site / "mlops_lb",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        code = (
            "import sys; sys.modules['setuptools'] = None; sys.modules['pip'] = None\n"
            "from pathlib import Path\n"
            "from mlops_lb.aws.assets import build_wheel\n"
            f"print(build_wheel({str(tmp_path / 'out')!r}, package_dir=Path({str(site / 'mlops_lb')!r})))\n"
        )
        # cwd is the checkout, whose egg-info differs from the installed metadata: the bytes must not.
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        copied = Path(out.stdout.strip())
        assert _sha(copied) == _sha(build_wheel(tmp_path / "tree"))

    def test_the_wheel_installs_and_records_its_files(self, tmp_path: Path) -> None:
        """pip installs it offline (--no-index --no-deps); RECORD hashes match; the console script exists."""
        wheel = build_wheel(tmp_path / "w")
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            record = zf.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
            for line in record.splitlines():
                name, digest, _ = line.split(",")
                if digest:
                    want = (
                        base64.urlsafe_b64encode(hashlib.sha256(zf.read(name)).digest()).rstrip(b"=").decode()
                    )
                    assert digest == f"sha256={want}", name
            assert (
                "mlops-lb = mlops_lb.cli:main"
                in zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
            )
        assert "mlops_lb/__init__.py" in names and "mlops_lb/examples/demo.yaml" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        target = tmp_path / "target"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-index",
                "--no-deps",
                "--target",
                str(target),
                str(wheel),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert (target / "mlops_lb" / "spec.py").is_file()


class TestWheelhouse:
    def test_pins_are_the_installed_versions_of_the_serve_closure(self) -> None:
        """Every serve requirement and what it pulls in is pinned to the version installed here."""
        from importlib import metadata

        pins = dict(p.split("==") for p in pinned_requirements())
        for name in ("fastapi", "uvicorn", "scikit-learn", "numpy", "scipy", "starlette", "pydantic"):
            assert pins[name] == metadata.version(name), name
        assert "pulumi" not in pins and "pandas" not in pins  # only what the server needs
        assert pinned_requirements() == pinned_requirements()

    def test_download_command_targets_the_instance_platform(self, tmp_path: Path) -> None:
        """Binary wheels only, no dependency resolution, the instance's platform tags and Python."""
        cmd = pip_download_command(["numpy==2.0.0"], tmp_path, architecture="arm64", python_version="3.11")
        assert cmd[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in cmd and "--no-deps" in cmd
        assert cmd[cmd.index("--python-version") + 1] == "3.11" and "--implementation" in cmd
        plats = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
        assert plats == list(platform_tags("arm64")) and all(p.endswith("aarch64") for p in plats)
        assert cmd[-1] == "numpy==2.0.0" and "--no-index" not in cmd

    def test_builds_from_a_local_find_links_dir_and_caches(self, tmp_path: Path) -> None:
        """With a local find-links directory (no PyPI), pip downloads the pinned wheel; a second call reuses
        the cache without running pip; the digest depends on the wheels' bytes."""
        links = tmp_path / "links"
        links.mkdir()
        wheel = build_wheel(links)  # a real py3-none-any wheel pip can pick for any platform
        pin = f"mlops-lb=={wheel.name.split('-')[1]}"
        calls: list[list[str]] = []

        def run(cmd: list[str], **kw: Any) -> Any:
            calls.append(cmd)
            return subprocess.run(cmd, **kw, timeout=120)

        house = build_wheelhouse([pin], cache_dir=tmp_path / "cache", find_links=links, run=run)
        assert [p.name for p in house.files] == [wheel.name, "requirements.txt"]
        assert (house.path / "requirements.txt").read_text() == f"{pin}\n"
        again = build_wheelhouse([pin], cache_dir=tmp_path / "cache", find_links=links, run=run)
        assert len(calls) == 1 and again == house

    def test_a_failed_download_names_the_platform(self, tmp_path: Path) -> None:
        """pip failing (a version without a wheel for the instance) is a ProvisionError with pip's stderr."""
        from mlops_lb.errors import ProvisionError

        def run(cmd: list[str], **kw: Any) -> Any:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for x==1")

        with pytest.raises(ProvisionError, match="arm64") as info:
            build_wheelhouse(["x==1"], architecture="arm64", cache_dir=tmp_path, run=run)
        assert "No matching distribution" in info.value.stderr


def _plain(value: Any) -> Any:
    """Inputs with Pulumi assets as (kind, path, sha256): asset objects have no equality of their own."""
    import pulumi

    if isinstance(value, pulumi.FileAsset):
        return ("FileAsset", value.path, _sha(Path(value.path)))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _inputs(rec: Any) -> dict[tuple[str, str], Any]:
    return {(t, n): _plain(i) for t, n, i in rec.resources}


class TestNoChangeWhenNothingChanged:
    def test_two_program_runs_declare_identical_inputs_for_every_resource(
        self, run_program: Any, tmp_path: Path, fake_wheelhouse: Wheelhouse
    ) -> None:
        """Same spec, wheel built twice, same model and wheelhouse: every resource's inputs are identical,
        user data byte for byte, so the second `pulumi up` changes nothing (no refresh)."""
        model = tmp_path / "m.joblib"
        model.write_bytes(b"model bytes")
        spec = FleetSpec(name="same", model={"source": str(model), "allow_pickle": True}, tags={"team": "ml"})
        first = run_program(
            spec, assets=Assets(wheel=build_wheel(tmp_path / "1"), model=model, wheelhouse=fake_wheelhouse)
        )
        second = run_program(
            spec, assets=Assets(wheel=build_wheel(tmp_path / "2"), model=model, wheelhouse=fake_wheelhouse)
        )
        assert _inputs(first) == _inputs(second)
        assert first.one(LT)["userData"] == second.one(LT)["userData"]
        assert len(first.resources) >= 20

    def test_a_code_change_changes_only_the_wheel_and_the_template(
        self, run_program: Any, tmp_path: Path, fake_wheelhouse: Wheelhouse
    ) -> None:
        """A changed wheel changes its content-addressed key, hence user data and the template; nothing else."""
        spec = FleetSpec(name="code")
        w1 = build_wheel(tmp_path / "1")
        w2 = tmp_path / "2" / w1.name
        w2.parent.mkdir()
        w2.write_bytes(w1.read_bytes() + b"\0")
        a = _inputs(run_program(spec, assets=Assets(wheel=w1, wheelhouse=fake_wheelhouse)))
        b = _inputs(run_program(spec, assets=Assets(wheel=w2, wheelhouse=fake_wheelhouse)))
        changed = {k for k in a if a[k] != b[k]}
        assert {t for t, _ in changed} == {"aws:s3/bucketObjectv2:BucketObjectv2", LT}

    def test_scale_config_changes_only_the_group_and_the_policy(self, run_program: Any) -> None:
        """What scale(min, max, target_rps_per_target) sets (stack config) changes the group and the policy;
        the launch template stays (no new version, no instance refresh)."""
        spec = FleetSpec(name="scale")
        base = _inputs(run_program(spec))
        moved = _inputs(
            run_program(
                spec,
                config={
                    "mlops-lb:minSize": "2",
                    "mlops-lb:maxSize": "9",
                    "mlops-lb:targetRpsPerTarget": "20",
                },
            )
        )
        changed = {k for k in base if base[k] != moved[k]}
        assert changed == {(ASG, "scale-asg"), (POLICY, "scale-requests")}


def _wheel(folder: Any, name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) so pip's resolver can read it offline."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    if any("extra ==" in r for r in requires):
        meta += "Provides-Extra: standard\n"
    wheel = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-{tag}.whl", "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{dist}/METADATA", meta)
        zf.writestr(f"{dist}/WHEEL", wheel)
        zf.writestr(f"{dist}/RECORD", "")


class TestResolvedForTheInstance:
    """Pins come from pip's resolver run for the instance's platform and Python, not from this interpreter."""

    @pytest.fixture
    def index(self, tmp_path: Any) -> Any:
        d = tmp_path / "index"
        d.mkdir()
        reqs = ("dep_a", 'dep_std; extra == "standard"', 'dep_old; python_version < "3.12"')
        _wheel(d, "srv", "1.0", "py3-none-any", reqs)
        _wheel(d, "dep_a", "1.0", "cp313-cp313-manylinux_2_17_x86_64")  # the only dep_a with a cp313 wheel
        _wheel(d, "dep_a", "2.0", "cp311-cp311-manylinux_2_17_x86_64")
        _wheel(d, "dep_std", "1.0", "py3-none-any")
        _wheel(d, "dep_old", "1.0", "py3-none-any")
        return d

    def test_extras_and_markers_are_resolved_for_the_instance_python(self, index: Any) -> None:
        """srv[standard] keeps its extra's dependency (the old pins dropped uvicorn[standard]'s), and each target
        Python gets versions that have wheels for it, whatever Python runs this test."""
        from mlops_lb.aws.assets import resolve_requirements

        assert resolve_requirements(["srv[standard]"], python_version="3.13", find_links=index) == (
            "dep-a==1.0",
            "dep-std==1.0",
            "srv==1.0",
        )
        assert resolve_requirements(["srv[standard]"], python_version="3.11", find_links=index) == (
            "dep-a==2.0",
            "dep-old==1.0",
            "dep-std==1.0",
            "srv==1.0",
        )

    def test_no_wheel_for_the_instance_is_a_clear_error(self, index: Any) -> None:
        from mlops_lb.aws.assets import resolve_requirements
        from mlops_lb.errors import ProvisionError

        with pytest.raises(ProvisionError, match=r"Python 3\.12 failed"):
            resolve_requirements(["srv"], python_version="3.12", find_links=index)  # no dep_a for cp312

    @pytest.mark.parametrize(
        ("launcher", "instance"), [((3, 10), "3.11"), ((3, 11), "3.11"), ((3, 13), "3.13"), ((3, 14), "3.14")]
    )
    def test_instance_python_follows_the_launcher_within_al2023s_range(
        self, launcher: Any, instance: str
    ) -> None:
        from mlops_lb.aws.assets import instance_python

        assert instance_python(launcher) == instance

    def test_a_launcher_newer_than_al2023_ships_gets_the_range(self) -> None:
        from mlops_lb.aws.assets import instance_python
        from mlops_lb.errors import ProvisionError

        with pytest.raises(ProvisionError, match=r"3\.11-3\.14"):
            instance_python((3, 15))


def test_a_launcher_without_pip_is_told_so(tmp_path: Path) -> None:
    """A venv made by uv has no pip (found launching from a 3.13 uv venv: bench/launch_from_py313.py): the error
    names pip and the fix, not "every pinned version needs a binary wheel", which sent users after the wrong cause."""
    import subprocess

    from mlops_lb.errors import ProvisionError

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", f"{cmd[0]}: No module named pip\n")

    with pytest.raises(ProvisionError, match="needs pip") as info:
        build_wheelhouse(["numpy==2.0.0"], cache_dir=tmp_path, run=run)
    assert "uv pip install pip" in str(info.value) and "binary wheel" not in str(info.value)
