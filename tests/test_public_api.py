"""The front door: ``mlops_lb.__all__`` is sorted and complete, and ``import mlops_lb`` is cheap and inert."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import mlops_lb

HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore", "matplotlib", "ipywidgets", "pandas")


def test_all_is_sorted_and_unique():
    """__all__ is kept sorted, without duplicates."""
    assert mlops_lb.__all__ == sorted(set(mlops_lb.__all__))


def test_lazy_names_are_exported():
    """Every name resolved on first use is listed in __all__."""
    assert set(mlops_lb._LAZY) <= set(mlops_lb.__all__)


def test_every_public_object_is_exported():
    """Every public class or function the package namespace holds is in __all__ (submodules and imports aside)."""
    missing = [
        name
        for name, obj in vars(mlops_lb).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith("mlops_lb")
        and name not in mlops_lb.__all__
    ]
    assert missing == []


@pytest.mark.parametrize("name", mlops_lb.__all__)
def test_every_exported_name_resolves(name):
    """Each name in __all__ resolves to an object (lazy ones import their module on first use)."""
    assert getattr(mlops_lb, name) is not None
    assert name in dir(mlops_lb)


def test_unknown_attribute_is_an_attribute_error():
    """A typo is an AttributeError naming the attribute, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'FleetSepc'"):
        mlops_lb.FleetSepc  # noqa: B018


def _snapshot(*roots: Path) -> set[str]:
    return {str(p) for root in roots for p in root.rglob("*")}


def test_import_is_light_and_inert(tmp_path):
    """A fresh `import mlops_lb` loads none of the heavy libraries and creates no files or directories."""
    home, work, tmp = tmp_path / "home", tmp_path / "work", tmp_path / "tmp"
    for d in (home, work, tmp):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_LB_", "XDG_"))}
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONWARNINGS="error",
        MPLCONFIGDIR=str(home / "mpl"),
    )
    code = f"import sys, json, mlops_lb; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    before = _snapshot(home, work, tmp)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    assert _snapshot(home, work, tmp) == before
    assert out.stderr == ""
