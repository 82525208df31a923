"""Bring your own server: a user-style server (tests/local/user_server.py, standard library only, no mlops_lb,
no X-Target-Id header) behind the local fleet, with real HAProxy and real processes.

The contract (DESIGN §8): a target is any process that listens on the port it is given and answers the health
check. HAProxy adds X-Target-Id itself (``http-response set-header X-Target-Id %[srv_name]``; ``srv_name`` per
the HAProxy 2.6 Configuration Manual §7.3.3), so per-target attribution needs nothing from the server.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
from typing import Any

import psutil
import pytest
from _localfleet import USER_SERVER, fast_spec, run_load, wait_for

import mlops_lb as ml
from mlops_lb.errors import ProvisionError, SpecError
from mlops_lb.local import LocalFleet
from mlops_lb.local.workers import worker_argv

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = pytest.mark.fleet


def byo_spec(name: str, *, env: dict[str, str] | None = None, **kw: Any) -> ml.FleetSpec:
    """fast_spec with the user server as a command; extra keywords replace `server` fields."""
    base = fast_spec(name, **{k: kw.pop(k) for k in ("min", "desired", "max", "algorithm") if k in kw})
    server = ml.ServerSpec(command=["python", str(USER_SERVER), "--port", "{port}"], env=env or {}, **kw)
    return base.replace(server=server)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _gone(pids: set[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_traffic_spreads_with_target_ids_from_haproxy_and_logs_are_returned() -> None:
    """Round robin alternates over two user servers; every response carries the X-Target-Id HAProxy set (the
    server sets none); each target got its own port and TARGET_ID; logs() returns the target's output."""
    with LocalFleet(byo_spec("byo", min=2, desired=2)) as fleet:
        fleet.launch()
        stats = run_load(fleet.url, requests=40, concurrency=1)
        assert stats.statuses == {200: 40}
        targets = set(fleet.status()["target"])
        assert set(stats.targets) == targets  # no "" : every response was attributed
        assert max(stats.targets.values()) - min(stats.targets.values()) <= 1
        for t, addr in fleet.status()[["target", "address"]].itertuples(index=False):
            text = fleet.logs(t)
            assert f"listening on {addr} as {t}" in text  # {port} placeholder and env TARGET_ID
            assert "done /predict" in text and '"POST /predict HTTP/1.1" 200' in text
        assert len(fleet.logs(t, tail=2).splitlines()) == 2
        with pytest.raises(SpecError, match="is not a target of this fleet"):
            fleet.logs("i-nope")
        # Only our own server is scraped for latency: a user server without metrics_path gets no request for it.
        assert "/metrics" not in fleet.logs(t)
        assert not (fleet.metrics()["metric"] == "TargetResponseTime").any()


def test_sigkilled_user_server_is_replaced() -> None:
    """A SIGKILLed user server is marked unhealthy, terminated and replaced; traffic flows to the new one."""
    with LocalFleet(byo_spec("byok", min=2, desired=2)) as fleet:
        fleet.launch()
        victim = fleet.status().iloc[0]
        os.killpg(int(victim["pid"]), signal.SIGKILL)
        wait_for(
            lambda: (
                (fleet.status()["health"] == "healthy").sum() == 2
                and victim["target"] not in set(fleet.status()["target"])
            ),
            30,
            "a healthy replacement",
        )
        ev = fleet.events()
        assert ((ev["kind"] == "unhealthy") & (ev["target"] == victim["target"])).any()
        assert ((ev["kind"] == "terminate") & (ev["target"] == victim["target"])).any()
        assert (ev["kind"] == "launch").sum() == 3
        stats = run_load(fleet.url, requests=20)
        assert stats.statuses == {200: 20} and victim["target"] not in stats.targets


def test_scale_in_drains_in_flight_requests_before_sigterm() -> None:
    """Scale-in while a 3 s request runs on the victim: it completes (200) before the balancer lets go of the
    target, SIGTERM comes after it, and the server exits by itself (code 0) within drain_timeout_s."""
    spec = byo_spec("byod", min=1, desired=2, env={"SLEEP_S": "3"})
    # Deregistration delay 300 s -> 5 s here: longer than the request, so draining waits for it.
    spec = spec.replace(target_group=dataclasses.replace(spec.target_group, deregistration_delay_s=300))
    with LocalFleet(spec) as fleet:
        fleet.launch()
        stats: list[Any] = []
        load = threading.Thread(target=lambda: stats.append(run_load(fleet.url, requests=2, concurrency=2)))
        load.start()
        wait_for(
            lambda: (fleet.status()["sessions"] > 0).sum() == 2, 10, "a request in flight on each target"
        )
        fleet.scale(desired=1)
        load.join(20)
        assert stats[0].statuses == {200: 2} and len(stats[0].targets) == 2
        victim = fleet.events().query("kind == 'draining'")["target"].iloc[0]
        wait_for(
            lambda: ((fleet.events()["kind"] == "terminate") & (fleet.events()["target"] == victim)).any(),
            15,
            "terminate",
        )
        lines = fleet.logs(victim).splitlines()
        assert lines.index("done /predict") < lines.index("got SIGTERM") < lines.index("exiting")
        ev = fleet.events().query("target == @victim")
        assert "no in-flight requests left" in ev.query("kind == 'deregistered'")["detail"].iloc[0]
        assert "exited with code 0" in ev.query("kind == 'terminate'")["detail"].iloc[0]


