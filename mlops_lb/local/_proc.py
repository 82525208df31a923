"""Child processes that never outlive us: parent-death signal, a reaper, process groups, an atexit sweep, free ports.

Linux: every child gets ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` in ``preexec_fn``, so a killed notebook kernel takes
HAProxy and the workers with it. The signal fires when the *thread* that forked the child exits, so the local
fleet forks every child from its one long-lived controller thread.

SIGTERM is not enough: a stopped (SIGSTOPped, or traced) process keeps it pending and outlives its owner, and a
process may ignore it. So the first registered group also starts a **reaper**: a tiny stdlib-only Python process
in its own session that reads the groups (and work dirs) to clean from a pipe. The pipe's write end lives only
in this process (non-inheritable), so when this process dies however it dies, the reaper reads end-of-file, sends
SIGTERM and SIGCONT to every group still registered, waits ``REAPER_GRACE_S``, SIGKILLs what is left and removes
the registered dirs. It checks each group leader's start time first, so a reused process id is never signalled.
macOS has no parent-death signal: there the reaper alone covers a SIGKILLed owner.

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
import subprocess
import sys
import threading
import time
from typing import Any

__all__ = [
    "REAPER_GRACE_S",
    "child_preexec",
    "free_port",
    "kill_group",
    "port_holder",
    "process_start_time",
    "register_dir",
    "register_pgid",
    "spawn_group",
    "unregister_dir",
    "unregister_pgid",
]

_PR_SET_PDEATHSIG = 1
_live_groups: set[int] = set()
_live_dirs: set[str] = set()
_lock = threading.Lock()
REAPER_GRACE_S = 2.0

# The reaper's whole program (stdlib only: it must start even where mlops_lb is not importable by path).
_REAPER_SRC = r"""
import os, shutil, signal, sys, time
grace = float(sys.argv[1])
groups, dirs = {}, set()

def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None

for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "+":
        pgid, st = arg.split(" ", 1)
        groups[int(pgid)] = st
    elif cmd == "-":
        groups.pop(int(arg), None)
    elif cmd == "d+":
        dirs.add(arg)
    elif cmd == "d-":
        dirs.discard(arg)
# End of file: the owner is gone. A leader with another start time means the id was reused: not ours.
live = {g for g, st in groups.items() if st == "-" or start_time(g) in (None, st)}

def signal_all(sig):
    for g in list(live):
        try:
            os.killpg(g, sig)
        except ProcessLookupError:
            live.discard(g)
        except PermissionError:
            live.discard(g)

signal_all(signal.SIGTERM)
signal_all(signal.SIGCONT)
deadline = time.monotonic() + grace
while live and time.monotonic() < deadline:
    time.sleep(0.05)
    signal_all(0)
signal_all(signal.SIGKILL)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""
_reaper: subprocess.Popen[bytes] | None = None


def process_start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (``/proc/<pid>/stat`` field 22), ``"-"`` where there is none to read.

    With the pid it names one process for good: a pid reused later has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "-"


def _tell_reaper(line: str) -> None:
    """Send one command to the reaper (started on first use); called with ``_lock`` held."""
    global _reaper
    if _reaper is None or _reaper.poll() is not None:
        _reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER_SRC, str(REAPER_GRACE_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal, or a killpg of ours, must not take it along
            close_fds=True,
        )
        for g in _live_groups:
            _reaper_write(f"+ {g} {process_start_time(g)}")
        for d in _live_dirs:
            _reaper_write(f"d+ {d}")
    _reaper_write(line)


def _retire_reaper() -> None:
    """Nothing left to guard (every fleet closed): end the reaper, so close() leaves no process; ``_lock`` held."""
    global _reaper
    if _reaper is None or _live_groups or _live_dirs:
        return
    reaper, _reaper = _reaper, None
    if reaper.stdin is not None:
        with contextlib.suppress(OSError):
            reaper.stdin.close()  # end of file with nothing registered: it exits at once
    with contextlib.suppress(subprocess.TimeoutExpired):
        reaper.wait(REAPER_GRACE_S + 1)


def _reaper_write(line: str) -> None:
    assert _reaper is not None and _reaper.stdin is not None
    try:
        _reaper.stdin.write(line.encode() + b"\n")
        _reaper.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):  # a dead reaper is restarted at the next command
        pass


def _load_prctl() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def spawn_group(
    argv: list[str], *, out: Any, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (so it can be stopped as a group), output to
    ``out``, stdin closed, with the parent-death signal of :func:`child_preexec`, in ``cwd`` (None: ours).

    Example::

        proc = spawn_group(["haproxy", "-db", "-f", "h.cfg"], out=subprocess.DEVNULL)
    """
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=child_preexec,
        close_fds=True,
    )


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
    """Kill group ``pgid`` at interpreter exit, or through the reaper if this process dies first."""
    with _lock:
        _live_groups.add(pgid)
        _tell_reaper(f"+ {pgid} {process_start_time(pgid)}")


def unregister_pgid(pgid: int) -> None:
    with _lock:
        if pgid in _live_groups:
            _live_groups.discard(pgid)
            if _reaper is not None:
                _reaper_write(f"- {pgid}")
                _retire_reaper()


def register_dir(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` through the reaper if this process dies without removing it."""
    with _lock:
        _live_dirs.add(os.fspath(path))
        _tell_reaper(f"d+ {os.fspath(path)}")


def unregister_dir(path: str | os.PathLike[str]) -> None:
    with _lock:
        if os.fspath(path) in _live_dirs:
            _live_dirs.discard(os.fspath(path))
            if _reaper is not None:
                _reaper_write(f"d- {os.fspath(path)}")
                _retire_reaper()


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
    with _lock:
        # End of file now: the reaper finds the groups gone and removes any registered dir nobody removed.
        _live_dirs.clear()
        _retire_reaper()


atexit.register(_sweep)
