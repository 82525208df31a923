"""Test targets as subprocesses on 127.0.0.1: one helper shared by tests/load and tests/distributed.

A target script binds a random loopback port, prints it on its first stdout line and serves until SIGTERM;
``/__count`` answers how many requests it saw.

Example::

    t = spawn_target(Path("tests/load/_server.py"), stall_at=1.0)
    t.base, t.count(); t.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path


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
