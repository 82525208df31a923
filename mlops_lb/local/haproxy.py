"""HAProxy as the ALB: config from a FleetSpec, the process, and a Runtime API client (stdlib unix socket).

(Just over 500 lines on purpose: config, process and Runtime API client are three faces of one HAProxy and
answer the same pitfalls.)

The config declares two backends per target group (HAProxy 2.6 cannot create backends at runtime, and a reload
would lose every dynamic server): ``<tg>`` with the spec's health check, and ``<tg>_open`` with the same servers
and no checks, used only when ``<tg>`` has no usable server -- the ALB's *fail open*. Targets are added and removed
at runtime through the admin socket; see DESIGN §5 for the five pitfalls this module answers.

Example::

    cfg = render_config(spec, port=8000, socket_path="/tmp/x/admin.sock")
    proc = HaproxyProcess(cfg, work_dir)
    proc.start()
    api = RuntimeApi(proc.socket_path)
    api.add_server("tg", "i-local0001", "127.0.0.1:9001", server_id=1, check=True, inter_ms=333, rise=2, fall=2)
    [row.status for row in api.show_stat() if row.proxy == "tg"]
    proc.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable, PortInUse, ProvisionError
from ..haproxy_runtime import (  # re-exported: moved below both backends
    RuntimeApi,
    RuntimeApiError,
    ServerState,
    StatRow,
)
from ._proc import port_holder, spawn_group
from .routing import MAP_FILE, render_policy_backends, render_switch_rule

if TYPE_CHECKING:
    from ..spec import FleetSpec

__all__ = [
    "ALGORITHM_TO_BALANCE",
    "HaproxyProcess",
    "RuntimeApi",
    "RuntimeApiError",
    "ServerState",
    "StatRow",
    "find_haproxy",
    "render_config",
    "scaled_ms",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y haproxy   # macOS: brew install haproxy"
ALGORITHM_TO_BALANCE = {
    "round_robin": "roundrobin",
    "least_outstanding_requests": "leastconn",
    "weighted_random": "random",
}
FRONTEND = "alb"
MIN_CHECK_MS = 100  # below this the checks themselves start to load two shared cores
# On an oversubscribed laptop or CI box a Python worker can stall a few hundred ms; a check timing out there
# marks a good target DOWN and the ASG replaces it, a cascade EC2 would never show.
MIN_TIMEOUT_MS = 500


def find_haproxy() -> str:
    """Path of the ``haproxy`` binary, or ``BackendUnavailable`` with the install command."""
    path = shutil.which("haproxy")
    if path is None:
        raise BackendUnavailable("haproxy", INSTALL_HINT)
    return path


def scaled_ms(seconds: float, time_scale: float, floor_ms: int = MIN_CHECK_MS) -> int:
    """An AWS duration in milliseconds on the local clock (``seconds x time_scale``), never below ``floor_ms``."""
    return max(floor_ms, round(seconds * time_scale * 1000))


def check_timing_ms(spec: FleetSpec) -> tuple[int, int]:
    """(inter, timeout) of the health check in local milliseconds; the timeout stays below the interval."""
    scale = spec.local.time_scale
    # The timeout floor keeps a busy Python worker on two shared cores from failing checks it would pass on EC2.
    timeout = scaled_ms(spec.health_check.timeout_s, scale, floor_ms=MIN_TIMEOUT_MS)
    inter = max(scaled_ms(spec.health_check.interval_s, scale), timeout + 50)
    return inter, timeout


# Per-target attribution without the server's help: HAProxy names the server that answered. `srv_name` is the
# sample fetch "returning a string containing the server's name when processing the response" (HAProxy 2.6
# Configuration Manual, section 7.3.3, /usr/share/doc/haproxy/configuration.txt.gz or
# https://docs.haproxy.org/2.6/configuration.html#7.3.3-srv_name); `set-header` replaces a header the server sent.
# Server names are target ids, so our own server's header (the same id) is unchanged.
TARGET_HEADER = "    http-response set-header X-Target-Id %[srv_name]"


def _status_regex(codes: Sequence[int]) -> str:
    return "^(" + "|".join(str(c) for c in codes) + ")$"


def render_config(
    spec: FleetSpec,
    *,
    port: int,
    socket_path: str | Path,
    backend: str = "tg",
    map_path: str | Path | None = None,
) -> str:
    """HAProxy 2.6 configuration text for ``spec``: frontend on 127.0.0.1:``port``, ``backend`` and its open twin,
    and one backend per routing policy, chosen through the map ``map_path`` (default: ``routing.map`` beside the
    socket; see :mod:`mlops_lb.local.routing`, which also writes it).

    Health-check timings are scaled by ``spec.local.time_scale``; the idle timeout is the ALB's (not scaled: it
    is a connection property, not a period).
    """
    map_path = Path(socket_path).parent / MAP_FILE if map_path is None else map_path
    hc = spec.health_check
    inter, timeout = check_timing_ms(spec)
    balance = ALGORITHM_TO_BALANCE[spec.target_group.algorithm]
    idle = spec.network.idle_timeout_s
    return f"""\
# generated by mlops_lb.local for fleet {spec.name!r}; do not reload (dynamic servers would be lost)
global
    # HAProxy binds with SO_REUSEPORT by default, so a second fleet on this port would silently split the
    # traffic with the first; "noreuseport: Disables the use of SO_REUSEPORT - see socket(7)" (HAProxy 2.6
    # Configuration Manual, section 3.2, https://docs.haproxy.org/2.6/configuration.html#noreuseport) makes
    # the bind fail instead.
    noreuseport
    stats socket {socket_path} mode 600 level admin
    stats timeout 30s
    maxconn 8192

