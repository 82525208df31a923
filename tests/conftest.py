"""Shared fixtures: free loopback ports and real model-server processes.

* ``free_port`` (fixture): the function ``free_port()`` -> a TCP port free on 127.0.0.1 right now.
* ``server`` (module scope): one ready demo model server, ``server.url``, ``server.request("GET", "/health")``.
* ``server_factory``: ``server_factory(slots=2, min_service_ms=50, env={...}, wait_ready=False)`` starts another
  server for one test; every server started is stopped (SIGTERM, then SIGKILL) when the test ends.

Every test session trains the demo model once into a temporary cache (``MLOPS_LB_CACHE_DIR``), so tests never write
under the home directory.

Example::

    def test_ready(server):
        assert server.request("GET", "/health").status == 200
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _markers
import _raycluster
import pytest

from mlops_lb.serving import worker_command

# A shell that starts a command in the background without job control (`cmd &`, nohup) hands it SIGINT ignored,
# and Python then leaves it ignored: `_thread.interrupt_main()` does nothing and the Ctrl-C tests could not
# interrupt anything. They test our handling of Ctrl-C, so the test process takes Python's usual handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Pulumi's mocks (pulumi/runtime/sync_await.py) and tests/aws's run_declare give the main thread an event loop; a
# later asyncio.run() in the same worker ends with set_event_loop(None) and orphans it. Whichever test happens to
# be running when the garbage collector frees that loop then fails with "unclosed event loop" and two unclosed
# self-pipe sockets (PytestUnraisableExceptionWarning): which test that is depends on the run order, not on the
# test. So a loop set current is kept referenced until it is closed, and the ones still open are closed at the end.
_CURRENT_LOOPS: list[asyncio.AbstractEventLoop] = []
_set_event_loop = asyncio.events.BaseDefaultEventLoopPolicy.set_event_loop


def _quiet_unretrieved(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Kept alive, such a loop outlives the futures of programs that tests make fail on purpose (Pulumi's mocks
    # raising a RuleViolation): their "Future exception was never retrieved" then fired when the collector freed
    # them, between tests where nothing captures it (64 tracebacks in one run's log). Everything else is reported.
    if "never retrieved" in str(context.get("message", "")):
        return
    loop.default_exception_handler(context)


def _set_event_loop_keeping(self: Any, loop: asyncio.AbstractEventLoop | None) -> None:
    _CURRENT_LOOPS[:] = [kept for kept in _CURRENT_LOOPS if not kept.is_closed()]
    if loop is not None:
        _CURRENT_LOOPS.append(loop)
        if loop.get_exception_handler() is None:
            loop.set_exception_handler(_quiet_unretrieved)
    _set_event_loop(self, loop)


asyncio.events.BaseDefaultEventLoopPolicy.set_event_loop = _set_event_loop_keeping  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session) -> None:
    _raycluster.CLUSTER.stop()
    for loop in _CURRENT_LOOPS:
        if not loop.is_running() and not loop.is_closed():
            loop.close()


@pytest.fixture
def ray_cluster() -> Any:
    """The session's two-node local Ray cluster (``.address``, ``.client_port``), this process connected to it
    with ``ray.init``: started by the first test that asks, stopped after the last test marked ``ray``
    (tests/_raycluster.py; Ray's start costs 20-30 s on two cores, once instead of per module)."""
    return _raycluster.CLUSTER.get()


_LAST_RAY: dict[str, int] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    last = max((n for n, i in enumerate(session.items) if i.get_closest_marker("ray")), default=-1)
    _LAST_RAY.update(nodeid=session.items[last].nodeid if last >= 0 else "")


@pytest.hookimpl(trylast=True)  # after the test's own fixtures (its targets, its kernel) are gone
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the session's Ray cluster after the last Ray test, so no later test shares the machine with it; a Ray
    process that outlives it fails this test's teardown."""
    if _raycluster.CLUSTER.running and (item.nodeid == _LAST_RAY.get("nodeid") or nextitem is None):
        _raycluster.CLUSTER.stop()


# Which tests start processes: markers from fixtures, and a guard that fails an unmarked test starting a server,
# HAProxy, Ray or a notebook kernel (tests/_markers.py says how and why).
sys.addaudithook(_markers.audit)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in _markers.FIXTURE_MARKS:
                item.add_marker(_markers.FIXTURE_MARKS[name])
    # Longest first (tests/_markers.py, run_order): the parallel phase hands out work units in this order, so the
    # notebooks and fleets start early and the short CPU-only modules fill both workers at the end.
    items[:] = _markers.run_order(items)
    _markers.note_alone(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The parallel phase of scripts/test.sh (``--dist loadgroup``): a whole module per worker, except the modules
    of :data:`_markers.SPREAD`, whose tests go one by one to whichever worker is free (``_markers.worker_scope``),
    in collection order (:func:`_markers.run_order`: longest first), not xdist's largest-module-first. xdist's own
    loadgroup reads ``xdist_group`` marks by renaming node ids, which pytest 9 no longer allows, so the scope
    comes from the node id here, in the controller, which sees only node ids."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _markers.worker_scope(nodeid)

    # xdist would sort the units by their number of tests: the ten one-test notebook units (the longest) last.
    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


@pytest.fixture(autouse=True)
def _process_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an unmarked test that starts a server, HAProxy, Ray or a notebook kernel (tests/_markers.py)."""
    first = len(_markers.SPAWNED)
    yield
    spawned = _markers.SPAWNED[first:]
    record = os.environ.get("MLOPS_LB_RECORD_SPAWNS")
    if record and spawned:
        with open(record, "a") as out:
            for argv in spawned:
                out.write(json.dumps({"test": request.node.nodeid, "argv": list(argv)}) + "\n")
    marks = {m.name for m in request.node.iter_markers()}
    for argv in spawned:
        kind = _markers.process_kind(argv)
        if kind and kind not in marks:
            pytest.fail(
                f"{request.node.nodeid} starts {' '.join(argv)[:160]!r} but is not marked {kind!r}: add "
                f"`pytestmark = pytest.mark.{kind}` to its module (or @pytest.mark.{kind}) so that the fast command "
                "and the parallel phase of scripts/test.sh leave it out",
                pytrace=False,
            )


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it; a tiny race with other binders remains)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    """One HTTP response: status, lower-cased headers and the body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServerProcess:
    """A model server running as a child process on 127.0.0.1 (its own session, so signals reach only it)."""

    proc: subprocess.Popen[bytes]
    port: int
    target_id: str
    log_path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """Send one request on a fresh connection and read the whole reply."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def predict(self, rows: list[list[Any]]) -> Reply:
        return self.request(
            "POST", "/predict", json.dumps({"rows": rows}), {"Content-Type": "application/json"}
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /health until 200; fail with the server's log if it exits or never gets ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"model server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/health", timeout=2).status == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        pytest.fail(f"model server not ready after {timeout} s:\n{self.log()}")

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Poll until the server answers any HTTP request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"model server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.request("GET", "/health", timeout=2)
                return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"model server not listening after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: only this server
                self.proc.wait(5)
        return self.proc.returncode


def _start(
    log_dir: Path,
    *,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
    target_id: str | None = None,
    **options: Any,
) -> ServerProcess:
    port = free_port()
    target_id = target_id or f"test-{port}"
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            worker_command(port=port, target_id=target_id, **options),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    server = ServerProcess(proc, port, target_id, log_path, options)
    try:
        if wait_ready:
            server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the demo model cache at a session temp dir (for this process and the servers it starts)."""
    path = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_LB_CACHE_DIR", str(path))
        yield path


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """The ``free_port()`` helper, for test directories that cannot import this conftest."""
    return free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ready demo model server shared by a test module (no slots, no minimum service time)."""
    s = _start(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with options (``worker_command``'s, plus ``env`` and ``wait_ready``); all stop after the test."""
    started: list[ServerProcess] = []

    def start(**options: Any) -> ServerProcess:
        s = _start(tmp_path, **options)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
