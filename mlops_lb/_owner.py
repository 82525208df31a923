"""Temporary folders that name their owner process, and the sweep that removes those whose owner is gone.

A load keeps its per-request records in ``$TMPDIR/mlops-lb-records-*`` until the run ends; a process killed with
SIGKILL never runs its finalizer, so the folder would stay forever. Each such folder holds an ``owner`` file
(``pid start-time``, the same rule as the local fleet's work dirs): a later session removes folders of this user
whose owner no longer exists, or whose pid now belongs to a process started at another time.

Example::

    folder = Path(tempfile.mkdtemp(prefix=RECORDS_PREFIX)); write_owner(folder)
    sweep_orphans(RECORDS_PREFIX)     # in another process, after this one was killed: the folder is gone
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OWNER_FILE", "RECORDS_PREFIX", "process_start_time", "sweep_orphans", "write_owner"]

log = logging.getLogger(__name__)

OWNER_FILE = "owner"
RECORDS_PREFIX = "mlops-lb-records-"


def process_start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (``/proc/<pid>/stat`` field 22), ``"-"`` where there is none to read.

    With the pid it names one process for good: a pid reused later has another start time (proc(5)).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "-"


def write_owner(folder: str | os.PathLike[str]) -> None:
    """Record this process (pid and start time) as the owner of ``folder``; best effort."""
    try:
        (Path(folder) / OWNER_FILE).write_text(f"{os.getpid()} {process_start_time(os.getpid())}\n")
    except OSError as exc:
        log.debug("cannot write the owner of %s: %s", folder, exc)


def sweep_orphans(prefix: str = RECORDS_PREFIX) -> list[Path]:
    """Remove ``$TMPDIR/<prefix>*`` folders of this user whose owner process is gone; returns what was removed.

    A folder without an ``owner`` file, not ours, a symlink, or whose owner's start time cannot be read (no
    ``/proc``) is left alone: only a folder proven orphaned is removed.
    """
    root = Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = list(root.glob(prefix + "*"))
    except OSError:
        return removed
    for d in candidates:
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            pid_text, _, started = (d / OWNER_FILE).read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if started == "-" or process_start_time(pid) == started:
            continue
        log.info("removing %s: its owner (pid %d) is gone", d, pid)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed
