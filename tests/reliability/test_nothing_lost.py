"""Nothing lost: however a load test ends, every completed request is in its result, as the servers counted it.

The referee is the model servers' own ``mlops_requests_total{path="/predict",status="200"}``, read from each
target's ``/metrics`` before and after a run against one shared two-target fleet. A run ended by Stop or Ctrl-C
waits for its in-flight requests, so its ok count must equal the servers' exactly (a request the client gave up
on would be the only excuse; none is allowed beyond the connections in flight). A SIGKILLed load worker process
loses only what it had not yet reported (at most one interval of its share). A process killed while writing a run
bundle leaves a bundle that loads with every part it finished.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import LOAD, fault_spec, served_ok, wait_for

from mlops_lb.bundle import RunBundle
from mlops_lb.load import constant, run_load, start_load
from mlops_lb.local import LocalFleet
from mlops_lb.serving import demo_payloads

RATE = 80.0

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = [pytest.mark.fleet, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """One healthy two-target fleet shared by the tests of this module (none of them injects a fault into it)."""
    import shutil

    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    f = LocalFleet(fault_spec("lost", grace_period_s=1800))
    try:
        f.launch()
        yield f
    finally:
        f.close()


def _ok(result) -> int:  # type: ignore[no-untyped-def]
    df = result.requests()
    return int(((df["error"] == "") & (df["status"] == 200)).sum())


def test_stop_keeps_every_completed_record(fleet: LocalFleet, record) -> None:
    """LoadRun.stop() mid-run: the partial result's ok count equals what the servers counted for the run."""
    before = served_ok(fleet)
    run = start_load(fleet.url + "/predict", constant(RATE, 30), **LOAD)
    wait_for(lambda: len(run.latest_intervals()) >= 3, 15, "three intervals")
    run.stop()
    r = run.result(timeout=30)
    counted = served_ok(fleet) - before
    record(result_ok=_ok(r), server_ok=counted, scheduled=r.scheduled)
    assert r.stopped and r.stop_reason == "stop requested"
    assert 0 < _ok(r) < r.scheduled
    assert counted - LOAD["connections"] <= _ok(r) <= counted
    assert _ok(r) == counted  # in-flight requests are awaited on Stop, so none may be missing


def test_keyboard_interrupt_keeps_every_completed_record(fleet: LocalFleet, record) -> None:
    """Ctrl-C (KeyboardInterrupt on the main thread) during run_load returns a result with every served request."""
    assert threading.current_thread() is threading.main_thread()
    before = served_ok(fleet)
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    try:
        r = run_load(fleet.url + "/predict", constant(RATE, 30), **LOAD)
    finally:
        timer.cancel()
    counted = served_ok(fleet) - before
    record(result_ok=_ok(r), server_ok=counted)
    assert r.stopped and r.stop_reason == "KeyboardInterrupt"
    assert _ok(r) > 0 and _ok(r) == counted


def test_killed_load_worker_loses_at_most_its_unreported_interval(fleet: LocalFleet, record) -> None:
    """SIGKILL one of two load worker processes: the other's records are all kept, the dead one's are kept up
    to its last reported interval, and the result says a worker died (lost share, invalid run)."""
    interval_s = LOAD["interval_s"]
    before = served_ok(fleet)
    run = start_load(fleet.url + "/predict", constant(RATE, 3), **{**LOAD, "workers": 2})
    wait_for(lambda: len(run.latest_intervals()) >= 2, 60, "two intervals from both workers")
    os.kill(run.worker_pids[1], signal.SIGKILL)
    r = run.result(timeout=60)
    counted = served_ok(fleet) - before
    df = r.requests()
    w0 = df[df["worker"] == 0]
    lost = counted - _ok(r)
    bound = RATE / 2 * interval_s * 2 + LOAD["connections"]  # up to two unreported intervals + in flight
    record(result_ok=_ok(r), server_ok=counted, lost=lost, bound=bound, lost_share=r.lost_workers.get(1))
    assert (w0["status"] == 200).sum() == len(w0) == r.scheduled // 2  # the survivor's whole share
    assert 1 in r.lost_workers and not r.valid
    assert 0 <= lost <= bound


WRITER = textwrap.dedent(
    """
    import sys, pandas as pd
    from mlops_lb.bundle import RunBundle
    b = RunBundle.create(root=sys.argv[1], name="crash")
    n = 0
    while True:
        rows = pd.DataFrame({"seq": range(n * 50, n * 50 + 50), "payload": ["x" * 200] * 50})
        b.append_requests(rows)
        n += 1
        print(n, flush=True)
        if n % 8 == 0:
            b.finalize()
            print("finalized", n, flush=True)
    """
)


@pytest.mark.parametrize("kill_after", [5, 12, 17])
def test_crash_while_writing_bundle_leaves_it_readable(tmp_path: Path, kill_after: int, record) -> None:
    """SIGKILL a process appending parts and finalizing a bundle, at several moments: the bundle loads, holds
    every part reported finished, never a duplicated or torn row."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    finished = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.split()[0].isdigit():
                finished = int(line.split()[0])
            if finished >= kill_after:
                break
        time.sleep(0.005 * kill_after)  # land somewhere inside the next append or finalize
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    (path,) = tmp_path.iterdir()
    loaded = RunBundle.load(path)
    seq = loaded.requests["seq"]
    stray = sorted(p.name for p in path.rglob("*.tmp"))
    record(parts_reported=finished, rows_loaded=len(seq), stray_tmp_files=len(stray))
    assert seq.is_unique, "a row was loaded twice"
    assert len(seq) % 50 == 0, "a torn part was loaded"
    assert set(range(finished * 50)) <= set(seq), "a finished part is missing"
    assert set(seq) == set(range(len(seq)))  # whole parts only, in order: nothing from nowhere


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from mlops_lb.bundle import RunBundle
    from mlops_lb.load import constant, run_load
    b = RunBundle.create(root=sys.argv[2], name="killed-kernel")
    print("ready", flush=True)
    run_load(sys.argv[1], constant(80, 60), json.loads(sys.argv[3]), bundle=b, progress=False,
             max_lag_p99_s=10.0, connections=8, interval_s=0.5)
    """
)


def test_killed_kernel_leaves_a_bundle_with_every_reported_interval(
    fleet: LocalFleet, tmp_path: Path, record
) -> None:
    """SIGKILL the process running run_load(bundle=...) (a killed notebook kernel): the bundle loads, and its
    request records fall short of what the servers counted by at most the unreported last interval."""
    payloads = [p.decode() for p in demo_payloads(8)]
    before = served_ok(fleet)
    proc = subprocess.Popen(
        [sys.executable, "-c", LOAD_SCRIPT, fleet.url + "/predict", str(tmp_path), json.dumps(payloads)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

        def parts() -> int:
            return len(list(tmp_path.glob("*/intervals.parts/part-*.parquet")))

        wait_for(lambda: parts() >= 4, 60, "four interval parts on disk")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    time.sleep(0.2)  # requests the dead client had sent finish on the servers
    counted = served_ok(fleet) - before
    (path,) = tmp_path.iterdir()
    loaded = RunBundle.load(path)
    req = loaded.requests
    ok = int(((req["error"] == "") & (req["status"] == 200)).sum())
    lost = counted - ok
    bound = RATE * LOAD["interval_s"] * 2 + LOAD["connections"]
    record(bundle_ok=ok, server_ok=counted, lost=lost, bound=bound, intervals=len(loaded.intervals))
    assert len(loaded.intervals) >= 4 and ok > 0
    assert req["intended_at"].is_unique
    assert 0 <= lost <= bound
