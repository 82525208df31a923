"""A router of the router tier, booted in the instance sandbox from the user data the program declares.

The router's launch template user data (under the strict mocks) runs byte for byte in ``unshare -m -n``
(tests/aws/instance_sandbox/): the real HAProxy binary of this machine, started by the router's own unit, and the
real sync agent (the three files the user data unpacks from the real wheel) asking the sandbox's ``aws`` for the
model group (DescribeAutoScalingGroups, DescribeInstances: answers shaped as the APIs document, from a file the
test writes). Two real LLM emulators (``mlops-lb serve --llm``) play the model instances on their own private
addresses; the test ends with requests routed by their ``X-Prefix-Key`` through HAProxy to them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec

sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None
from instance_sandbox import Instance, available, pyenv_python  # noqa: E402
from instance_sandbox.fixtures import pip_wheels  # noqa: E402, F401  (fixture)

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.serial,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

LT = "aws:ec2/launchTemplate:LaunchTemplate"
OBJ = "aws:s3/bucketObjectv2:BucketObjectv2"
PORT = 8080
ROUTER_IP = "10.0.0.10"
MODELS = {"i-0aaaaaaaaaaaaaaa1": "10.0.1.5", "i-0bbbbbbbbbbbbbbb2": "10.0.1.6"}
BOOTING = (
    "i-0ddddddddddddddd4",
    "10.0.1.8",
)  # InService in its group, its server not up yet (EC2 health checks)


def router_spec() -> FleetSpec:
    return FleetSpec.from_dict(
        {
            "name": "llm",
            "server": {"kind": "llm-emulator", "llm": {"decode_ms_per_token": 1, "prefill_ms_per_token": 0}},
            "scaling": {"metric": "concurrency_per_target", "target_concurrency_per_target": 4},
            "routing": {"policy": "consistent_hash", "router": {"instance_type": "t3.small"}},
            # the routers' checks of the models use these: fast, so the test does not wait 25 s
            "aws": {"health_check": {"interval_s": 5, "timeout_s": 2, "healthy_threshold": 2}},
        }
    )


@pytest.fixture
def router(run_program: Any, pip_wheels: Path, tmp_path: Path) -> Iterator[tuple[Instance, Any]]:  # noqa: F811
    """A started router instance whose user data has run, and the program's record."""
    from mlops_lb.aws.assets import build_wheel
    from mlops_lb.aws.program import Assets

    exe = pyenv_python("3.13")
    if exe is None:
        pytest.skip("pyenv has no Python 3.13")
    wheel = build_wheel(tmp_path / "dist")  # the real package: the router unpacks its agent from it
    rec = run_program(router_spec(), assets=Assets(wheel=wheel, python_version="3.13"))
    user_data = base64.b64decode(rec.one(LT, "llm-router-lt")["userData"])
    bucket = rec.outputs["bucket"]
    s3 = {f"{bucket}/{i['key']}": Path(i["source"].path) for _, i in rec.of_type(OBJ)}
    inst = Instance(
        tmp_path / "router", user_data=user_data, s3=s3, pythons={"3.13": exe}, pip_wheels=pip_wheels
    )
    inst.declared_sha256 = hashlib.sha256(user_data).hexdigest()  # type: ignore[attr-defined]
    (inst.root / "imds" / "local-ipv4").write_text(ROUTER_IP)  # the instance's primary private address
    try:
        inst.start()
        for ip in (
            ROUTER_IP,
            *MODELS.values(),
            BOOTING[1],
        ):  # the VPC's addresses, on the namespace's loopback
            inst.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        yield inst, rec
    finally:
        (tmp_path / "timeline-router.json").write_text(json.dumps(inst.timeline(), indent=1))
        inst.close()


