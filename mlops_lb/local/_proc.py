"""Child processes that never outlive us: parent-death signal, process groups, an atexit sweep, free ports.

Linux: every child gets ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` in ``preexec_fn``, so a killed notebook kernel takes
HAProxy and the workers with it. The signal fires when the *thread* that forked the child exits, so the local
fleet forks every child from its one long-lived controller thread. macOS has no parent-death signal: a kernel
killed with SIGKILL leaves orphans there (the atexit hook and ``close()`` still cover every normal exit and
Ctrl-C); ``ps -o pid,command | grep mlops_lb`` finds them.

Example::

    port = free_port()
    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=child_preexec)
    register_pgid(proc.pid)        # swept at interpreter exit unless unregister_pgid()
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time

__all__ = ["child_preexec", "free_port", "kill_group", "port_holder", "register_pgid", "unregister_pgid"]

_PR_SET_PDEATHSIG = 1
_live_groups: set[int] = set()
_lock = threading.Lock()


def _load_prctl() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def child_preexec() -> None:
    """Runs in the child between fork and exec: die with SIGTERM when the forking thread dies (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # type: ignore[operator]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_holder(port: int, host: str = "127.0.0.1") -> str:
    """Who listens on ``host:port``, in words: ``pid 4242 (haproxy -db -f ...)``, or why that cannot be told.

    psutil sees the owning PID of another user's socket only with privileges; then the answer says so.
    """
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError) as exc:
        return f"another process (listing sockets was refused: {exc})"
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN
            and c.laddr
            and c.laddr.port == port
            and c.laddr.ip in (host, "0.0.0.0", "::")
            and c.pid is not None
        }
    )
    if not pids:
        return "another process (its owner is not visible to this user)"
    names = []
    for pid in pids:
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())[:120]
        except psutil.Error:
            cmd = "?"
        names.append(f"pid {pid} ({cmd})")
    return ", ".join(names)


def register_pgid(pgid: int) -> None:
    with _lock:
        _live_groups.add(pgid)


def unregister_pgid(pgid: int) -> None:
    with _lock:
        _live_groups.discard(pgid)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _sweep() -> None:
    with _lock:
        groups = list(_live_groups)
        _live_groups.clear()
    for g in groups:
        kill_group(g, signal.SIGTERM)
    if groups:
        time.sleep(0.2)
    for g in groups:
        kill_group(g, signal.SIGKILL)


atexit.register(_sweep)
