"""The instance sandbox: what an EC2 instance runs, run here, byte for byte.

The user data the Pulumi program declares for the launch template (under the strict mocks) is executed as it
is, by bash, as root, inside a private mount and network namespace this module creates (``unshare -m -n``): writes
to ``/etc``, ``/opt`` and ``/var/log`` land in overlays inside the sandbox folder, ``/dev/console`` is a file,
169.254.169.254 on the namespace's loopback serves an IMDSv2 emulator whose lifecycle state the test drives.
Only three programs are stand-ins, as PATH shims: ``dnf`` (records; installs AL2023's side-by-side Pythons as the
real pyenv interpreters with AL2023's pip), ``systemctl`` (a small systemd: ExecStart, Restart=, StartLimit*) and
``aws`` (``s3 cp`` from the real uploaded assets; lifecycle, metric and secret calls recorded). Everything else
(bash, curl, tar, the venv, pip, our server) is real.

Hibernation is SIGSTOP/SIGCONT of every process of the instance (RAM kept, no boot); a stop/start kills them and
boots again: enabled units start, user data does not run again (cloud-init runs it on the first boot only).

Example::

    inst = Instance(tmp_path, user_data=declared_bytes, s3=assets_dir, pythons={"3.13": "/root/.pyenv/..."})
    inst.start(); inst.run_user_data()
    inst.wait_for(lambda: inst.get(8080, "/health") == 200)
    inst.close()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYENV = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"
# The AL2023 pip of each instance Python (what the python3.N-pip RPM ships; issue 23) and the system python3.
AL2023_PIP = {"3.11": "22.3.1", "3.12": "23.2.1", "3.13": "24.2"}
SYSTEM_PYTHON = "3.9"


def pyenv_python(minor: str) -> str | None:
    """pyenv's newest ``minor`` interpreter (``3.13`` -> /root/.pyenv/versions/3.13.0/bin/python3.13), or None."""
    found = sorted(
        PYENV.glob(f"{minor}.*/bin/python{minor}"),
        key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
    )
    return str(found[-1]) if found else None


