"""Model-server worker processes: the local fleet's "EC2 instances".

Each worker is ``python -m mlops_lb serve ...`` (what an instance runs from its user data) in its own process
group on a free 127.0.0.1 port. ``worker_argv`` builds the command; tests may pass another builder with the same
signature to ``LocalFleet(worker_command=...)``.

Example::

    w = WorkerProcess.start(worker_argv(spec, port=9001, target_id="i-local0001"), port=9001, target_id="i-local0001")
    w.scrape_metrics()          # Prometheus text of the worker, or None
    w.stop()
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._proc import child_preexec, kill_group, register_pgid, unregister_pgid

if TYPE_CHECKING:
    from ..spec import FleetSpec

__all__ = ["WorkerCommand", "WorkerProcess", "worker_argv"]

log = logging.getLogger(__name__)

WorkerCommand = Callable[..., list[str]]
"""``(*, port, target_id, model, slots, min_service_ms) -> argv``, like ``mlops_lb.serving.worker_command``."""


def worker_argv(
    spec: FleetSpec, *, port: int, target_id: str, command: WorkerCommand | None = None
) -> list[str]:
    """The argv that starts one worker for ``spec`` (``mlops_lb.serving.worker_command`` when it exists)."""
    if command is None:
        try:
            from ..serving import worker_command as serving_command

            command = serving_command
        except ImportError:
            command = _default_command
    argv = command(
        port=port,
        target_id=target_id,
        model=spec.model.source,
        slots=spec.local.slots,
        min_service_ms=spec.local.min_service_ms,
    )
    return [str(a) for a in argv]


def _default_command(
    *, port: int, target_id: str, model: str, slots: int, min_service_ms: float
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlops_lb",
        "serve",
        "--port",
        str(port),
        "--target-id",
        target_id,
        "--model",
        model,
        "--slots",
        str(slots),
        "--min-service-ms",
        str(min_service_ms),
        "--host",
        "127.0.0.1",
    ]


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
        cls, argv: list[str], *, port: int, target_id: str, log_path: Path | None = None
    ) -> WorkerProcess:
        """Spawn ``argv`` in a new session, with the parent-death signal set (call from a long-lived thread)."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=child_preexec,
                close_fds=True,
            )
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

    def scrape_metrics(self, timeout_s: float = 0.5) -> str | None:
        """GET /metrics; None when the worker does not answer (dead, starting, overloaded)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            return body.decode(errors="replace") if resp.status == 200 else None
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()
