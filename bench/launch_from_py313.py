"""A full ``AwsFleet.preview()`` + ``launch()`` from a Python 3.13 launcher, past the wheelhouse (issue 23).

The defect: instances got Python 3.11 while the wheelhouse pinned the launcher's own numpy/scipy, which have no cp311
wheels, so ``launch()`` from 3.12/3.13 raised "downloading the instances' wheels ... failed" before any cloud call.
Here the real resolver (``uv pip compile`` for x86_64-manylinux_2_34 / the instances' Python) and the real ``pip
download`` (PyPI, the package registry) build the wheelhouse; the Pulumi engine is replaced by the tests' MockedStack,
which runs the fleet's own inline program under the strict mocks (every resource checked against the AWS rules),
and the preflight by the account those mocks pretend to be. No AWS account, no Pulumi CLI (a stub satisfies the
"is the CLI installed" check and is never run).

Run (a 3.13 venv with this checkout: uv venv --python 3.13 /tmp/py313 && uv pip install -e . moto pytest)::

    /tmp/py313/bin/python bench/launch_from_py313.py
"""

from __future__ import annotations

import base64
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "aws"))


def main() -> int:
    import conftest as aws_tests  # the strict mocks (tests/aws/conftest.py)
    from _awsaccount import RESOLVED
    from pulumi import automation as auto
    from test_pinned_assets import MockedStack

    from mlops_lb import FleetSpec
    from mlops_lb.aws import AwsFleet
    from mlops_lb.aws._preflight import Preflight

    print(f"launcher: Python {sys.version.split()[0]} ({sys.executable})")
    home = Path(os.environ.get("MLOPS_LB_HOME") or tempfile.mkdtemp(prefix="mlops-lb-py313-"))
    os.environ["MLOPS_LB_HOME"] = str(home)
    os.environ.setdefault("AWS_REGION", "us-east-1")
    stub = Path(tempfile.mkdtemp()) / "pulumi"  # satisfies _require_cli(); the MockedStack never runs it
    stub.write_text("#!/bin/sh\necho 'the bench never runs the Pulumi CLI' >&2; exit 1\n")
    stub.chmod(0o755)
    os.environ["PATH"] = f"{stub.parent}{os.pathsep}{os.environ['PATH']}"

    stacks: list[MockedStack] = []

    def select(*, stack_name: str, project_name: str, program: object, opts: object) -> MockedStack:
        stacks.append(MockedStack(program, (aws_tests.Recorded, aws_tests.make_mocks)))  # type: ignore[arg-type]
        return stacks[-1]

    auto.create_or_select_stack = select  # type: ignore[assignment]

    def preflight(self: AwsFleet) -> Preflight:
        pf = Preflight(resolved=dict(RESOLVED))
        pf.add("account", True, "the strict mocks' account (tests/aws/_awsaccount.py)")
        return pf

    AwsFleet.preflight = preflight  # type: ignore[method-assign]

    fleet = AwsFleet(FleetSpec(name="py313", region="us-east-1"))
    t = time.monotonic()
    print("preview:", fleet.preview(), f"({time.monotonic() - t:.1f} s: resolve + wheelhouse + program)")
    t = time.monotonic()
    fleet.launch()
    print(f"launch: up ran the program under the strict mocks ({time.monotonic() - t:.1f} s)")
    lock = fleet.assets_lock()
    assert lock is not None
    rec = stacks[-1].ups[-1]
    lt = rec.one("aws:ec2/launchTemplate:LaunchTemplate")
    user_data = base64.b64decode(lt["userData"]).decode()
    pins = {r.split("==")[0]: r.split("==")[1] for r in lock.requirements}
    house = [n for n in lock.wheelhouse_files if n.endswith(".whl")]
    print(
        f"instances' Python: {lock.python}; {len(lock.requirements)} pins, {len(house)} wheels in the wheelhouse"
    )
    print(
        "  "
        + ", ".join(f"{k}=={pins[k]}" for k in ("numpy", "scipy", "scikit-learn", "uvicorn") if k in pins)
    )
    print("  cp313 wheels:", sorted(n for n in house if "cp313" in n)[:4], "...")
    print("  user data installs:", sorted(set(re.findall(r"python3\.\d+", user_data))))
    print(f"resources declared: {len(rec.resources)}; outputs: {sorted(rec.outputs)[:6]} ...")
    print("OK: launch() from 3.13 got past the wheelhouse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