def test_server_ignoring_sigterm_is_killed_after_drain_timeout() -> None:
    """A server that ignores SIGTERM gets SIGKILL once server.drain_timeout_s has passed."""
    spec = byo_spec("byot", min=0, desired=1, env={"IGNORE_TERM": "1"}, drain_timeout_s=1)
    with LocalFleet(spec) as fleet:
        fleet.launch()
        target = fleet.status()["target"].iloc[0]
        fleet.scale(desired=0)
        wait_for(lambda: (fleet.events()["kind"] == "terminate").any(), 15, "terminate")
        detail = fleet.events().query("kind == 'terminate'")["detail"].iloc[0]
        assert f"code {-signal.SIGKILL}" in detail, detail
        assert "got SIGTERM" in fleet.logs(target)


@pytest.mark.parametrize(
    ("code", "startup_timeout_s", "expect"),
    [
        ("print('model file missing', flush=True); raise SystemExit(3)", None, "exited with code 3"),
        (
            "import time; print('warming up forever', flush=True); time.sleep(120)",
            2,
            "never passed a health check",
        ),
    ],
    ids=["exits_at_once", "never_listens"],
)
def test_broken_command_fails_launch_with_its_output_and_leaves_nothing(
    code: str, startup_timeout_s: int | None, expect: str
) -> None:
    """A command that exits at once, or never listens within startup_timeout_s, fails launch() with that
    target's exit code and last log lines; no process is left running."""
    before = _children()
    spec = fast_spec("bad", desired=1).replace(
        server=ml.ServerSpec(command=["python", "-c", code], startup_timeout_s=startup_timeout_s)
    )
    fleet = LocalFleet(spec)
    seen: set[int] = set()
    t0 = time.monotonic()
    with pytest.raises(ProvisionError) as exc:
        fleet.launch(on_output=lambda _: seen.update(_children() - before))
    text = str(exc.value)
    assert expect in text and ("model file missing" in text or "warming up forever" in text), text
    assert re.search(r"i-local\S*0001 \(python -c ", text), text  # the target and its command
    assert time.monotonic() - t0 < 60
    seen |= {p for p in _children() - before}
    assert _gone(seen)


@pytest.mark.parametrize(
    ("server", "model", "field", "words"),
    [
        ({"image": "vllm/vllm-openai:v0.6.3"}, "demo", "server.image", "no container engine"),
        ({"command": ["python", "app.py"]}, "s3://bucket/model.joblib", "model.source", "s3://"),
        (
            {"command": ["no-such-program-xyz", "--port", "{port}"]},
            "demo",
            "server.command",
            "not an executable",
        ),
    ],
)
def test_local_backend_refuses_what_it_cannot_run_before_any_process(
    server: dict[str, Any], model: str, field: str, words: str
) -> None:
    """image, an s3:// model and a missing program: a SpecError naming the field, before any process starts."""
    before = _children()
    spec = ml.FleetSpec.from_dict(
        {"name": "r", "server": server, "model": {"source": model, "allow_pickle": True}}
    )
    with pytest.raises(SpecError) as exc:
        LocalFleet(spec)
    assert exc.value.field == field and words in str(exc.value)
    assert _children() - before == set()


def test_llm_emulator_argv() -> None:
    """kind llm-emulator starts `python -m mlops_lb serve --llm` on the target's port, with server.llm as flags."""
    spec = ml.FleetSpec.from_dict(
        {"name": "l", "server": {"kind": "llm-emulator", "llm": {"max_num_seqs": 4, "seed": 7}}}
    )
    assert worker_argv(spec, port=9001, target_id="i-local0001") == [
        sys.executable, "-m", "mlops_lb", "serve", "--llm", "--port", "9001", "--host", "127.0.0.1",
        "--target-id", "i-local0001", "--max-num-seqs", "4", "--seed", "7",
    ]  # fmt: skip


def test_llm_emulator_targets_serve_completions_behind_haproxy() -> None:
    """kind llm-emulator: the emulator (mlops-lb serve --llm) boots with the flags the spec builds, passes the
    health check and answers /v1/completions through the balancer, attributed by X-Target-Id."""
    spec = fast_spec("llm", min=1, desired=1).replace(
        server=ml.ServerSpec(
            kind="llm-emulator", llm={"max_num_seqs": 2, "decode_ms_per_token": 1, "seed": 3}
        )
    )
    with LocalFleet(spec) as fleet:
        fleet.launch()
        target = fleet.status()["target"].iloc[0]
        host, port = fleet.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 4})
        conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == 200 and resp.getheader("X-Target-Id") == target
        assert answer["usage"]["completion_tokens"] == 4
        assert "--max-num-seqs 2" in " ".join(
            fleet.status()["pid"].map(lambda p: " ".join(psutil.Process(p).cmdline()))
        )


def test_our_server_keeps_its_own_header_value() -> None:
    """HAProxy's X-Target-Id for our own server equals the id the server itself sends (server name = target id)."""
    with LocalFleet(fast_spec("own", desired=1)) as fleet:
        fleet.launch()
        target = fleet.status()["target"].iloc[0]
        host, port = fleet.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.getheader("X-Target-Id") == target
