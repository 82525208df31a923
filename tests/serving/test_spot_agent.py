"""The spot agent (mlops_lb/serving/spot_agent.py) against the local IMDS emulator: IMDSv2 tokens, 404 until the
notice exists, one deregistration, and a record of each step. Rule spot-notice
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from mlops_lb.local.spot import ImdsEmulator
from mlops_lb.serving.spot_agent import INSTANCE_ACTION, REBALANCE, Imds, SpotAgent


@pytest.fixture
def imds():
    calls: list[str] = []
    emu = ImdsEmulator(on_deregister=calls.append)
    emu.calls = calls  # type: ignore[attr-defined]
    yield emu
    emu.close()


def test_items_404_until_served_and_a_get_without_token_is_401(imds: ImdsEmulator) -> None:
    client = Imds(imds.base_url("i-1"))
    assert client.get(INSTANCE_ACTION) is None and client.get(REBALANCE) is None
    assert client.get("/latest/meta-data/instance-id") == "i-1"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(imds.base_url("i-1") + INSTANCE_ACTION, timeout=2)
    assert ei.value.code == 401
    ei.value.close()
    imds.set_item("i-1", "spot/instance-action", '{"action": "terminate", "time": "2026-12-07T01:02:03Z"}')
    assert json.loads(client.get(INSTANCE_ACTION) or "")["action"] == "terminate"
    assert Imds(imds.base_url("i-2")).get(INSTANCE_ACTION) is None  # another instance: no notice


def test_agent_deregisters_once_on_the_notice_and_records_each_step(imds: ImdsEmulator) -> None:
    records: list[dict] = []
    dereg: list[int] = []
    agent = SpotAgent(
        Imds(imds.base_url("i-1")), deregister=lambda: dereg.append(1), record=records.append, poll_s=0.02
    )
    assert agent.poll_once() is False and dereg == []  # no notice: nothing happens
    imds.set_item("i-1", "events/recommendations/rebalance", '{"noticeTime": "2026-12-07T01:00:00Z"}')
    assert agent.poll_once() is False and [r["event"] for r in records] == ["rebalance"]
    imds.set_item("i-1", "spot/instance-action", '{"action": "terminate", "time": "2026-12-07T01:02:03Z"}')
    stop = threading.Event()
    assert agent.run(stop) is True
    assert dereg == [1]
    assert [r["event"] for r in records] == ["rebalance", "notice", "deregistered"]


def test_a_failed_deregistration_is_recorded_and_raised(imds: ImdsEmulator) -> None:
    records: list[dict] = []

    def fail() -> None:
        raise OSError("elbv2 unreachable")

    imds.set_item("i-1", "spot/instance-action", '{"action": "terminate"}')
    agent = SpotAgent(Imds(imds.base_url("i-1")), deregister=fail, record=records.append)
    with pytest.raises(OSError):
        agent.poll_once()
    assert records[-1]["event"] == "deregister_failed"


def test_the_agent_imports_nothing_but_the_standard_library() -> None:
    """It ships inside the user data and runs on AL2023's python3: no mlops_lb, no third-party import."""
    code = (
        "import runpy, sys; before = set(sys.modules); "
        "runpy.run_path(sys.argv[1], run_name='not_main'); "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "bad = sorted(m for m in new if m not in sys.stdlib_module_names); print(bad); sys.exit(1 if bad else 0)"
    )
    from importlib.resources import files

    path = str(files("mlops_lb.serving").joinpath("spot_agent.py"))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, path], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
