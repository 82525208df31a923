"""Fixtures for Ray shards: test targets on 127.0.0.1 and a two-node local Ray cluster (ray.cluster_utils).

Ray's own test utility starts a head and a second node, each a raylet with one CPU and a small object store,
as processes of this test run; they are shut down through the Cluster object (never ``ray stop``, which kills
every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pytest
from _targets import Target, targets_started, wait_gone

NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
# A loaded 2-core machine starts the per-node agents slowly. The raylet waits a fixed 15 s for the files in
# which its agents publish their ports (node_manager.cc, WaitForDashboardAgentPorts) unless the ports are given
# (then it skips the wait), and Ray's other start-up waits are only a few seconds by default.
AGENT_PORTS = ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port")
RAY_ENV = {"RAY_agent_register_timeout_ms": "120000", "RAY_raylet_start_wait_time_s": "120"}


@pytest.fixture
def start_target() -> Iterator[Callable[..., Target]]:
    """``start_target(delay_s=0.005)`` or ``(stall_at=0.5, stall_s=1.0)``: a test target (tests/load/_server.py)
    in a subprocess; all are stopped afterwards."""
    with targets_started() as start:
        yield start


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node() -> dict[str, int]:
    return {**NODE, **{name: _free_port() for name in AGENT_PORTS}}


def _start_head(cluster_cls: type) -> object:
    # Ray's node start waits a fixed 30 s for the raylet to register (ray/_private/node.py); on this shared
    # 2-core machine under load the GCS or the node agents can miss that. Another try is for Ray's start-up, not our code.
    for attempt in (1, 2, 3):
        try:
            head = {**_node(), "include_dashboard": False, "ray_client_server_port": _free_port()}
            cluster = cluster_cls(initialize_head=True, head_node_args=head)
            cluster.client_port = head["ray_client_server_port"]  # type: ignore[attr-defined]
            return cluster
        except Exception:
            if attempt == 3:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """A head and a second node (one CPU each) on this machine, connected with ray.init; all gone afterwards."""
    ray = pytest.importorskip("ray")
    import psutil
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    cluster = _start_head(Cluster)
    pids: list[int] = []
    try:
        cluster.add_node(**_node())
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        for node in [cluster.head_node, *cluster.worker_nodes]:
            for infos in node.all_processes.values():
                for info in infos:
                    pids.append(info.process.pid)
                    pids += [c.pid for c in psutil.Process(info.process.pid).children(recursive=True)]
        yield cluster
    finally:
        for pid in list(pids):  # workers started during the tests (the shards' actors) too
            with contextlib.suppress(psutil.Error):
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        ray.shutdown()
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    left = wait_gone(pids)
    assert left == [], f"Ray processes left running: {left}"
