"""Ray as an optional extra: options are checked before anything starts, without Ray, and `import mlops_lb`
never imports Ray. No Ray cluster is started here except by the one test of a local Ray owned by the run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from _targets import SERVER, wait_gone

from mlops_lb.errors import BackendUnavailable, LoadTestError, SpecError
from mlops_lb.load import constant, run_load
from mlops_lb.load.profiles import ScheduleShare, shard_indices, trace

BODY = [b"{}"]


def test_import_does_not_load_ray():
    code = "import sys, mlops_lb, mlops_lb.load, mlops_lb.load.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'mlops_lb\[ray\]'"):
        run_load("http://127.0.0.1:9/x", constant(10, 1), BODY, cluster="ray", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cluster": "ray", "shards": 0}, "shards"),
        ({"cluster": "ray", "shards": "many"}, "shards"),
        ({"cluster": "ray", "shards": 64, "connections": 8}, "shards"),
        ({"cluster": "ray", "placement": "everywhere"}, "placement"),
        ({"cluster": "ray", "workers": 2}, "workers"),
        ({"cluster": "http://head:10001"}, "cluster"),
        ({"cluster": "ray://"}, "cluster"),
        ({"shards": 2}, "shards"),
    ],
)
def test_bad_options_are_spec_errors(kwargs, field):
    with pytest.raises(SpecError) as err:
        run_load("http://127.0.0.1:9/x", constant(10, 1), BODY, progress=False, **kwargs)
    assert err.value.field == field


def test_unreachable_ray_address_fails_fast():
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LoadTestError, match=r"cannot reach the Ray Client server at 127\.0\.0\.1"):
        run_load(
            "http://127.0.0.1:9/x", constant(10, 1), BODY, cluster=f"ray://127.0.0.1:{port}", progress=False
        )


class TestShardSchedules:
    def test_shards_partition_the_schedule(self):
        p = constant(2000, 5, arrival="poisson", seed=3)
        sched = p.schedule()
        parts = [shard_indices(p, k, 4) for k in range(4)]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(sched)))
        assert [len(x) for x in parts] == [len(shard_indices(p, k, 4)) for k in range(4)]  # repeatable
        assert [len(x) for x in parts] == ScheduleShare(p, 0, 4).sizes()  # counted without drawing the parts

    def test_poisson_shards_stay_poisson(self):
        """Thinned shards keep exponential gaps (CV ~ 1); interleaving every 4th makes them Erlang-4 (CV 0.5)."""
        p = constant(4000, 10, arrival="poisson", seed=11)
        sched = p.schedule()
        gaps = np.diff(sched[shard_indices(p, 1, 4)])
        assert gaps.mean() == pytest.approx(1 / 1000, rel=0.05)  # rate/N
        assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
        erlang = np.diff(sched[1::4])
        assert erlang.std() / erlang.mean() == pytest.approx(0.5, abs=0.05)

    def test_uniform_and_trace_shards_interleave(self):
        p = constant(100, 1)
        assert list(shard_indices(p, 1, 4)) == list(range(1, 100, 4))
        t = trace([0.0, 0.1, 0.2, 0.3, 0.4])
        assert list(shard_indices(t, 0, 2)) == [0, 2, 4]


# slow: ray.init() starts a head whose raylet waits a fixed 15 s for its agents' port files (node_manager.cc,
# WaitForDashboardAgentPorts); on a loaded 2-core machine the agents miss that and Ray aborts its own start.
@pytest.mark.slow
def test_local_ray_is_started_and_stopped_for_the_run(tmp_path):
    """cluster='ray' without a connection starts a local Ray for the run and shuts it down afterwards."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray connection exists in this process")
    code = f"""
import json, os, subprocess, sys
os.environ.update(RAY_agent_register_timeout_ms="120000", RAY_raylet_start_wait_time_s="120")
srv = subprocess.Popen([sys.executable, {str(SERVER)!r}, "--delay-s", "0.005"], stdout=subprocess.PIPE, text=True)
port = int(srv.stdout.readline())
import ray
from mlops_lb.load import constant, run_load
try:
    r = run_load(f"http://127.0.0.1:{{port}}/ok", constant(50, 1), [b"{{}}"], connections=2, cluster="ray",
                 shards=1, progress=False, max_lag_p99_s=10)
    print(json.dumps({{"responses": r.summary()["responses"], "up": ray.is_initialized(),
                      "pids": [int(p) for p in r.shards["pid"]]}}))
finally:
    srv.kill()
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["responses"] == 50 and res["up"] is False
    assert wait_gone(res["pids"]) == []
