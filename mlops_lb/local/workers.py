"""Target processes: the local fleet's "EC2 instances".

Each target runs what ``spec.server`` says (``kind: model``: ``python -m mlops_lb serve ...``, what an instance
runs from its user data; ``llm-emulator``: our LLM emulator; ``command``: the user's own server with its
placeholders filled) in its own process group on a free 127.0.0.1 port, stdout and stderr in a per-target log file.
``worker_argv`` builds the command and ``worker_env`` its environment (PORT, HOST, TARGET_ID, MODEL_PATH and
``server.env``); tests may pass another model-server builder to ``LocalFleet(worker_command=...)``.

Example::

    argv = worker_argv(spec, port=9001, target_id="i-local0001")
    w = WorkerProcess.start(argv, port=9001, target_id="i-local0001", env=worker_env(spec, port=9001,
                            target_id="i-local0001"))
    w.scrape_metrics()          # Prometheus text of the worker, or None
    w.stop()
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._proc import kill_group, register_pgid, spawn_group, unregister_pgid

if TYPE_CHECKING:
    from ..spec import FleetSpec

__all__ = [
    "HOST",
    "WorkerCommand",
    "WorkerProcess",
    "find_program",
    "log_excerpt",
    "tail_lines",
    "worker_argv",
    "worker_cwd",
    "worker_env",
    "worker_ports",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

WorkerCommand = Callable[..., list[str]]
"""``(*, port, target_id, model, slots, min_service_ms) -> argv``, like ``mlops_lb.serving.worker_command``."""


def worker_ports(spec: FleetSpec) -> dict[str, int]:
    """The extra ports (``server.ports``) of one new target: a free port for each 0, the given one otherwise."""
    from ._proc import free_port

    return {name: port or free_port() for name, port in spec.server.ports.items()}


def worker_argv(
    spec: FleetSpec,
    *,
    port: int,
    target_id: str,
    command: WorkerCommand | None = None,
    ports: dict[str, int] | None = None,
) -> list[str]:
    """The argv that starts one target for ``spec`` on ``port`` (see the module docstring for each kind).

    For ``kind: model`` it is ``mlops_lb.serving.worker_command`` (or ``command``, a test's replacement).
    ``ports``: this target's :func:`worker_ports`.
    """
    server = spec.server
    if server.kind == "command":
        return server.render_command(
            port=port, host=HOST, target_id=target_id, model=spec.model.source, ports=ports
        )
    if server.kind == "llm-emulator":
        return [
            sys.executable,
            "-m",
            "mlops_lb",
            "serve",
            "--llm",
            "--port",
            str(port),
            "--host",
            HOST,
            "--target-id",
            target_id,
            *server.llm.flags(),
        ]
    if command is None:
        from ..serving.server import worker_command

        command = worker_command
    # The trust options go only when set, so a test's replacement command keeps its five keywords.
    trust: dict[str, Any] = {}
    if spec.model.trusted_types:
        trust["trusted_types"] = spec.model.trusted_types
    if spec.model.allow_pickle:
        trust["allow_pickle"] = True
    argv = command(
        port=port,
        target_id=target_id,
        model=spec.model.source,
        slots=spec.local.slots,
        min_service_ms=spec.local.min_service_ms,
        **trust,
    )
    return [str(a) for a in argv]


def worker_env(
    spec: FleetSpec, *, port: int, target_id: str, ports: dict[str, int] | None = None
) -> dict[str, str]:
    """This process's environment plus ``server.env`` and PORT, HOST, TARGET_ID, MODEL_PATH for one target.

    The interpreter's own ``bin`` directory goes first on PATH, as an activated virtualenv would have it: locally
    the user's server is "already installed" in the environment the fleet runs in, so ``python`` and console
    scripts in ``server.command`` resolve there even when the venv was not activated.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), env.get("PATH", "")) if p)
    env.update(
        spec.server.environment(
            port=port, host=HOST, target_id=target_id, model=spec.model.source, ports=ports
        )
    )
    # server.secrets {env: VAR}: the value is read here, at each target's start, and goes only to its environment
    # (never to the spec, a log or the bundle). The fleet refused other sources, and missing variables, at launch.
    for name, ref in spec.server.secrets.items():
        if "env" in ref and ref["env"] in os.environ:
            env[name] = os.environ[ref["env"]]
    return env


