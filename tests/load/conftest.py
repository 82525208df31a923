"""Fixtures for the load-engine tests: a tiny HTTP target (tests/load/_server.py) in a subprocess on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from _targets import Target, targets_started


@pytest.fixture
def target_factory() -> Iterator[Callable[..., Target]]:
    """Start test targets (``--stall-at`` etc. as keyword args); all are stopped when the test ends."""
    with targets_started() as start:
        yield start


@pytest.fixture
def target(target_factory: Callable[..., Target]) -> Target:
    """One plain test target."""
    return target_factory()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
