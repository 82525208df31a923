"""The ``ray`` executor through its seam, with an in-process stand-in for Ray (no raylet, no GCS).

Ray itself is tested in test_ray_shards.py (a real two-node local cluster), but on a loaded two-core machine a
raylet can fail to start at all; these tests keep the driver side — the EngineHost protocol, the transport's
long polls, a shard dying — checked every time. The stand-in does what the driver uses of Ray: remote actor
classes whose method calls run on a thread pool and return futures, ``get``/``wait`` over them, ``kill``, and
``RayActorError`` from the call of an actor that died. The engines inside the actors are the real ones, against a
real server on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import sys
import types
from typing import Any

import pytest

from mlops_lb.load import constant, run_load

pytestmark = pytest.mark.fleet  # starts a test server

BODY = [b'{"rows": [[1.0, 2.0]]}']


class _Exceptions:
    class RayError(Exception):
        pass

    class RayActorError(RayError):
        pass

    class GetTimeoutError(RayError):
        pass


class _Handle:
    def __init__(self, ray: FakeRay, obj: Any) -> None:
        self._ray, self._obj, self.dead = ray, obj, False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._obj, name)
        ray = self._ray

        def call(*args: Any) -> cf.Future[Any]:
            def run() -> Any:
                if self.dead:
                    raise _Exceptions.RayActorError("the actor died")
                return method(*args)

            return ray.pool.submit(run)

        return types.SimpleNamespace(remote=call)


class _RemoteClass:
    def __init__(self, ray: FakeRay, cls: type) -> None:
        self._ray, self._cls = ray, cls

    def options(self, **_: Any) -> _RemoteClass:
        return self

    def remote(self) -> _Handle:
        h = _Handle(self._ray, self._cls())
        self._ray.actors.append(h)
        return h


class FakeRay(types.ModuleType):
    """The part of the ``ray`` module the driver uses, in-process (actors are objects, calls are futures)."""

    exceptions = _Exceptions
    cloudpickle = pickle

    def __init__(self) -> None:
        super().__init__("ray")
        self.pool = cf.ThreadPoolExecutor(32)
        self.actors: list[_Handle] = []
        self.inited = True

    def is_initialized(self) -> bool:
        return self.inited

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def available_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def remote(self, **_: Any) -> Any:
        return lambda cls: _RemoteClass(self, cls)

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        try:
            if isinstance(refs, list):
                return [r.result(timeout) for r in refs]
            return refs.result(timeout)
        except cf.TimeoutError as exc:
            raise _Exceptions.GetTimeoutError(str(exc)) from exc

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> Any:
        done, _ = cf.wait(
            refs, timeout=timeout, return_when=cf.FIRST_COMPLETED if num_returns == 1 else cf.ALL_COMPLETED
        )
        ready = [r for r in refs if r in done][: max(num_returns, 1)]
        return ready, [r for r in refs if r not in ready]

    def kill(self, actor: _Handle, no_restart: bool = True) -> None:
        actor._obj.stop()

    def get_runtime_context(self) -> Any:
        return types.SimpleNamespace(get_node_id=lambda: "node-0")

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True}]

    def shutdown(self) -> None:
        self.inited = False


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Any:
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    yield ray
    for a in ray.actors:
        a._obj.stop()
    ray.pool.shutdown(wait=True, cancel_futures=True)


def test_shards_run_through_the_engine_host(fake_ray, start_target):
    """Two shards: every request answered once, a shard table of two 'done' rows, a valid run."""
    t = start_target()
    r = run_load(
        f"{t.base}/ok", constant(50, 2), BODY, connections=4, cluster="ray", shards=2, progress=False
    )
    assert r.summary()["requests"] == t.count() == 100
    assert list(r.shards["state"]) == ["done", "done"] and r.shards["received"].sum() == 100
    assert r.valid, r.invalid_reasons


def test_a_dead_shard_is_named_once(fake_ray, start_target):
    """A shard whose actor dies mid-run (its calls raise RayActorError): generator_lost once, shard named."""
    import time

    from mlops_lb.load import start_load

    t = start_target()
    run = start_load(
        f"{t.base}/ok", constant(50, 3), BODY, connections=4, cluster="ray", shards=2, progress=False
    )
    deadline = time.monotonic() + 60
    while len(run.latest_intervals()) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    fake_ray.actors[1].dead = True  # from now on every call to it raises RayActorError, as Ray's would
    r = run.result(timeout=60)
    assert r.shards.set_index("shard").loc[1, "state"] == "died"
    assert r.invalid_kinds == ["generator_lost"] and "shard 1" in r.invalid_reasons[0], r.invalid_reasons
