"""Fixtures for the load-engine tests: a tiny HTTP target (tests/load/_server.py) in a subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("_server.py")


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


@pytest.fixture
def target_factory() -> Iterator[Callable[..., Target]]:
    """Start test targets (``--stall-at`` etc. as keyword args); all are stopped when the test ends."""
    started: list[Target] = []

    def start(**options: float) -> Target:
        args = [sys.executable, str(SERVER)]
        for k, v in options.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            proc.kill()
            raise RuntimeError("test target did not start")
        t = Target(proc, int(line))
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


@pytest.fixture
def target(target_factory: Callable[..., Target]) -> Target:
    """One plain test target."""
    return target_factory()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
