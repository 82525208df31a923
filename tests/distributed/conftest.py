"""Fixtures for Ray shards: test targets on 127.0.0.1. The two-node local Ray cluster (``ray_cluster``) is the
session's, shared with notebook 07 (tests/_raycluster.py, fixture in tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from _targets import Target, targets_started


@pytest.fixture
def start_target() -> Iterator[Callable[..., Target]]:
    """``start_target(delay_s=0.005)`` or ``(stall_at=0.5, stall_s=1.0)``: a test target (tests/load/_server.py)
    in a subprocess; all are stopped afterwards."""
    with targets_started() as start:
        yield start
