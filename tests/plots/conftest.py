"""Fixtures for the plot tests: the synthetic bundle of tests/fixtures/synthetic.py."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from fixtures import synthetic as _synthetic


@pytest.fixture(scope="session")
def synthetic() -> ModuleType:
    return _synthetic


@pytest.fixture(scope="session")
def bundle(synthetic: ModuleType) -> Any:
    return synthetic.make_bundle()