def worker_cwd(
    spec: FleetSpec, *, port: int, target_id: str, ports: dict[str, int] | None = None
) -> str | None:
    """The target's working directory (``server.workdir`` filled in, created when missing), or None (ours)."""
    wd = spec.server.render_workdir(
        port=port, host=HOST, target_id=target_id, model=spec.model.source, ports=ports
    )
    if wd is None:
        return None
    path = Path(wd).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def find_program(spec: FleetSpec) -> str | None:
    """Where the first word of a ``kind: command`` server resolves (with :func:`worker_env`'s PATH), or None."""
    argv0 = (spec.server.command or ("",))[0]
    if os.sep in argv0:
        return argv0 if os.path.isfile(argv0) and os.access(argv0, os.X_OK) else None
    path = worker_env(spec, port=0, target_id="")["PATH"]
    return shutil.which(argv0, path=path)


def tail_lines(path: Path, n: int) -> str:
    """The last ``n`` lines of a text file ("" when it does not exist), reading only the end of a large file."""
    if n <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 65536, b""
            while size > 0 and data.count(b"\n") <= n:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-n:])


# What marks the first line of a failure in a server's log (Python, uvicorn, MLServer, Go and C servers alike).
_ERROR_RE = re.compile(r"Traceback|Error|Errno|Exception|FATAL|CRITICAL|error:|failed|cannot|could not", re.I)


def log_excerpt(path: Path, *, lines: int = 12, tail: int = 5, max_bytes: int = 4 << 20) -> str:
    """Where a server's log first reports an error (``lines`` from there) and its last ``tail`` lines.

    A server that fails to start often logs the cause once and then pages of shutdown: the last lines of the log
    showed the cleanup and missed ``[Errno 98] address already in use`` or the model-load error. Only the first
    ``max_bytes`` are searched. Example::

        log_excerpt(Path("i-local-0001.log"))   # 'first error (line 7):\n  ... OSError: [Errno 98] ...'
    """
    try:
        with open(path, "rb") as f:
            text = f.read(max_bytes).decode(errors="replace").splitlines()
    except OSError:
        return ""
    if not text:
        return ""
    first = next((i for i, line in enumerate(text) if _ERROR_RE.search(line)), None)
    if first is None:
        return "last log lines:\n" + "\n".join(text[-(lines + tail) :])
    head = text[first : first + lines]
    out = [f"first error (log line {first + 1} of {len(text)}):", *head]
    rest = len(text) - (first + len(head))
    if rest > 0:
        out += [f"... ({rest} more lines; last {min(tail, rest)}):", *text[-min(tail, rest) :]]
    return "\n".join(out)


@dataclass
class WorkerProcess:
    """One worker process; ``pid`` is also its process-group id."""

    target_id: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None
    _stopping: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        argv: list[str],
        *,
        port: int,
        target_id: str,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> WorkerProcess:
        """Spawn ``argv`` in a new session, with the parent-death signal set (call from a long-lived thread)."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            proc = spawn_group(argv, out=out, env=env, cwd=cwd)
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]
        register_pgid(proc.pid)
        log.info("started worker %s on 127.0.0.1:%d (pid %d)", target_id, port, proc.pid)
        return cls(target_id=target_id, port=port, proc=proc, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        """SIGTERM the group: the server drains and exits. Call ``reap`` later, or ``stop`` to wait."""
        self._stopping = True
        kill_group(self.pid, signal.SIGTERM)

    def reap(self, *, force: bool = False) -> bool:
        """True once the process has exited; ``force`` sends SIGKILL first."""
        if force:
            kill_group(self.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            return False
        kill_group(self.pid, signal.SIGKILL)  # anything it left in its group
        unregister_pgid(self.pid)
        return True

    def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
        if self.proc.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        if self.proc.poll() is None:
            kill_group(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)
        self.reap()

    def scrape_metrics(self, timeout_s: float = 0.5, path: str = "/metrics") -> str | None:
        """GET ``path`` (Prometheus text); None when the worker does not answer (dead, starting, overloaded)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            return body.decode(errors="replace") if resp.status == 200 else None
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()
