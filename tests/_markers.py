"""Which tests start processes: the markers ``fleet``, ``ray`` and ``notebook`` (pyproject.toml), kept exact.

The fast command and the parallel phase of scripts/test.sh
(``pytest -n 2 -m "not (fleet or notebook or ray or browser or serial or slow or aws)"``) rely on these markers.
Two mechanisms keep them exact (tests/conftest.py wires both):

1. a test that uses a fixture which starts servers or Ray gets the fixture's marker (:data:`FIXTURE_MARKS`);
2. every process a test starts is seen through Python's audit hooks (``subprocess.Popen``, ``os.posix_spawn``,
   ``os.fork``: :func:`audit`); when a test starts a server, HAProxy, a notebook kernel or Ray without the marker
   :func:`process_kind` names, the test fails and says which marker to add. Short-lived tools (a fresh interpreter
   that imports the package, a CLI call that exits, ``nbstripout``, ``bash -n``, a fake ``pulumi``) stay allowed:
   they neither listen nor time anything.

Imported by module name (``tests/`` is on ``pythonpath``), never from a conftest.

Example::

    process_kind(("haproxy", "-f", "cfg"))                    # 'fleet'
    process_kind((sys.executable, "-c", "import mlops_lb"))   # None
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from typing import Any

# Fixtures that start real servers, fleets or a Ray cluster, by name, and the marker their users need.
FIXTURE_MARKS = {
    "server": "fleet",
    "server_factory": "fleet",
    "target": "fleet",
    "target_factory": "fleet",
    "start_target": "fleet",
    "rr_fleet": "fleet",
    "fleet_factory": "fleet",
    "ray_cluster": "ray",
}
SPAWNED: list[tuple[str, ...]] = []
"""Every argv started by this test process, in order (``("<fork>",)`` for a bare fork)."""

_RAY = re.compile(r"(^|[/ ])ray([/ ]|$)|gcs_server|raylet|\bray start\b|ray/_private")
_SERVER = re.compile(
    r"-m mlops_lb (serve|up|demo|load)\b|_server\.py|_rawserver\.py|user_server\.py|\buvicorn\b"
)


def audit(event: str, args: tuple[Any, ...]) -> None:
    """``sys.addaudithook`` callback: record the argv of each process this interpreter starts."""
    if event == "subprocess.Popen":
        argv = args[1]
        SPAWNED.append(
            tuple(os.fsdecode(a) for a in argv) if isinstance(argv, (list, tuple)) else (str(argv),)
        )
    elif event == "os.posix_spawn":
        SPAWNED.append(tuple(os.fsdecode(a) for a in args[1]))
    elif event in ("os.fork", "os.forkpty"):
        SPAWNED.append(("<fork>",))


def process_kind(argv: tuple[str, ...]) -> str | None:
    """The marker a test needs for starting ``argv``: ``fleet``, ``ray``, ``notebook``, or None for a short tool.

    A bare fork counts as ``fleet``: only the load generator's process workers and servers fork in this suite.
    """
    # The program and its arguments, not the text of ``python -c CODE``: code that merely names a server module
    # (``'uvicorn' in sys.modules``) starts nothing.
    line = " ".join(a for i, a in enumerate(argv) if not (i and argv[i - 1] == "-c"))
    if "ipykernel" in line or "nbclient" in line:
        return "notebook"
    if _RAY.search(line):
        return "ray"
    if argv and (os.path.basename(argv[0]) in ("haproxy", "nginx", "wrk", "<fork>") or _SERVER.search(line)):
        return "fleet"
    return None


SPREAD = frozenset({"tests/notebooks/test_notebooks.py"})
"""Modules whose tests share nothing costly and run long: under ``--dist loadfile`` the ten notebooks (about
7 minutes) queued on one worker while the other finished early; each now goes to whichever worker is free."""


def worker_scope(nodeid: str) -> str:
    """The unit a phase-2 worker takes (tests/conftest.py's scheduler): the test's module, so a module's shared
    server or fleet (module-scoped fixtures) starts once, or the test itself in a module of :data:`SPREAD`.

    Example::

        worker_scope("tests/test_cli.py::TestExitCodes::test_x")                 # 'tests/test_cli.py'
        worker_scope("tests/notebooks/test_notebooks.py::test_notebook_executes[02_load_test]")  # the node id
    """
    module = nodeid.split("::", 1)[0]
    return nodeid if module in SPREAD else module


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def run_order(items: list[Any]) -> list[Any]:
    """``items`` longest work first, each module's tests kept together and in their order: notebooks and Ray, then
    modules that start fleets, servers or a browser, then the rest; within each, modules with more tests first.

    The parallel phase of scripts/test.sh hands out whole modules (:func:`worker_scope`) in this order. Handing
    the minute-long notebooks out last left one worker running a notebook alone at the end; handing them out
    first lets the many short CPU-only modules fill both workers until the end (longest-first scheduling).

    Example::

        items[:] = run_order(items)   # in pytest_collection_modifyitems
    """
    sizes = Counter(_module(i.nodeid) for i in items)
    rank: dict[str, int] = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        # notebooks and Ray first: in the serial phase notebook 07 and the Ray shards, adjacent, share the one Ray
        # cluster of the session (tests/_raycluster.py), stopped after them
        kind = 0 if marks & {"notebook", "ray"} else 1 if marks & {"fleet", "browser"} else 2
        module = _module(item.nodeid)
        rank[module] = min(rank.get(module, 2), kind)
    first = {_module(i.nodeid): n for n, i in reversed(list(enumerate(items)))}
    return sorted(
        items, key=lambda i: (rank[_module(i.nodeid)], -sizes[_module(i.nodeid)], first[_module(i.nodeid)])
    )


# Text that can put a test in the serial phase: the two markers, and the fixture that gives `ray` (FIXTURE_MARKS).
_ALONE_TEXT = re.compile(r"\bmark\.(serial|ray)\b|\bray_cluster\b")
ALONE_SEEN: set[str] = set()
"""Modules of this process's collection holding a ``serial`` or ``ray`` test (tests/conftest.py fills it before
``-m`` deselects anything); tests/test_markers.py checks :func:`alone_modules` against it."""


def note_alone(items: list[Any]) -> None:
    """Record in :data:`ALONE_SEEN` the modules of ``items`` that hold a ``serial`` or ``ray`` test."""
    for item in items:
        if any(m.name in ("serial", "ray") for m in item.iter_markers()):
            ALONE_SEEN.add(_module(item.nodeid))


def alone_modules(root: str = ".") -> list[str]:
    """The test modules whose text can hold a ``serial`` or ``ray`` test, as paths relative to ``root``.

    The serial phase of scripts/test.sh collects only these (its ``-m`` still selects the tests): collecting all
    1,700 tests in that one process cost 15 s of CPU (ray, nbformat, moto, pulumi imports) for 75 tests in 24
    modules, 8 s of it avoidable. A module this misses would lose its serial tests silently, so
    tests/test_markers.py compares it with what the markers select (:data:`ALONE_SEEN`).

    Example::

        alone_modules()   # ['tests/aws/test_instance_sandbox.py', ..., 'tests/test_demo.py']
    """
    base = os.path.join(root, "tests")
    found = []
    for folder, _dirs, files in os.walk(base):
        for name in files:
            if name.startswith("test_") and name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    if _ALONE_TEXT.search(fh.read()):
                        found.append(os.path.relpath(path, root))
    return sorted(found)


if __name__ == "__main__":  # scripts/test.sh: the serial phase's paths, one per line
    print("\n".join(alone_modules(sys.argv[1] if len(sys.argv) > 1 else ".")))
