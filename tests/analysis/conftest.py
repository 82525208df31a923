"""Fixtures for the analysis tests: the synthetic bundle of tests/fixtures/synthetic.py (loaded by path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load_synthetic() -> ModuleType:
    """Import tests/fixtures/synthetic.py once under a private name (tests/ is not a package)."""
    name = "mlops_lb_tests_synthetic"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "fixtures" / "synthetic.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synthetic() -> ModuleType:
    return load_synthetic()


@pytest.fixture(scope="session")
def bundle(synthetic: ModuleType) -> Any:
    return synthetic.make_bundle()
