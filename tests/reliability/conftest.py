"""Fixtures of the reliability suite: fleets that always close, and a figure recorder for docs/reliability.md.

* ``fleet_factory(spec)``: launch a LocalFleet; every fleet is closed when the test ends, whatever happens.
* ``record(**figures)``: keep a test's measured figures (see ``MLOPS_LB_RELIABILITY_FIGURES``).

Helpers (specs, polling, /metrics counts) live in ``_reliability.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mlops_lb as ml
from mlops_lb.local import LocalFleet


@pytest.fixture
def fleet_factory() -> Iterator[Callable[[ml.FleetSpec], LocalFleet]]:
    """Launch LocalFleets for one test; each is closed afterwards (no process left, even on failure)."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install -y haproxy)")
    fleets: list[LocalFleet] = []

    def launch(spec: ml.FleetSpec) -> LocalFleet:
        fleet = LocalFleet(spec)
        fleets.append(fleet)
        fleet.launch()
        return fleet

    yield launch
    for f in fleets:
        f.close()


FIGURES_ENV = "MLOPS_LB_RELIABILITY_FIGURES"


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record(errors=3, recovery_s=0.4)``: keep a test's figures (user_properties, and a JSON-lines file when
    ``$MLOPS_LB_RELIABILITY_FIGURES`` names one; docs/reliability.md is written from it)."""

    def rec(**figures: Any) -> None:
        for k, v in figures.items():
            request.node.user_properties.append((k, v))
        path = os.environ.get(FIGURES_ENV)
        if path:
            with open(path, "a") as fh:
                fh.write(json.dumps({"test": request.node.nodeid, **figures}, default=str) + "\n")

    return rec
