"""How ``run_load(cluster="ray")`` connects to Ray, at the boundary of the ``ray`` module (no Ray started here).

The Ray tests share the session's cluster (tests/_raycluster.py): notebook 07 reaches it through Ray Client, and
tests/distributed connects with ray.init first, and notebook 07 finds it through RAY_ADDRESS. What neither runs
any more, a local Ray started for the run when nothing is connected, is pinned here: the arguments it starts Ray
with, and who ends the connection.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops_lb.errors import LoadTestError
from mlops_lb.load.distributed import LOCAL_OBJECT_STORE_BYTES, _connect


class FakeRay:
    """``ray.is_initialized`` and ``ray.init`` as the connection code calls them; ``init`` can fail."""

    def __init__(self, initialized: bool = False, fail: Exception | None = None) -> None:
        self.initialized = initialized
        self.fail = fail
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        if self.fail:
            raise self.fail
        self.initialized = True

    def shutdown(self) -> None:
        self.initialized = False


def test_nothing_connected_starts_a_local_ray_that_the_run_owns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection, no RAY_ADDRESS: a local Ray without the dashboard, a bounded object store and no log
    forwarding; the run owns it (True: it shuts it down at its end)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = FakeRay()
    assert _connect(ray, "ray") is True
    assert ray.calls == [
        (
            (),
            {
                "include_dashboard": False,
                "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
                "log_to_driver": False,
                "configure_logging": False,
            },
        )
    ]


def test_an_existing_connection_is_used_and_left_open() -> None:
    """ray.init() already called (a notebook connected to a cluster): no second init; not the run's to end."""
    ray = FakeRay(initialized=True)
    assert _connect(ray, "ray") is False and ray.calls == []


def test_ray_address_is_the_cluster_to_join_without_local_sizing(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAY_ADDRESS set (a cluster's own node, or a notebook started beside a cluster): ray.init() connects to it,
    as Ray reads that variable, without a local Ray's object-store size, which Ray refuses for an existing
    cluster ("When connecting to an existing cluster, object_store_memory must not be provided")."""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    ray = FakeRay()
    assert _connect(ray, "ray") is True
    assert ray.calls == [((), {"log_to_driver": False, "configure_logging": False})]
    failing = FakeRay(fail=ConnectionError("no GCS at 10.0.0.5:6379"))
    with pytest.raises(LoadTestError, match=r"could not connect to RAY_ADDRESS=10.0.0.5:6379 \(no GCS"):
        _connect(failing, "ray")


def test_a_local_ray_that_cannot_start_is_a_load_test_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's own start failure surfaces as a LoadTestError saying a local Ray could not start, with the cause."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = FakeRay(fail=RuntimeError("raylet died"))
    with pytest.raises(LoadTestError, match=r"could not start a local Ray \(raylet died\)"):
        _connect(ray, "ray")