def available() -> str | None:
    """Why the sandbox cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (unshare -m -n)"
    for tool in ("unshare", "nsenter", "ip", "curl", "bash", "tar"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if pyenv_python(SYSTEM_PYTHON) is None:
        return f"needs pyenv's Python {SYSTEM_PYTHON} (AL2023's system python3)"
    probe = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m -n refused: {probe.stderr.decode().strip()}"
    return None


class Instance:
    """One sandboxed instance (see the module docstring). ``user_data`` are the exact bytes to run."""

    def __init__(
        self,
        root: Path,
        *,
        user_data: bytes,
        s3: Mapping[str, Path],
        pythons: Mapping[str, str],
        pip_wheels: Path,
        instance_id: str = "i-0123456789abcdef0",
        region: str = "us-east-1",
        group: str | None = "demo-asg",
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.user_data = user_data
        self.instance_id = instance_id
        self.t0 = time.time()
        self.marks: list[dict[str, Any]] = []
        self.init: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        for key, path in s3.items():  # "bucket/key" -> the file the program uploaded
            dest = root / "s3" / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        meta = root / "imds"
        for item, value in {
            "instance-id": instance_id,
            "placement/region": region,
            "autoscaling/target-lifecycle-state": "InService",
        }.items():
            (meta / item).parent.mkdir(parents=True, exist_ok=True)
            (meta / item).write_text(value)
        (root / "asg").mkdir(exist_ok=True)
        if group:
            (root / "asg" / "group").write_text(group)
        (root / "secrets.json").write_text(json.dumps(dict(secrets or {})))
        shims = root / "shims"
        shims.mkdir(exist_ok=True)
        path = f"{shims}:{root / 'installed'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        # What the shims need travels inside them: units run with a clean environment, as systemd's do.
        baked = {
            "PATH": path,
            "SANDBOX_ROOT": str(root),
            "SANDBOX_PYTHONS": json.dumps(dict(pythons)),
            "SANDBOX_WHEELS": str(pip_wheels),
        }
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in baked.items())
        for name, module in (("aws", "awscli"), ("dnf", "dnf"), ("systemctl", "systemd")):
            shim = shims / name
            shim.write_text(f'#!/bin/sh\n{exports}exec {sys.executable} {HERE / module}.py "$@"\n')
            shim.chmod(0o755)
        system = shims / "python3"  # AL2023's /usr/bin/python3 stays 3.9 for its whole life
        system.write_text(f'#!/bin/sh\nexec {pyenv_python(SYSTEM_PYTHON)} "$@"\n')
        system.chmod(0o755)
        (root / "installed").mkdir(exist_ok=True)
        self.env = {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8"}  # cloud-init's user-data environment

    # ---------------------------------------------------------------------------------------------- lifetime
    def start(self) -> None:
        """Create the namespaces (the instance is "running"; user data has not run yet)."""
        with (self.root / "init.log").open("wb") as log:
            self.init = subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "-n",
                    "--propagation",
                    "private",
                    sys.executable,
                    str(HERE / "init.py"),
                    str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not (self.root / "ready").is_file():
            if self.init.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox init failed: {(self.root / 'init.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.mark("instance", "running (first boot)")

    def run(
        self, argv: list[str], *, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root inside the instance's namespaces with the instance's PATH and shims."""
        assert self.init is not None
        cmd = [
            "nsenter",
            "-t",
            str(self.init.pid),
            "-m",
            "-n",
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in self.env.items()),
            *argv,
        ]
        # Output through files, not pipes: a daemon the command leaves behind must not hold our read open.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout, check=False)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                cmd, proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace")
            )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def run_user_data(self, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """cloud-init's part: write the user data as a script and execute it, once. Returns bash's result."""
        script = self.root / "user-data"
        script.write_bytes(self.user_data)
        script.chmod(0o700)
        self.executed_sha256 = hashlib.sha256(script.read_bytes()).hexdigest()
        self.mark("cloud-init", "user data starts")
        proc = self.run([str(script)], timeout=timeout)
        self.mark("cloud-init", f"user data exited {proc.returncode}")
        return proc

    def processes(self) -> list[int]:
        """Every process of the instance (its network namespace), except the sandbox's own init."""
        assert self.init is not None
        ns = os.readlink(f"/proc/{self.init.pid}/ns/net")
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.init.pid:
                continue
            try:
                if os.readlink(entry / "ns" / "net") == ns:
                    out.append(int(entry.name))
            except OSError:
                continue
        return out

    def _signal_all(self, sig: int) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def hibernate(self) -> None:
        """Hibernation: every process frozen with its memory (SIGSTOP); no boot on resume."""
        self._signal_all(signal.SIGSTOP)
        self.mark("ec2", "hibernated")

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)
        self.mark("ec2", "resumed from hibernation")

    def stop(self) -> None:
        """A stop: the units are stopped, then whatever is left dies with the machine's RAM."""
        self.run(["systemctl", "--shutdown"], timeout=120)
        self._signal_all(signal.SIGKILL)
        self.mark("ec2", "stopped")

    def boot(self) -> None:
        """A start after a stop: enabled units start (user data does not run again)."""
        self.mark("ec2", "started (boot)")
        self.run(["systemctl", "--boot"], timeout=30, check=True)

    def close(self) -> None:
        """Kill every process of the instance and the namespaces; idempotent."""
        if self.init is None:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            self._signal_all(sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.init.pid, signal.SIGKILL)
        self.init.wait(timeout=10)
        self.init = None

    # ---------------------------------------------------------------------------------------------- driving
    def set_lifecycle(self, state: str, *, hook: str | None = None) -> None:
        """Auto Scaling moves the instance toward ``state`` (the IMDS item); ``hook``: a launching action waits."""
        (self.root / "imds" / "autoscaling" / "target-lifecycle-state").write_text(state)
        if hook:
            (self.root / "asg" / "pending-action").write_text(hook)
        self.mark(
            "autoscaling", f"target-lifecycle-state={state}" + (f" (hook {hook} waits)" if hook else "")
        )

    def action_pending(self) -> bool:
        return (self.root / "asg" / "pending-action").is_file()

    def get(self, port: int, path: str, *, timeout: float = 3) -> int:
        """HTTP status of GET 127.0.0.1:port/path from inside the instance (0 when nothing answers)."""
        try:
            proc = self.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    str(timeout),
                    f"http://127.0.0.1:{port}{path}",
                ],
                timeout=timeout + 10,
            )
        except (
            subprocess.TimeoutExpired
        ):  # nsenter into a frozen (hibernated) process tree still works; curl waits
            return 0
        return int(proc.stdout or 0)

    def body(self, port: int, path: str) -> str:
        return self.run(["curl", "-s", "--max-time", "3", f"http://127.0.0.1:{port}{path}"]).stdout

    def wait_for(self, cond: Callable[[], bool], *, timeout: float = 60, what: str = "condition") -> float:
        start = time.monotonic()
        while not cond():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"sandbox: {what} not reached in {timeout} s\n{self.diagnose()}")
            time.sleep(0.25)
        return time.monotonic() - start

    def mark(self, source: str, what: str) -> None:
        self.marks.append({"t": time.time(), "source": source, "event": what})

    # ---------------------------------------------------------------------------------------------- reading
    def file(self, path: str) -> Path:
        """Where a file the instance wrote under /etc, /opt or /var/log sits (its overlay)."""
        for name, prefix in (("etc", "/etc/"), ("opt", "/opt/"), ("varlog", "/var/log/")):
            if path.startswith(prefix):
                return self.root / "fs" / name / path[len(prefix) :]
        raise ValueError(path)

    def aws_calls(self) -> list[dict[str, Any]]:
        return self._jsonl("aws-calls.jsonl")

    def unit_events(self) -> list[dict[str, Any]]:
        return self._jsonl("systemd/events.jsonl")

    def dnf_calls(self) -> list[dict[str, Any]]:
        return self._jsonl("dnf-calls.jsonl")

    def console(self) -> str:
        p = self.root / "console.log"
        return p.read_text(errors="replace") if p.is_file() else ""

    def tokens(self) -> list[str]:
        p = self.root / "tokens"
        return p.read_text().split() if p.is_file() else []

    def _jsonl(self, name: str) -> list[dict[str, Any]]:
        p = self.root / name
        return (
            [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []
        )

    def timeline(self) -> list[tuple[float, str, str]]:
        """Every lifecycle transition, unit event and recorded CLI call, seconds from the sandbox's creation."""
        rows = [(m["t"], m["source"], m["event"]) for m in self.marks]
        for c in self.aws_calls():
            if c["argv"][:2] != ["s3", "cp"]:
                rows.append((c["t"], "aws", f"{' '.join(c['argv'][:2])} -> rc {c['rc']}"))
        for e in self.unit_events():
            detail = {k: v for k, v in e.items() if k not in ("t", "unit", "event", "argv", "pid")}
            rows.append((e["t"], "systemd", f"{e['unit']} {e['event']} {detail or ''}".rstrip()))
        return [(round(t - self.t0, 2), s, w) for t, s, w in sorted(rows)]

    def diagnose(self) -> str:
        units = self.root / "units"
        logs = (
            "".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}\n"
                for p in sorted(units.glob("*.log"))
            )
            if units.is_dir()
            else ""
        )
        tl = "\n".join(f"{t:8.2f} {s:12} {w}" for t, s, w in self.timeline())
        return f"--- console (tail)\n{self.console()[-3000:]}\n{logs}--- timeline\n{tl}"
