"""The assets a stack runs, pinned in its state: what ``scale()`` reuses and only ``update_code()`` moves.

User data names the wheel's and the wheelhouse's content-addressed bucket keys and the instances' Python, so a byte
that changes there makes a new launch-template version and an instance refresh (docs/aws.md). Rebuilding them on
every ``pulumi up`` from the launching machine meant that upgrading one package, pulling a commit or scaling from
another laptop rolled every instance on ``fleet.scale(max=8)``. So ``launch()`` records an :class:`AssetsLock` in the
stack's config (key ``assets``: hashes, bucket keys, the instances' Python and the resolved pins) and every later
update reuses exactly those files: from the local content-addressed cache (``$MLOPS_LB_HOME/assets/<key>``), or, on
a machine that never built them, downloaded back from the stack's own bucket and checked against the recorded hash.

Example::

    lock = lock_assets(wheel, wheelhouse, python="3.11", architecture="x86_64")
    text = lock.to_json()                         # what the stack config keeps
    wheel, house = restore_assets(AssetsLock.from_json(text))   # the same bytes, later or elsewhere
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProvisionError
from .assets import Wheelhouse, content_key, mlops_home, sha256_file, staged_asset

__all__ = ["CONFIG_KEY", "AssetsLock", "diff_locks", "lock_assets", "restore_assets"]

# The stack config key (project namespace) that holds the lock as JSON.
CONFIG_KEY = "assets"
_FORMAT = 1

Fetch = Callable[
    [str, Path], None
]  # (bucket key, destination file): download one object of the stack's bucket


@dataclass(frozen=True)
class AssetsLock:
    """What the instances of one stack install, by content: the wheel, the wheelhouse and the instances' Python."""

    python: str
    architecture: str
    wheel_key: str
    wheel_sha256: str
    wheelhouse_digest: str | None = None
    requirements: tuple[str, ...] = ()
    wheelhouse_files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def to_json(self) -> str:
        """Compact, key-sorted JSON (the same lock always gives the same text)."""
        return json.dumps(
            {
                "format": _FORMAT,
                "python": self.python,
                "architecture": self.architecture,
                "wheel": {"key": self.wheel_key, "sha256": self.wheel_sha256},
                "wheelhouse": None
                if self.wheelhouse_digest is None
                else {
                    "digest": self.wheelhouse_digest,
                    "requirements": list(self.requirements),
                    "files": dict(sorted(self.wheelhouse_files.items())),
                },
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> AssetsLock:
        """Parse :meth:`to_json`'s text; anything else raises ProvisionError naming the config key."""
        try:
            d = json.loads(text)
            house = d.get("wheelhouse")
            return cls(
                python=str(d["python"]),
                architecture=str(d["architecture"]),
                wheel_key=str(d["wheel"]["key"]),
                wheel_sha256=str(d["wheel"]["sha256"]),
                wheelhouse_digest=None if house is None else str(house["digest"]),
                requirements=tuple(house["requirements"]) if house else (),
                wheelhouse_files=dict(house["files"]) if house else {},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProvisionError(
                f"the stack config {CONFIG_KEY!r} is not an assets lock ({exc}); run fleet.update_code() to "
                "rebuild and record the assets"
            ) from exc

    @property
    def wheelhouse_prefix(self) -> str | None:
        """The wheelhouse's bucket prefix (``wheelhouse/<digest[:16]>``), as the program uploads it."""
        return None if self.wheelhouse_digest is None else f"wheelhouse/{self.wheelhouse_digest[:16]}"


def _cached(key: str) -> Path:
    """Where the program stages the object ``key`` (``assets.staged_asset``): one path per content."""
    return mlops_home() / "assets" / key


def lock_assets(wheel: Path, wheelhouse: Wheelhouse | None, *, python: str, architecture: str) -> AssetsLock:
    """Record ``wheel`` and ``wheelhouse`` by content (and stage them in the local cache, as the upload does)."""
    key = content_key("wheels", wheel)
    staged_asset(wheel, key)
    files: dict[str, str] = {}
    if wheelhouse is not None:
        prefix = f"wheelhouse/{wheelhouse.digest[:16]}"
        for f in wheelhouse.files:
            files[f.name] = sha256_file(f)
            staged_asset(f, f"{prefix}/{f.name}")
    return AssetsLock(
        python=python,
        architecture=architecture,
        wheel_key=key,
        wheel_sha256=sha256_file(wheel),
        wheelhouse_digest=None if wheelhouse is None else wheelhouse.digest,
        requirements=() if wheelhouse is None else tuple(wheelhouse.requirements),
        wheelhouse_files=files,
    )


def _ensure(key: str, sha: str, fetch: Fetch | None) -> Path:
    path = _cached(key)
    if path.is_file() and sha256_file(path) == sha:
        return path
    if fetch is None:
        raise ProvisionError(
            f"the stack's asset {key} is not in {path.parent} and cannot be fetched (no bucket output): "
            "run fleet.update_code() to rebuild and ship the assets from here"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fetch(key, tmp)
    got = sha256_file(tmp)
    if got != sha:
        tmp.unlink(missing_ok=True)
        raise ProvisionError(
            f"the stack's asset {key} in its bucket has sha256 {got[:16]}..., the stack recorded {sha[:16]}...: "
            "the object was changed outside the stack; run fleet.update_code() to ship fresh assets"
        )
    tmp.replace(path)
    return path


def restore_assets(lock: AssetsLock, *, fetch: Fetch | None = None) -> tuple[Path, Wheelhouse | None]:
    """The wheel and wheelhouse of ``lock``, byte for byte: from the local cache, else through ``fetch`` (the
    stack's bucket), each checked against its recorded sha256."""
    wheel = _ensure(lock.wheel_key, lock.wheel_sha256, fetch)
    if lock.wheelhouse_digest is None:
        return wheel, None
    prefix = lock.wheelhouse_prefix
    paths = [_ensure(f"{prefix}/{name}", sha, fetch) for name, sha in sorted(lock.wheelhouse_files.items())]
    folder = paths[0].parent if paths else _cached(str(prefix))
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in lock.wheelhouse_files)
    if extra:  # Wheelhouse.files uploads the whole folder: a stray file would change what the stack declares
        raise ProvisionError(
            f"{folder} holds files the stack does not record ({', '.join(extra)}); remove them"
        )
    return wheel, Wheelhouse(
        path=folder,
        requirements=lock.requirements,
        digest=lock.wheelhouse_digest,
        python_version=lock.python,
        architecture=lock.architecture,
    )


def _pins(reqs: tuple[str, ...]) -> dict[str, str]:
    return {r.partition("==")[0]: r.partition("==")[2] for r in reqs}


def diff_locks(old: AssetsLock | None, new: AssetsLock) -> list[str]:
    """Human lines saying what ``new`` ships that ``old`` did not (empty: nothing changes on the instances).

    Example::

        diff_locks(old, new)   # ['numpy 2.0.0 -> 2.1.0', 'mlops_lb wheel 1a2b3c4d5e6f -> 9f8e7d6c5b4a']
    """
    if old is None:
        return ["no assets recorded in the stack yet: every asset is new"]
    lines = []
    if old.python != new.python:
        lines.append(f"instance Python {old.python} -> {new.python}")
    if old.architecture != new.architecture:
        lines.append(f"architecture {old.architecture} -> {new.architecture}")
    if old.wheel_sha256 != new.wheel_sha256:
        lines.append(f"mlops_lb wheel {old.wheel_sha256[:12]} -> {new.wheel_sha256[:12]}")
    a, b = _pins(old.requirements), _pins(new.requirements)
    for name in sorted(set(a) | set(b)):
        if name not in a:
            lines.append(f"{name} added ({b[name]})")
        elif name not in b:
            lines.append(f"{name} removed ({a[name]})")
        elif a[name] != b[name]:
            lines.append(f"{name} {a[name]} -> {b[name]}")
    if not lines and old.wheelhouse_digest != new.wheelhouse_digest:
        lines.append(f"wheelhouse {str(old.wheelhouse_digest)[:12]} -> {str(new.wheelhouse_digest)[:12]}")
    return lines