defaults
    mode http
    option http-keep-alive
    # Pass each write on at once: streamed tokens must reach the client as the target sends them (see the docs).
    option http-no-delay
    # The ALB never retries a failed request on another target: neither do we, so failures stay visible.
    retries 0
    no option redispatch
    timeout connect 10s
    timeout client {idle}s
    timeout server {idle}s
    timeout http-keep-alive {idle}s
    timeout http-request 60s
    timeout queue 60s
    # Errors HAProxy makes itself carry a marker, so the frontend can tell them from a target's own 503.
    http-error status 503 content-type text/plain string "no target could take the request" hdr x-lb-error 1

frontend {FRONTEND}
    bind 127.0.0.1:{port}
    # The ALB answers 502 when a target refuses the connection (a dead process) and 503 only when no target is
    # registered; HAProxy says 503 for both. A server was chosen (srv_id) only in the first case.
    http-after-response set-status 502 if {{ status 503 }} {{ res.hdr(x-lb-error) -m found }} {{ srv_id -m found }}
    http-after-response del-header x-lb-error
    # Fail open: with no healthy target the ALB routes to all registered targets.
    use_backend {backend}_open if {{ nbsrv({backend}) eq 0 }}
    # The routing policy in force (routing.map, switched at run time with `set map`).
{render_switch_rule(backend, map_path)}
    default_backend {backend}

backend {backend}
    balance {balance}
{TARGET_HEADER}
    option httpchk
    # HAProxy ends a health check with a TCP reset by design, to spare ephemeral ports (haproxy#560,
    # https://github.com/haproxy/haproxy/issues/560, 2020-03-22), often before the server has written its body:
    # a stdlib or Flask server then logs a ConnectionResetError traceback on about one check in five (4 of 21
    # measured with tests/local/user_server.py). "linger: cleanly close the connection instead of using a single
    # RST" (HAProxy 2.6 Configuration Manual, "http-check connect", https://docs.haproxy.org/2.6/configuration.html)
    # and "Connection: close" (the server closes first, as with one check per connection) brought that to 0 of 24.
    # The check itself is unchanged: a GET of the path, judged by status only, as the ALB does.
    http-check connect default linger
    http-check send meth GET uri {hc.path} ver HTTP/1.1 hdr Host localhost hdr Connection close
    http-check expect rstatus {_status_regex(hc.matcher_codes())}
    # inter {inter} ms, rise {hc.healthy_threshold}, fall {hc.unhealthy_threshold} are set on each dynamic server
    timeout check {timeout}ms

backend {backend}_open
    balance {balance}
{TARGET_HEADER}

{render_policy_backends(spec, backend, TARGET_HEADER)}"""


# --------------------------------------------------------------------------- process
class HaproxyProcess:
    """One ``haproxy -db`` child in its own process group, with its config and admin socket in ``work_dir``.

    ``work_dir`` must be private (0700): the admin socket grants full control of the balancer.

    Example::

        proc = HaproxyProcess(config_text, Path(tempfile.mkdtemp()))
        proc.start(); proc.alive(); proc.stop()
    """

    def __init__(self, config: str, work_dir: Path, *, binary: str | None = None) -> None:
        self.binary = binary or find_haproxy()
        self.work_dir = Path(work_dir)
        self.config_path = self.work_dir / "haproxy.cfg"
        self.socket_path = self.work_dir / "admin.sock"
        self.log_path = self.work_dir / "haproxy.log"
        self.config_path.write_text(config)
        os.chmod(self.config_path, 0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    def validate(self) -> None:
        """``haproxy -c``: a bad config raises ProvisionError with HAProxy's own message."""
        res = subprocess.run(
            [self.binary, "-c", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if res.returncode != 0:
            raise ProvisionError(
                f"haproxy rejected {self.config_path}", stderr=(res.stdout + res.stderr).strip()
            )

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Start in the foreground (``-db``) and wait for the admin socket to answer."""
        self.validate()
        if self.socket_path.exists():
            self.socket_path.unlink()
        log.info("starting haproxy -f %s", self.config_path)
        with open(self.log_path, "ab") as out:
            self.proc = spawn_group([self.binary, "-db", "-f", str(self.config_path)], out=out)
        deadline = time.monotonic() + timeout_s
        api = RuntimeApi(self.socket_path)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.tail_log()
                taken = _BIND_FAILED_RE.search(tail)
                if taken:
                    raise PortInUse(
                        int(taken["port"]), port_holder(int(taken["port"]), taken["host"]), stderr=tail
                    )
                raise ProvisionError(f"haproxy exited with code {self.proc.returncode} at start", stderr=tail)
            if self.socket_path.exists():
                try:
                    api.command("show info")
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise ProvisionError(
            f"haproxy did not open its admin socket within {timeout_s:g} s", stderr=self.tail_log()
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, soft_s: float = 1.0, hard_s: float = 2.0) -> None:
        """SIGUSR1 (soft stop: finish requests), then SIGTERM, then SIGKILL, to the whole process group."""
        proc = self.proc
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGUSR1, soft_s), (signal.SIGTERM, hard_s), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            _killpg(proc.pid, sig)
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        log.info("haproxy (pid %s) stopped with code %s", proc.pid, proc.returncode)


# HAProxy 2.6's alert when a listener cannot bind: "... cannot bind socket (Address already in use) for
# [127.0.0.1:8000]".
_BIND_FAILED_RE = re.compile(
    r"cannot bind socket \(Address already in use\) for \[(?P<host>[^\]]+):(?P<port>\d+)\]"
)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
