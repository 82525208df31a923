"""Fixtures for the local fleet: a shared round-robin fleet (helpers live in _localfleet.py)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from _localfleet import fast_spec, run_load

from mlops_lb.local import LocalFleet

if shutil.which("haproxy") is None:
    pytest.skip("haproxy is not installed (apt-get install -y haproxy)", allow_module_level=True)


@pytest.fixture(scope="session")
def rr_fleet() -> Iterator[LocalFleet]:
    """A launched round-robin fleet with two healthy targets and some traffic, shared by read-only tests."""
    fleet = LocalFleet(fast_spec("rr", algorithm="round_robin", min=2, desired=2))
    try:
        fleet.launch()
        run_load(fleet.url, requests=60, concurrency=2)
        time.sleep(fleet.spec.local.period_s * 2.2)  # let two periods close so metrics have datapoints
        yield fleet
    finally:
        fleet.close()
