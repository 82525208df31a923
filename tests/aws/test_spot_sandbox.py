"""The spot agent on a sandboxed instance: the user data the program declares for a spot fleet runs byte for byte
(tests/aws/instance_sandbox/), the IMDS emulator serves the two-minute notice, and the agent records
``aws elbv2 deregister-targets`` with the fleet's target group ARN and ``Id=<instance>,Port=<port>`` within 5 s
while a request already in flight completes.

Rules (mlops_lb/_aws_rules.py): spot-notice (``spot/instance-action`` answers 404 until EC2 schedules the
interruption, then JSON with action and time; two minutes; poll every 5 s,
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html) and deregister-scope.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec

sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None
from instance_sandbox import available, fixtures  # noqa: E402

launch, pip_wheels = fixtures.launch, fixtures.pip_wheels

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.serial,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

PORT = 8080
# The user's server with one slow endpoint (8 s: longer than the agent's 5 s poll): a request in flight from
# before the notice until after the deregistration.
SLOW_APP = fixtures.APP.replace(
    "    def do_GET(self):\n",
    "    def do_GET(self):\n"
    "        if self.path == '/slow':\n"
    "            import time; time.sleep(8)\n"
    "            self.send_response(200); self.end_headers(); self.wfile.write(b'done'); return\n",
)


def spot_spec() -> FleetSpec:
    return FleetSpec.from_dict(
        {
            "name": "demo",
            "server": {"command": ["python", "app/server.py", "--port", "{port}"], "install": "app"},
            "target_group": {"deregistration_delay_s": 60},
            "capacity": {"min": 1, "desired": 1, "max": 2, "spot": {"instance_types": ["t3.small"]}},
        }
    )


def deregisters(inst: Any) -> list[dict[str, Any]]:
    return [c for c in inst.aws_calls() if c["argv"][:2] == ["elbv2", "deregister-targets"]]


def test_notice_leads_to_deregistration_within_5_s_while_in_flight_completes(launch: Any) -> None:
    Path("app/server.py").write_text(SLOW_APP)  # the fixture's cwd; packaged by launch() below
    inst = launch(spot_spec())
    assert inst.executed_sha256 == inst.declared_sha256  # type: ignore[attr-defined]
    assert inst.bootstrap.returncode == 0, inst.diagnose()  # type: ignore[attr-defined]
    assert inst.file("/etc/systemd/system/mlops-lb-spot.service").is_file()
    proc = inst.run(["systemd-analyze", "verify", "--man=no", "/etc/systemd/system/mlops-lb-spot.service"])
    assert proc.returncode == 0 and "mlops-lb-spot.service:" not in proc.stderr, proc.stderr
    inst.wait_for(lambda: inst.get(PORT, "/health") == 200, timeout=30, what="/health 200")
    # The agent polls: 404 until the notice exists (it must not deregister before).
    inst.wait_for(
        lambda: any(
            e.get("path") == "/latest/meta-data/spot/instance-action" for e in inst._jsonl("imds.jsonl")
        ),
        timeout=20,
        what="the agent polling spot/instance-action",
    )
    assert deregisters(inst) == []
    slow: dict[str, Any] = {}

    def in_flight() -> None:
        slow["code"] = inst.get(PORT, "/slow", timeout=20)
        slow["done"] = time.time()

    th = threading.Thread(target=in_flight)
    th.start()
    time.sleep(0.5)  # the request is being served
    notice = {
        "action": "terminate",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120)),
    }
    (inst.root / "imds" / "spot" / "instance-action").parent.mkdir(parents=True, exist_ok=True)
    (inst.root / "imds" / "spot" / "instance-action").write_text(json.dumps(notice))
    served = time.time()
    inst.mark("ec2", "spot/instance-action served (two-minute notice)")
    took = inst.wait_for(
        lambda: bool(deregisters(inst)), timeout=5, what="elbv2 deregister-targets within 5 s"
    )
    th.join(30)
    [call] = deregisters(inst)
    argv = call["argv"]
    arn = argv[argv.index("--target-group-arn") + 1]
    assert arn.startswith("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/")
    assert argv[argv.index("--targets") + 1] == f"Id=i-0123456789abcdef0,Port={PORT}"
    assert call["rc"] == 0 and call["t"] - served < 5.0
    # The request in flight at the notice completed after the deregistration: the agent does not stop the server.
    assert slow.get("code") == 200 and slow["done"] > call["t"], slow
    record = inst.file("/var/log/mlops-lb-spot.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in record]
    assert events[-2:] == ["notice", "deregistered"], events
    inst.mark("test", f"deregistered {call['t'] - served:.2f} s after the notice; in-flight request 200")
    print(f"\nspot timeline (deregistered after {took:.2f} s):\n"
          + "\n".join(f"{t:8.2f}  {s:12} {w}" for t, s, w in inst.timeline()))  # fmt: skip
