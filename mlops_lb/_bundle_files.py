"""A run bundle's files read as data from anywhere: never followed out of the bundle, never read unbounded, and a
folder that is not a bundle said plainly (with the bundles inside it).

Example::

    from mlops_lb._bundle_files import find_bundles, is_bundle
    is_bundle("runs")          # False: a folder of bundles
    find_bundles("runs")[:3]   # the newest three
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from .errors import BundleError

__all__ = ["MAX_JSON_BYTES", "find_bundles", "is_bundle"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
# A folder name is at most 255 bytes (NAME_MAX on Linux and macOS); the stamp and a collision suffix take ~25 of
# them. A longer label is shortened (its head plus a hash of the whole), never a failed run.
_MAX_LABEL = 180
# The JSON files of a bundle are small (a spec is a few kB; a long trace profile in load.json a few MB). A file
# far beyond that is not ours: reading it whole would hold it several times in memory (a 200 MB spec.json took
# 1 GB of RSS into the report), so it is left unread with a warning.
MAX_JSON_BYTES = 64 * 1024 * 1024
# What makes a folder a run bundle: any of the files or folders a run writes.
_MARKERS = (
    "run.json", "spec.json", "load.json", "summary.json",
    *(f"{t}.parquet" for t in ("requests", "intervals", "metrics", "events", "decisions", "status")),
    "requests.parts", "intervals.parts",
)  # fmt: skip


def _inside(folder: Path, path: Path) -> bool:
    """True when ``path`` exists and, symlinks resolved, stays inside ``folder``: a bundle is data from anywhere,
    and a ``load.json`` linked to ``~/.aws/credentials`` must not be read into a report meant to be mailed."""
    if not path.exists():
        return False
    if not path.is_symlink() and path.parent == folder:
        return True
    root = folder.resolve()
    real = path.resolve()
    if real == root or root in real.parents:
        return True
    log.warning("not reading %s: it links outside the bundle (to %s)", path, real)
    return False


def _read_json(path: Path, folder: Path | None = None) -> Any:
    """The JSON in ``path``, or None (missing, unreadable, too large, or linked outside ``folder``) with a warning."""
    if not _inside(folder if folder is not None else path.parent, path):
        return None
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            log.warning(
                "skipping %s: %.0f MB is more than a run writes (limit %.0f MB)",
                path,
                size / 1e6,
                MAX_JSON_BYTES / 1e6,
            )
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None


def _object(folder: Path, name: str) -> dict[str, Any] | None:
    """A JSON file of the bundle that must hold an object: anything else is a malformed bundle, said plainly."""
    data = _read_json(folder / name, folder)
    if data is not None and not isinstance(data, dict):
        raise BundleError(
            folder / name,
            f"{folder / name} is malformed: expected a JSON object, found {type(data).__name__}",
        )
    return data


def is_bundle(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds any of the files a run writes (see the module docstring's layout).

    Example::

        is_bundle("runs/20260101T000000Z-demo")   # True; is_bundle("runs") -> False
    """
    f = Path(folder)
    return f.is_dir() and any((f / m).exists() for m in _MARKERS)


def find_bundles(root: str | os.PathLike[str], depth: int = 2) -> list[Path]:
    """Run bundles under ``root`` (itself excluded), up to ``depth`` folders down, newest name first.

    Example::

        find_bundles("runs")[:3]
    """
    out: list[Path] = []
    level = [Path(root)]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            try:
                children = sorted((c for c in d.iterdir() if c.is_dir() and not c.is_symlink()), reverse=True)
            except OSError:
                continue
            for c in children:
                (out if is_bundle(c) else nxt).append(c)
        level = nxt
    return out


def _safe_label(name: Any) -> str:
    """A folder-name-safe run label: other characters become ``-``; a long label keeps its head and gains a
    hash of the whole, so two long labels that share a head still get different folders."""
    import hashlib

    safe = _NAME_RE.sub("-", str(name)).strip("-") or "run"
    if len(safe) > _MAX_LABEL:
        digest = hashlib.sha256(safe.encode()).hexdigest()[:8]
        safe = f"{safe[: _MAX_LABEL - 9].rstrip('-.')}-{digest}"
    return safe
