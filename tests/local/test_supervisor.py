"""`mlops-lb up --detach`: a local fleet under a supervisor, controlled from other processes through a private socket.

Every command runs as its own subprocess (another shell, as a user would), and the test checks that nothing of the
fleet is left running afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _localfleet import fast_spec

from mlops_lb.errors import ProvisionError

pytestmark = [pytest.mark.fleet]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


class Cli:
    """Runs `python -m mlops_lb ...` as a separate process with a private state dir."""

    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.cwd = tmp
        self.env = {**os.environ, "MLOPS_LB_STATE_DIR": str(self.state)}

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlops_lb", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env=self.env,
        )


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(fast_spec("sup", min=1, desired=1, max=3, scale_in=False).to_yaml())
    return path


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path)
    yield c
    # whatever the test did, no supervisor survives it
    info = c.state / "sup.json"
    if info.exists():
        pid = json.loads(info.read_text())["pid"]
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            _wait_gone([pid], 60)


def _pids(cli: Cli, spec: Path) -> list[int]:
    out = cli("status", str(spec))
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()[2:]
    # pandas right-aligns a number column under its header, so each row's pid ends where the word "pid" ends;
    # counting words instead broke on values with spaces (launched_at, an HAProxy status such as "DOWN 1/2").
    end = header.index(" pid ") + len(" pid")
    return [int(r[:end].split()[-1]) for r in rows]


@pytest.mark.serial
def test_up_detach_status_scale_load_down_from_separate_processes(
    cli: Cli, spec_file: Path, tmp_path: Path
) -> None:
    """The fleet outlives `up`; status, scale, load and down work from other processes; after down nothing is left."""
    spec = str(spec_file)
    up = cli("up", spec, "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "is up at http://127.0.0.1:" in up.stdout and "detached (supervisor pid" in up.stdout
    info = json.loads((cli.state / "sup.json").read_text())
    supervisor = int(info["pid"])
    assert _alive(supervisor)  # `up` has exited; its supervisor runs on
    # private: a 0700 directory owned by us, a 0600 socket
    assert stat.S_IMODE(cli.state.stat().st_mode) == 0o700
    assert stat.S_IMODE((cli.state / "sup.sock").stat().st_mode) == 0o600

    first = _pids(cli, spec_file)
    assert len(first) == 1 and all(_alive(p) for p in first)

    scaled = cli("scale", spec, "--desired", "2")
    assert scaled.returncode == 0 and "desired 2" in scaled.stdout, scaled.stderr
    deadline = time.monotonic() + 60
    pids = first
    while len(pids) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = _pids(cli, spec_file)
    assert len(pids) == 2

    load = cli("load", spec, "--rps", "10", "--duration-s", "2", "--out", str(tmp_path / "runs"),
               "--max-lag-p99-s", "2")  # fmt: skip
    assert load.returncode == 0, load.stdout + load.stderr
    assert load.stdout.count("healthy 2") >= 1 and "report: " in load.stdout
    (run,) = (tmp_path / "runs").iterdir()
    import mlops_lb as ml

    b = ml.RunBundle.load(run)
    assert (
        b.summary["requests"] == 20 and len(b.metrics) and len(b.status) == 2
    )  # the fleet's data came along

    from mlops_lb.local.supervisor import attach

    os.environ["MLOPS_LB_STATE_DIR"] = str(cli.state)
    try:
        haproxy = int(attach(spec_file).pids["haproxy"])
    finally:
        del os.environ["MLOPS_LB_STATE_DIR"]
    down = cli("down", spec)
    assert down.returncode == 0, down.stderr
    assert _wait_gone([supervisor, haproxy, *pids], 10) == []
    assert not (cli.state / "sup.sock").exists()
    again = cli("status", spec)
    assert again.returncode == 2 and "no detached local fleet 'sup' is running" in again.stderr


@pytest.mark.slow  # a second fleet launch (~25 s on two busy cores); the e2e test above covers down
def test_a_killed_supervisor_takes_its_fleet_along_and_status_cleans_up(cli: Cli, spec_file: Path) -> None:
    """SIGKILL of the supervisor: its targets and HAProxy die too; the next status says so and removes the socket."""
    up = cli("up", str(spec_file), "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    supervisor = int(json.loads((cli.state / "sup.json").read_text())["pid"])
    pids = _pids(cli, spec_file)
    os.kill(supervisor, signal.SIGKILL)
    assert _wait_gone([supervisor, *pids], 30) == []
    out = cli("status", str(spec_file))
    assert out.returncode == 2 and "is gone (its supervisor died" in out.stderr
    assert not (cli.state / "sup.sock").exists()


class TestRefusals:
    def test_state_dir_open_to_others_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A state dir other users can enter is refused with the fix (chmod 700), not silently used."""
        from mlops_lb.local.supervisor import state_dir

        d = tmp_path / "open"
        d.mkdir(mode=0o755)
        d.chmod(0o755)
        monkeypatch.setenv("MLOPS_LB_STATE_DIR", str(d))
        with pytest.raises(ProvisionError, match=r"open to other users .*chmod 700"):
            state_dir()
        d.chmod(0o700)
        assert state_dir() == d

    def test_detach_is_local_only_and_validates_before_any_process(self, cli: Cli, tmp_path: Path) -> None:
        """--detach with --backend aws, or a bad spec, exits 2 before a supervisor starts."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: sup\ncapacity: {min: 3, desired: 1, max: 2}\n")
        out = cli("up", str(bad), "--detach")
        assert out.returncode == 2 and "capacity" in out.stderr
        assert not (cli.state / "sup.json").exists() and not (cli.state / "sup.log").exists()
        spec = tmp_path / "ok.yaml"
        spec.write_text(fast_spec("sup").to_yaml())
        out = cli("up", str(spec), "--detach", "--backend", "aws")
        assert out.returncode == 2 and "--detach is for the local fleet" in out.stderr


class TestWatchdog:
    """A supervisor whose fleet died closes it and stops serving (exit code 1), rather than answering for a corpse."""

    class DeadFleet:
        closed = False
        balancer = "up"
        balancer_reason = ""
        _thread = None

    def _supervisor(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
        from mlops_lb.local.supervisor import _Supervisor

        monkeypatch.setenv("MLOPS_LB_STATE_DIR", str(tmp_path / "state"))
        sup = _Supervisor(fast_spec("w"))  # builds a LocalFleet object; nothing is started
        sup.fleet = self.DeadFleet()  # type: ignore[assignment]
        return sup

    def test_controller_gone(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        sup = self._supervisor(tmp_path, monkeypatch)
        sup.fleet.closed = True  # type: ignore[attr-defined]
        sup._watch()  # type: ignore[attr-defined]
        assert sup.stop.is_set() and sup.reason == "fleet died: its controller stopped"  # type: ignore[attr-defined]

    def test_balancer_down_too_long(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("mlops_lb.local.supervisor.DEAD_AFTER_S", 0.0)
        sup = self._supervisor(tmp_path, monkeypatch)
        sup.fleet.balancer, sup.fleet.balancer_reason = "down", "port taken"  # type: ignore[attr-defined]
        sup._watch()  # type: ignore[attr-defined]
        assert sup.reason == "fleet died: the balancer is down (port taken)"  # type: ignore[attr-defined]

    def test_a_live_fleet_is_left_alone(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        sup = self._supervisor(tmp_path, monkeypatch)
        t = threading.Thread(target=sup._watch, daemon=True)  # type: ignore[attr-defined]
        t.start()
        time.sleep(1.5)  # one watch tick has passed
        assert not sup.stop.is_set()  # type: ignore[attr-defined]
        sup.stop.set()  # type: ignore[attr-defined]
        t.join(5)
