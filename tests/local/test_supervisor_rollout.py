"""Rollouts on a detached local fleet run inside its supervisor: the client that started one can die (SIGKILL, as a
notebook kernel restart would) and a new process attaches, sees the state, and resumes to completion or rolls back.
`mlops-lb rollout SPEC --rollback` from another process exits 4 (EXIT_SLO_FAILED).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _localfleet import fast_spec, payload

from mlops_lb._commands import EXIT_SLO_FAILED
from mlops_lb.errors import SpecError
from mlops_lb.load import constant, start_load
from mlops_lb.local.supervisor import attach
from mlops_lb.rollouts import Canary, Guard

pytestmark = [pytest.mark.fleet, pytest.mark.serial]

RATE = 40.0  # rps of open-loop load, so the fleet-side guard has requests on the new slot to judge
GUARD = {"p99_s": 0.5, "min_requests": 3, "interval_s": 0.5, "breach_intervals": 2}


@pytest.fixture(scope="module")
def detached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One detached fleet under steady load for the module; down (or SIGTERM) at the end, whatever happened."""
    tmp = tmp_path_factory.mktemp("suproll")
    env = {**os.environ, "MLOPS_LB_STATE_DIR": str(tmp / "state")}
    old_env = os.environ.get("MLOPS_LB_STATE_DIR")
    os.environ["MLOPS_LB_STATE_DIR"] = env[
        "MLOPS_LB_STATE_DIR"
    ]  # attach() in this process finds the same fleet
    spec = tmp / "fleet.yaml"
    spec.write_text(fast_spec("suproll", min=1, desired=1, max=1, scale_in=False, target_rps=1000).to_yaml())
    stop = threading.Event()
    up = subprocess.run(
        [sys.executable, "-m", "mlops_lb", "up", str(spec), "--detach"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        fleet = attach(spec)
        run = start_load(
            fleet.url + "/predict", constant(RATE, 120), payloads=[payload()], progress=False, stop=stop
        )
        yield {"tmp": tmp, "env": env, "spec": spec, "fleet": fleet, "run": run}
    finally:
        stop.set()
        try:
            attach(spec).down()
        except Exception:
            info = tmp / "state" / "suproll.json"
            if info.exists():
                import json

                os.kill(json.loads(info.read_text())["pid"], signal.SIGTERM)
        if old_env is None:
            os.environ.pop("MLOPS_LB_STATE_DIR", None)
        else:
            os.environ["MLOPS_LB_STATE_DIR"] = old_env


def _client(detached: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=detached["env"],
    )


def _kill_at_first_shift(proc: subprocess.Popen[str], timeout: float = 60.0) -> list[str]:
    """Read the client's progress until the first traffic shift, then SIGKILL it (a kernel restart, mid-bake)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "[rollout shift]" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert any("[rollout shift]" in x for x in lines), "".join(lines)
    return lines


def _cli(detached: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_lb", "rollout", str(detached["spec"]), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=detached["env"],
    )


def test_killed_client_then_resume_to_completion(detached: dict[str, Any]) -> None:
    """A notebook-style client starts a canary and dies mid-bake; the rollout goes on in the supervisor, a new
    process sees it ``baking`` and ``rollout(resume=True)`` follows it to ``completed``."""
    code = (
        "from mlops_lb.local.supervisor import attach\n"
        "from mlops_lb.rollouts import Canary, Guard\n"
        f"attach({str(detached['spec'])!r}).rollout({{'local': {{'min_service_ms': 4}}}},\n"
        f"    strategy=Canary(percent=20, bake_s=5), guard=Guard(**{GUARD!r}), on_output=lambda s: print(s, flush=True))\n"
    )
    _kill_at_first_shift(_client(detached, "-c", code))
    fleet = attach(detached["spec"])  # a new process's view: the rollout did not die with its client
    st = fleet.rollout_status()
    assert (st["state"], st["running"], st["percent"]) == ("baking", True, 20.0), st
    assert set(fleet.status()["slot"]) == {"serving", "new"}
    lines: list[str] = []
    res = fleet.rollout(resume=True, on_output=lines.append)  # follows it; the history comes first
    assert res.state == "completed", (res, lines)
    assert lines[0].startswith("[rollout start]") and lines[-1].startswith("[rollout complete]"), lines
    assert res.served.get("new", 0) > 0 and [row["percent"] for row in res.timeline] == [20.0, 100.0]
    assert fleet.rollout_status()["state"] == "completed"
    serving = fleet.status()
    assert (serving[serving["slot"] == "serving"]["target"].str.contains("-r1-")).all()


def test_rollback_from_the_cli_cuts_a_running_rollout_short(detached: dict[str, Any], tmp_path: Path) -> None:
    """A rollout started with ``wait=False`` (a whole FleetSpec as ``new``) bakes in the supervisor; `mlops-lb
    rollout SPEC --rollback` from another process interrupts it, sends the new slot to 0 % and retires it: exit 4,
    the code of a failed verdict, long before the 30 s bake would have ended."""
    fleet = attach(detached["spec"])
    new = fast_spec("suproll", min=1, desired=1, max=1, scale_in=False, target_rps=1000, min_service_ms=3)
    st = fleet.rollout(new, strategy=Canary(percent=20, bake_s=30), guard=Guard(**GUARD), wait=False)
    assert st["state"] == "preparing" and st["running"], st
    deadline = time.monotonic() + 60
    while fleet.rollout_status()["state"] != "baking" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fleet.rollout_status()["state"] == "baking"
    back = _cli(detached, "--rollback")
    assert back.returncode == EXIT_SLO_FAILED, back.stdout + back.stderr
    assert "<RolloutResult rolled_back" in back.stdout
    st = fleet.rollout_status()
    assert (st["state"], st["percent"], st["running"]) == ("rolled_back", 0.0, False), st
    assert "new" not in set(fleet.status()["slot"])
    # The 30 s bake was cut short: from the shift to 20 % to the weight back at 0 %, by the rollout's own clock
    # (the CLI's wall time also holds a Python start-up, seconds on a busy box, which says nothing of the rollout).
    from mlops_lb.local.rollout import RolloutResult

    tl = RolloutResult.from_dict(fleet.call("rollout_status", since=0)["result"]).timeline
    assert [row["percent"] for row in tl] == [20.0, 0.0], tl
    assert (tl[1]["timestamp"] - tl[0]["timestamp"]).total_seconds() < 30, tl
    with pytest.raises(SpecError, match="resume needs an interrupted rollout"):  # nothing left to resume
        fleet.rollout(resume=True)
