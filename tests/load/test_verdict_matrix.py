"""The verdict test matrix of issue 24 against real servers, at the library's defaults (no threshold set), with
another process keeping one core busy (the user's busy laptop). Each case prints its numbers (late share, slip,
offered/achieved) so a run with ``-s`` shows the matrix.

* a clean 20 and 80 rps run: VALID;
* every request a 404: INVALID naming the status and the path;
* one model server with 1 slot and 50 ms service (20 rps) offered 120 rps: "fleet saturated" with its window;
* the generator's own process SIGSTOPped for 3 s against nginx (answering in well under a millisecond):
  "generator lag", not saturation;
* a worker process killed mid-run: named once; a worker stopped for good: reported lost by the collector's
  deadline and the run returns on time; answers that arrived while the generator was stopped are not timeouts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_lb.load import constant, run_load, start_load

pytestmark = [pytest.mark.serial, pytest.mark.fleet]

BODY = [b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}']

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ add_header X-Target-Id nginx; return 200 "ok"; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {within} s")


def _wait_ready(url: str, within: float = 60.0) -> None:
    """Until /health answers 200 (the port opens before the model is loaded; /predict is a 503 until then)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {within} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: only what this test started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def busy_core() -> Iterator[int]:
    """Another process keeping one core busy for the whole test (killed by its pid afterwards)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    time.sleep(0.2)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def nginx() -> Iterator[str]:
    """nginx on 127.0.0.1 answering every request with a 2-byte 200 (a server someone else wrote)."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="mlops-lb-nginx-") as tmp:
        port = _free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port))
        proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", tmp], start_new_session=True, stderr=subprocess.DEVNULL
        )
        try:
            _wait_port(port, proc, "nginx")
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)


@pytest.fixture
def model_server() -> Iterator[str]:
    """The package's model server with 1 slot and 50 ms minimum service: 20 rps at most."""
    from mlops_lb.serving import worker_command

    port = _free_port()
    cmd = worker_command(port=port, target_id="w1", slots=1, min_service_ms=50)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "model server", within=60)
        _wait_ready(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _numbers(r) -> str:
    s = r.summary()
    return (
        f"valid={s['valid']} kinds={s['invalid_kinds']} late_share={s['late_share']:.3f} "
        f"late_after={s['late_after_s'] * 1e3:.1f}ms lag_p99={s['lag_p99_s'] * 1e3:.1f}ms "
        f"offered={s['offered_rps']:.1f} achieved={s['achieved_rps']:.1f} held={s['held_back']}"
    )


def _started(run, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while (not run.worker_pids or len(run.latest_intervals()) < 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.worker_pids, "the worker process did not start"


class TestMatrix:
    @pytest.mark.parametrize("rps", [20, 80])
    def test_clean_run_is_valid(self, target, busy_core, rps):
        """A clean run at 20 and 80 rps with one core busy: VALID at the defaults."""
        r = run_load(f"{target.base}/ok", constant(rps, 4), BODY, progress=False)
        print(f"\nclean {rps} rps: {_numbers(r)}")
        assert r.valid, r.invalid_reasons
        assert r.summary()["requests"] == 4 * rps

    def test_every_404_is_invalid_naming_the_path(self, target, busy_core):
        """The path forgotten (every answer 404): INVALID, naming 404 and the path; exit-worthy."""
        r = run_load(f"{target.base}/404", constant(20, 2), BODY, progress=False)
        print(f"\nall 404: {_numbers(r)}")
        assert r.invalid_kinds == ["client_errors"], r.invalid_reasons
        assert "404 ×40" in r.invalid_reasons[0] and "POST /404" in r.invalid_reasons[0]

    def test_saturated_target_is_fleet_saturated_in_its_window(self, model_server, busy_core):
        """1 slot x 50 ms (20 rps) offered 120 rps: fleet saturated, in a window, not generator lag."""
        # the demo payloads; timeout_s bounds the drain of the backlog (it is not one of the verdict thresholds)
        r = run_load(f"{model_server}/predict", constant(120, 3), progress=False, timeout_s=3.0)
        print(f"\nsaturated: {_numbers(r)}")
        assert "connections_exhausted" in r.invalid_kinds, r.invalid_reasons
        assert "generator_lag" not in r.invalid_kinds
        held = r.summary()["held_back"]
        assert held and all(w["cause"] == "connections_exhausted" for w in held)
        assert "fleet saturated" in r.verdict().headline

    def test_stalled_generator_is_generator_lag(self, nginx, busy_core):
        """The generator's process SIGSTOPped 3 s against nginx: generator lag (its stall named), not saturation."""
        run = start_load(f"{nginx}/", constant(100, 6), BODY, progress=False, executor="process")
        _started(run)
        pid = run.worker_pids[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        r = run.result(timeout=60)
        print(f"\nSIGSTOP 3 s: {_numbers(r)}")
        assert r.invalid_kinds == ["generator_lag"], r.invalid_reasons
        assert "stalled" in r.invalid_reasons[0] and "workers= (now 1)" in r.invalid_reasons[0]
        assert r.summary()["errors_by_kind"]["timeout"] == 0

    def test_killed_worker_is_named_once(self, target, busy_core):
        """One of two worker processes SIGKILLed: generator_lost once, no under-sent or lag reason beside it."""
        run = start_load(f"{target.base}/ok", constant(60, 4), BODY, progress=False, workers=2)
        _started(run)
        os.kill(run.worker_pids[1], signal.SIGKILL)
        r = run.result(timeout=60)
        print(f"\nkilled worker: {_numbers(r)}")
        assert r.invalid_kinds == ["generator_lost"], r.invalid_reasons
        assert "worker 1" in r.invalid_reasons[0]


class TestCollectorDeadline:
    def test_silent_worker_is_reported_lost_and_the_run_returns_on_time(self, nginx):
        """A worker SIGSTOPped for good: the run ends at last send + timeout_s + grace, the worker lost."""
        from mlops_lb.load.collector import COLLECT_GRACE_S

        run = start_load(
            f"{nginx}/", constant(20, 2), BODY, progress=False, executor="process", timeout_s=1.0
        )
        _started(run)
        pid = run.worker_pids[0]
        t0 = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            r = run.result(timeout=30)
        finally:
            if run.done is False:
                os.kill(pid, signal.SIGCONT)
        waited = time.monotonic() - t0
        print(f"\nsilent worker: returned {waited:.1f} s after the SIGSTOP; {_numbers(r)}")
        # the schedule ends 2 s after its start (at most 2 s after the stop), then timeout_s and the grace
        assert waited < 2.0 + 1.0 + COLLECT_GRACE_S + 2.0
        assert 0 in r.lost_workers and r.invalid_kinds == ["generator_lost"], r.invalid_reasons

    def test_answers_that_arrived_during_a_stall_are_not_timeouts(self, target_factory):
        """Generator stopped 2 s (> timeout_s=1) while a 200 ms server held requests: answered, not timeout."""
        t = target_factory(delay_s=0.2)
        run = start_load(
            f"{t.base}/ok", constant(50, 5), BODY, progress=False, executor="process", timeout_s=1.0
        )
        _started(run)
        pid = run.worker_pids[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        r = run.result(timeout=60)
        by = r.summary()["errors_by_kind"]
        print(f"\nstall with requests in flight: errors {by}; {_numbers(r)}")
        # and the requests that came due while it was stopped were not given up as "no connection" either
        assert by["timeout"] == 0 and by["no_connection"] == 0, by