def start_model(inst: Instance, instance_id: str, ip: str) -> subprocess.Popen[bytes]:
    """A model instance: the real LLM emulator on its private address, inside the sandbox's network namespace."""
    assert inst.init is not None
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with (inst.root / f"model-{instance_id}.log").open("wb") as log:
        return subprocess.Popen(
            ["nsenter", "-t", str(inst.init.pid), "-n", "--", sys.executable, "-m", "mlops_lb", "serve", "--llm",
             "--host", ip, "--port", str(PORT), "--target-id", instance_id, "--decode-ms-per-token", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def haproxy_stats(inst: Instance) -> list[dict[str, str]]:
    """The router's ``show stat`` rows of its model slots, read inside the instance with the agent's own client."""
    code = (
        "import json; from mlops_lb.haproxy_runtime import RuntimeApi; "
        "print(json.dumps([r.raw for r in RuntimeApi('/opt/mlops_lb/router/admin.sock').show_stat() "
        "if r.proxy == 'models' and r.server.startswith('m')]))"
    )
    proc = inst.run(
        ["env", "PYTHONPATH=/opt/mlops_lb/router/lib", "/opt/mlops_lb/router/venv/bin/python", "-c", code],
        check=True,
    )
    return list(json.loads(proc.stdout))


def completion(inst: Instance, key: str | None) -> tuple[int, str]:
    """POST /v1/completions to the router's private address (as the ALB would), with the key header; (status,
    X-Target-Id)."""
    header = ["-H", f"X-Prefix-Key: {key}"] if key else []
    body = json.dumps({"model": "m", "prompt": "hello there", "max_tokens": 2})
    proc = inst.run(
        ["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "10", "-H", "Content-Type: application/json",
         *header, "-d", body, f"http://{ROUTER_IP}:{PORT}/v1/completions"],
        timeout=20,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    target = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("x-target-id:")), "")
    return status, target


def test_router_boots_discovers_the_model_group_and_routes_by_key(router: tuple[Instance, Any]) -> None:
    """User data byte for byte -> HAProxy + sync agent running -> the group's InService instances in HAProxy's
    slots -> the same key always reaches the same model, different keys reach both; a departed instance is
    drained out and its keys move to the other one."""
    inst, rec = router
    models = [start_model(inst, iid, ip) for iid, ip in MODELS.items()]
    try:
        proc = inst.run_user_data()
        assert inst.executed_sha256 == inst.declared_sha256  # type: ignore[attr-defined]
        assert proc.returncode == 0, inst.diagnose()
        # The console is fed by `exec > >(tee | logger ...)`, which bash does not wait for: allow its last lines a
        # moment after the script exited (bounded).
        deadline = time.monotonic() + 10.0
        while "mlops-lb: router bootstrap done" not in inst.console() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mlops-lb: router bootstrap done" in inst.console(), inst.diagnose()
        assert ["install", "-y", "haproxy", "python3.13"] in [c["argv"] for c in inst.dnf_calls()]
        # No model yet: the ALB's health check of the router fails (monitor fail), so the ALB would fail open
        # to routers that all say so rather than send to one with nothing behind it.
        inst.wait_for(
            lambda: inst.get(PORT, "/health") == 503, timeout=20, what="router /health 503, no models"
        )
        group = rec.outputs["asg_name"]
        members = [
            {"InstanceId": iid, "LifecycleState": "InService", "PrivateIpAddress": ip}
            for iid, ip in MODELS.items()
        ]
        members.append(
            {"InstanceId": "i-0ccccccccccccccc3", "LifecycleState": "Pending", "PrivateIpAddress": "10.0.1.7"}
        )
        members.append(
            {"InstanceId": BOOTING[0], "LifecycleState": "InService", "PrivateIpAddress": BOOTING[1]}
        )
        (inst.root / "asg" / "models.json").write_text(json.dumps({"group": group, "instances": members}))
        inst.mark("autoscaling", "model group: 2 InService, 1 Pending")
        inst.wait_for(lambda: inst.get(PORT, "/health") == 200, timeout=40, what="router /health 200")
        inst.wait_for(
            lambda: len({completion(inst, f"k{i}")[1] for i in range(12)}) == 2,
            timeout=30,
            what="both models up",
        )
        inst.mark("test", "both models serve through the router")
        placed = {f"conv-{i}": completion(inst, f"conv-{i}") for i in range(16)}
        assert all(status == 200 for status, _ in placed.values()), placed
        assert {t for _, t in placed.values()} == set(MODELS)  # different keys reach both models
        for key, (_, target) in placed.items():  # the same key, the same model, every time
            assert {completion(inst, key)[1] for _ in range(3)} == {target}, key
        # The booting instance got a slot but never a request: it entered with its health forced down and has
        # not passed a check (HAProxy would otherwise assume a server leaving maintenance is up).
        stats = {r["addr"]: r for r in haproxy_stats(inst)}
        assert stats[f"{BOOTING[1]}:{PORT}"]["status"] == "DOWN"
        assert stats[f"{BOOTING[1]}:{PORT}"]["stot"] == "0", stats[f"{BOOTING[1]}:{PORT}"]
        calls = [c["argv"][:2] for c in inst.aws_calls()]
        assert ["autoscaling", "describe-auto-scaling-groups"] in calls and [
            "ec2",
            "describe-instances",
        ] in calls
        # the Pending instance never got a slot: only the group's InService instances are routed to
        gone, stays = list(MODELS)
        (inst.root / "asg" / "models.json").write_text(json.dumps({"group": group, "instances": members[1:]}))
        inst.mark("autoscaling", f"{gone} left the group")
        inst.wait_for(
            lambda: {completion(inst, k)[1] for k in placed} == {stays},
            timeout=30,
            what="keys moved to the other",
        )
        inst.mark("test", "departed instance drained out of the router")
        print("\ntimeline, router:\n" + "\n".join(f"{t:8.2f}  {s:12} {w}" for t, s, w in inst.timeline()))
    finally:
        for m in models:
            os.killpg(m.pid, signal.SIGTERM)
        for m in models:
            try:
                m.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(m.pid, signal.SIGKILL)
                m.wait(timeout=10)
