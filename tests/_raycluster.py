"""The test session's local Ray cluster: a head and a second node (one CPU each) from Ray's own test utility
(``ray.cluster_utils``), started by the first test that asks for it and stopped right after the last one.

Starting it costs 20-30 s on two cores (the head waits for its API server and its raylet's agents, each a Python
process importing Ray), so the Ray tests share one: ``tests/distributed/test_ray_shards.py`` connects with
``ray.init`` and notebook 07's kernel through Ray Client. ``tests/_markers.run_order`` puts the modules holding
them next to each other, and tests/conftest.py stops the cluster once no later test of the run is marked ``ray``.
The processes are stopped through the Cluster object (never ``ray stop``, which kills every Ray process on the
machine), and :meth:`RayCluster.stop` fails when one of them outlives the cluster.

Imported by module name (``tests/`` is on ``pythonpath``), never from a conftest.

Example::

    cluster = CLUSTER.get()          # the ray_cluster fixture
    cluster.address, cluster.client_port
    CLUSTER.stop()                   # AssertionError naming any Ray process left running
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import pytest
from _targets import wait_gone

NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
# A loaded 2-core machine starts the per-node agents slowly. The raylet waits a fixed 15 s for the files in
# which its agents publish their ports (node_manager.cc, WaitForDashboardAgentPorts) unless the ports are given
# (then it skips the wait), and Ray's other start-up waits are only a few seconds by default.
AGENT_PORTS = ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port")
RAY_ENV = {"RAY_agent_register_timeout_ms": "120000", "RAY_raylet_start_wait_time_s": "120"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node() -> dict[str, int]:
    return {**NODE, **{name: _free_port() for name in AGENT_PORTS}}


def _start_head(cluster_cls: type) -> Any:
    # Ray's node start waits a fixed 30 s for the raylet to register (ray/_private/node.py); on this shared
    # 2-core machine under load the GCS or the node agents can miss that. Another try is for Ray's start-up, not our code.
    for attempt in (1, 2, 3):
        try:
            head = {**_node(), "include_dashboard": False, "ray_client_server_port": _free_port()}
            cluster = cluster_cls(initialize_head=True, head_node_args=head)
            cluster.client_port = head["ray_client_server_port"]
            return cluster
        except Exception:
            if attempt == 3:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


class RayCluster:
    """One local two-node Ray cluster at a time, started on demand; see the module docstring."""

    def __init__(self) -> None:
        self.cluster: Any = None
        self._pids: list[int] = []
        self._saved: dict[str, str | None] = {}

    @property
    def running(self) -> bool:
        return self.cluster is not None

    def get(self) -> Any:
        """The running cluster (``.address``, ``.client_port``), started first if need be; this process is
        connected to it with ``ray.init``."""
        if self.cluster is not None:
            return self.cluster
        ray = pytest.importorskip("ray")
        import psutil
        from ray.cluster_utils import Cluster

        # ray.init() below sets RAY_ADDRESS in this process (child processes would find a stopped cluster by it)
        self._saved = {k: os.environ.get(k) for k in (*RAY_ENV, "RAY_ADDRESS")}
        os.environ.update(RAY_ENV)
        cluster = _start_head(Cluster)
        self.cluster = cluster  # from here on stop() shuts it down, whatever fails next
        cluster.add_node(**_node())
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        for node in [cluster.head_node, *cluster.worker_nodes]:
            for infos in node.all_processes.values():
                for info in infos:
                    self._pids.append(info.process.pid)
                    self._pids += [c.pid for c in psutil.Process(info.process.pid).children(recursive=True)]
        return cluster

    def stop(self) -> None:
        """Disconnect, shut the cluster down and check that every process it started has exited."""
        if self.cluster is None:
            return
        import psutil
        import ray

        pids = list(self._pids)
        for pid in list(
            pids
        ):  # processes started during the tests (the shards' actors, Ray Client's servers)
            with contextlib.suppress(psutil.Error):
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        try:
            ray.shutdown()
            self.cluster.shutdown()
        finally:
            self.cluster, self._pids = None, []
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        left = wait_gone(pids)
        assert left == [], f"Ray processes left running: {left}"


CLUSTER = RayCluster()
"""The session's cluster (tests/conftest.py's ``ray_cluster`` fixture and its stop after the last Ray test)."""
