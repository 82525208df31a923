"""Nothing left behind: close(), Ctrl-C during launch(), and the death of the parent process."""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from _localfleet import fast_spec, wait_for

from mlops_lb.local import LocalFleet

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = pytest.mark.fleet


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _all_gone(pids: set[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_close_leaves_no_process_and_is_idempotent() -> None:
    """After close() neither HAProxy nor any worker runs, the temp dir is gone, and close() again is a no-op."""
    before = _children()
    fleet = LocalFleet(fast_spec("cls", desired=1))
    fleet.launch()
    ours = _children() - before
    assert len(ours) >= 2  # haproxy + a worker
    work_dir = fleet.work_dir
    fleet.close()
    fleet.close()
    assert _all_gone(ours) and not work_dir.exists()
    assert "closed" in repr(fleet)


def test_keyboard_interrupt_during_launch_cleans_up() -> None:
    """Ctrl-C while launch() waits for health checks stops HAProxy and the workers before re-raising."""
    before = _children()
    seen: set[int] = set()
    fleet = LocalFleet(fast_spec("kbi", desired=2))

    def interrupt_when_launched() -> None:
        wait_for(lambda: len(_children() - before) >= 3, 10, "haproxy and two workers")
        seen.update(_children() - before)
        _thread.interrupt_main()

    t = threading.Thread(target=interrupt_when_launched, daemon=True)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        fleet.launch()
    t.join()
    assert len(seen) >= 3
    assert _all_gone(seen)


SCRIPT = """
import json, sys, time
sys.path.insert(0, {tests!r})
from _localfleet import fast_spec
from mlops_lb.local import LocalFleet
fleet = LocalFleet(fast_spec("orph", desired=1), work_dir={work_dir!r})
fleet.launch()
print(json.dumps([int(fleet._haproxy.pid), *map(int, fleet.status()["pid"])]), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_killed_parent_takes_children_along(tmp_path: Path) -> None:
    """SIGKILL the process that owns a fleet (a crashed notebook kernel): HAProxy and the workers follow it."""
    script = tmp_path / "owner.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), work_dir=str(tmp_path / "fleet")))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        pids = set(json.loads(line))
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _all_gone(pids):
            time.sleep(0.1)
        assert _all_gone(pids)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(5)
        if owner.stdout:
            owner.stdout.close()


def test_finalizer_signals_no_reaped_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet's last-resort kill skips workers and HAProxy already reaped (their ids may be reused by then:
    pid_max is 32768 on many machines) and still kills the ones alive."""
    from types import SimpleNamespace

    import mlops_lb.local.fleet as fleet_mod
    from mlops_lb.local.workers import WorkerProcess

    signalled: list[int] = []
    monkeypatch.setattr(fleet_mod, "kill_group", lambda pgid, *a: signalled.append(pgid))
    done = subprocess.Popen(["true"], start_new_session=True)
    done.wait(5)
    alive = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        workers = [WorkerProcess(target_id=f"i-{p.pid}", port=1, proc=p) for p in (done, alive)]
        haproxy = SimpleNamespace(pid=done.pid, proc=done)
        res = fleet_mod._Resources(
            haproxy=haproxy,  # type: ignore[arg-type]
            asg=SimpleNamespace(instances=[SimpleNamespace(worker=w) for w in workers]),  # type: ignore[arg-type]
        )
        res.kill()
        assert signalled == [alive.pid]
    finally:
        alive.kill()
        alive.wait(5)


STOPPED_SCRIPT = """
import json, sys, time
sys.path.insert(0, {tests!r})
from _localfleet import fast_spec
from mlops_lb.local import LocalFleet
fleet = LocalFleet(fast_spec("stop", desired=1))
fleet.launch()
print(json.dumps([str(fleet.work_dir), int(fleet._haproxy.pid), *map(int, fleet.status()["pid"])]), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_owner_takes_a_stopped_worker_and_the_work_dir_along(tmp_path: Path) -> None:
    """A SIGSTOPped worker keeps the parent-death SIGTERM pending forever; the reaper SIGKILLs it after its grace,
    and removes the owner's temp work dir (admin.sock, config, logs). Before: the worker outlived its owner and the
    work dir stayed (issue 19)."""
    from mlops_lb.local._proc import REAPER_GRACE_S

    script = tmp_path / "owner.py"
    script.write_text(STOPPED_SCRIPT.format(tests=str(Path(__file__).parent)))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids: set[int] = set()
    try:
        work_dir, *ids = json.loads(owner.stdout.readline() if owner.stdout else "[]")
        pids = set(ids)
        worker = ids[-1]
        assert Path(work_dir, "admin.sock").exists()
        os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: psutil.Process(worker).status() == psutil.STATUS_STOPPED, 5, "the worker stopped")
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(5)
        killed = time.monotonic()
        wait_for(lambda: _all_gone(pids), REAPER_GRACE_S + 10, "HAProxy and the stopped worker gone")
        gone_s = time.monotonic() - killed
        wait_for(lambda: not Path(work_dir).exists(), 10, "the work dir removed")
        print(f"stopped worker gone {gone_s:.2f} s after its owner was SIGKILLed")
    finally:
        for p in pids:  # never leave a stopped process behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait(5)
        if owner.stdout:
            owner.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_next_fleet_sweeps_work_dirs_whose_owner_is_gone() -> None:
    """A temp work dir whose owner died with its reaper is removed when the next fleet is made; a live owner's
    dir (same pid, same start time) is kept."""
    import tempfile

    from mlops_lb.local._proc import process_start_time

    dead = subprocess.Popen(["true"])
    dead.wait(5)
    orphan = Path(tempfile.mkdtemp(prefix="mlops-lb-"))
    (orphan / "owner").write_text(f"{dead.pid} 12345\n")
    (orphan / "admin.sock").write_text("")
    alive = Path(tempfile.mkdtemp(prefix="mlops-lb-"))
    (alive / "owner").write_text(f"{os.getpid()} {process_start_time(os.getpid())}\n")
    try:
        fleet = LocalFleet(fast_spec("sweep", desired=1))
        fleet.close()
        assert not orphan.exists() and alive.exists()
    finally:
        for d in (orphan, alive):
            shutil.rmtree(d, ignore_errors=True)


def test_scale_stores_plain_ints_and_refuses_after_close() -> None:
    """scale(desired=np.int64(2)) stores an int (the spec and JSON need one); bools and floats are refused naming
    the field; after close() scale() raises instead of changing capacity. Before: np.int64 was stored, and a
    closed fleet accepted scale() (issue 19)."""
    import numpy as np

    from mlops_lb.errors import ProvisionError, SpecError

    fleet = LocalFleet(fast_spec("ints", min=1, desired=1, max=3))
    try:
        fleet.scale(desired=np.int64(2), max=np.int32(3))
        assert fleet.capacity == (1, 2, 3) and all(type(v) is int for v in fleet.capacity)
        assert type(fleet.spec.capacity.desired) is int
        for bad in (True, 2.0, "2"):
            with pytest.raises(SpecError, match=r"capacity\.desired must be an integer"):
                fleet.scale(desired=bad)  # type: ignore[arg-type]
        assert fleet.capacity == (1, 2, 3)
    finally:
        fleet.close()
    with pytest.raises(ProvisionError, match="closed"):
        fleet.scale(desired=1)
    assert fleet.capacity == (1, 2, 3)
