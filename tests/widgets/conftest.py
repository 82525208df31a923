"""Fixtures for the widget tests; the fakes themselves live in widget_fakes.py."""

from __future__ import annotations

import pytest
from widget_fakes import FakeFleet, InlineExecutor


@pytest.fixture
def fleet() -> FakeFleet:
    """A fake demo fleet at its spec's capacity."""
    return FakeFleet()


@pytest.fixture
def inline() -> InlineExecutor:
    """An executor that runs work at once, so outcomes are visible right after a click."""
    return InlineExecutor()
