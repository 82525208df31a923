"""The sandbox's pytest fixtures, shared by the test modules that boot an instance (import them by name).

Example::

    from instance_sandbox.fixtures import launch, pip_wheels  # noqa: F401  (fixtures)

    def test_boots(launch):
        inst = launch(FleetSpec.from_dict({"name": "demo", "server": {"command": [...], "install": "app"}}))
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec

from . import AL2023_PIP, Instance, pyenv_python

LT = "aws:ec2/launchTemplate:LaunchTemplate"
OBJ = "aws:s3/bucketObjectv2:BucketObjectv2"
CACHE = Path(os.environ.get("MLOPS_LB_SANDBOX_CACHE", str(Path.home() / ".cache" / "mlops_lb" / "sandbox")))

# A server someone else wrote: stdlib only, answers /health and a vLLM-style /metrics.
APP = """
import http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"/health": b"ok", "/metrics": b"vllm:num_requests_running 0\\nvllm:num_requests_waiting 0\\n"}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("X-Target-Id", os.environ.get("TARGET_ID", ""))
        self.end_headers()
        self.wfile.write(body or b"")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
"""


@pytest.fixture(scope="session")
def pip_wheels() -> Path:
    """AL2023's pip wheels (22.3.1 / 23.2.1 / 24.2), cached by scripts/setup.sh --dev (downloaded here otherwise)."""
    dest = CACHE / "pip"
    want = [f"pip-{v}-py3-none-any.whl" for v in AL2023_PIP.values()]
    if not all((dest / w).is_file() for w in want):
        dest.mkdir(parents=True, exist_ok=True)
        pins = [f"pip=={v}" for v in AL2023_PIP.values()]
        for pin in pins:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), pin],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                pytest.skip(f"AL2023's pip wheels are not cached ({pin}); run scripts/setup.sh --dev")
    return dest


def declared(run_program: Any, spec: FleetSpec, **kw: Any) -> tuple[bytes, dict[str, Path], Any]:
    """(user data bytes the launch template declares, bucket objects "bucket/key" -> uploaded file, record)."""
    rec = run_program(spec, **kw)
    user_data = base64.b64decode(rec.one(LT)["userData"])
    bucket = rec.outputs["bucket"]
    s3 = {f"{bucket}/{i['key']}": Path(i["source"].path) for _, i in rec.of_type(OBJ)}
    return user_data, s3, rec


@pytest.fixture
def launch(
    run_program: Any, pip_wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """launch(spec, python="3.13") -> a started Instance whose user data has run (the test asserts on it)."""
    made: list[Instance] = []

    def go(spec: FleetSpec, *, python: str = "3.13", lifecycle: str = "InService", hook: str | None = None,
           run_user_data: bool = True, secrets: dict[str, str] | None = None, **kw: Any) -> Instance:  # fmt: skip
        exe = pyenv_python(python)
        if exe is None:
            pytest.skip(f"pyenv has no Python {python}")
        from mlops_lb.aws.program import Assets, _install_file, _model_file

        assets = kw.pop("assets", None) or Assets(
            wheel=wheel, model=_model_file(spec), install=_install_file(spec), python_version=python
        )
        user_data, s3, _rec = declared(run_program, spec, assets=assets, **kw)
        inst = Instance(
            tmp_path / f"instance{len(made)}",
            user_data=user_data,
            s3=s3,
            pythons={python: exe},
            pip_wheels=pip_wheels,
            secrets=secrets,
        )
        made.append(inst)
        inst.declared_sha256 = hashlib.sha256(user_data).hexdigest()  # type: ignore[attr-defined]
        inst.start()
        inst.set_lifecycle(lifecycle, hook=hook)
        if run_user_data:
            inst.bootstrap = inst.run_user_data()  # type: ignore[attr-defined]
        return inst

    from mlops_lb.aws.assets import build_wheel

    wheel = build_wheel(tmp_path / "dist")  # the real package, as launch() uploads it
    monkeypatch.chdir(tmp_path)
    app = tmp_path / "app"
    app.mkdir()
    (app / "server.py").write_text(APP)
    yield go
    for inst in made:
        report = tmp_path / f"timeline-{inst.root.name}.json"
        report.write_text(json.dumps(inst.timeline(), indent=1))
        inst.close()
