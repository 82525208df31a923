"""Test targets as subprocesses on 127.0.0.1, and process checks: one helper shared by tests/load and
tests/distributed (imported by module name, never from a ``conftest``: two directories' conftest modules share the
name ``conftest``, so ``from conftest import ...`` finds whichever was imported last).

A target script binds a random loopback port, prints it on its first stdout line and serves until SIGTERM;
``/__count`` answers how many requests it saw. :data:`SERVER` is the one test target (stalls, fixed delays,
streams, errors: see its docstring).

Example::

    t = spawn_target(SERVER, stall_at=1.0)     # or delay_s=0.005: every answer after 5 ms
    t.base, t.count(); t.stop()
    wait_gone([pid]) == []                      # the process has exited (a zombie counts as gone)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER = Path(__file__).resolve().parent / "load" / "_server.py"


@dataclass
class Target:
    """A running test target: ``base`` is ``http://127.0.0.1:<port>``; ``count()`` asks how many it saw."""

    proc: subprocess.Popen[str]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> int:
        with urllib.request.urlopen(f"{self.base}/__count", timeout=5) as resp:
            return int(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def spawn_target(script: Path, **options: float) -> Target:
    """Start ``script`` with ``--option value`` flags in its own process group and wait for its port."""
    args = [sys.executable, str(script)]
    for k, v in options.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise RuntimeError(f"test target {script.name} did not start")
    return Target(proc, int(line))


@contextlib.contextmanager
def targets_started() -> Iterator[Callable[..., Target]]:
    """``start(**options)`` -> a new :data:`SERVER` target; every target started is stopped on exit (the body of
    the ``target_factory``/``start_target`` fixtures)."""
    started: list[Target] = []

    def start(**options: float) -> Target:
        t = spawn_target(SERVER, **options)
        started.append(t)
        return t

    try:
        yield start
    finally:
        for t in started:
            t.stop()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (its parent reaps it later)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    """Wait up to ``timeout`` s for ``pids`` to exit; returns those still running (empty: all gone)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if pid_alive(p)]
    return alive
