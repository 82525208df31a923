"""Every notebook executes top to bottom against the local fleet, and is committed without outputs.

The kernel is ``python3`` started with *this* interpreter: jupyter_client replaces a kernelspec's leading
``python`` with ``sys.executable``, so running pytest from ``.venv`` runs the notebooks in ``.venv`` too. Each
notebook runs in a temporary directory (its ``runs/`` land there) with the repository on ``PYTHONPATH`` so
``import mlops_lb`` works whether or not the package is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def test_the_notebooks_of_the_walk_exist() -> None:
    """The notebooks of the walk exist."""
    assert [p.stem for p in NOTEBOOKS] == [
        "01_launch_fleet",
        "02_load_test",
        "03_scaling_behaviour",
        "04_capacity_planning",
        "05_llm_fleet",
        "06_bring_your_own_server",
        "07_distributed_load",
        "08_which_fleet",
        "09_safe_rollout",
        "10_routing",
    ]


@pytest.fixture(scope="module")
def stripped() -> Callable[[Path], bool]:
    """``stripped(path)``: nbstripout --verify passes for ``path``. nbstripout starts slowly (seconds of CPU each
    time), so it runs once over every notebook and again per notebook only when that one run fails."""
    nbstripout = Path(sys.executable).with_name("nbstripout")
    if not nbstripout.exists():
        return lambda path: True

    def verify(*paths: Path) -> bool:
        return (
            subprocess.run([str(nbstripout), "--verify", *map(str, paths)], capture_output=True).returncode
            == 0
        )

    all_stripped = verify(*NOTEBOOKS)
    return lambda path: all_stripped or verify(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path, stripped: Callable[[Path], bool]) -> None:
    """No outputs or execution counts are committed (nbstripout --verify passes)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
    assert stripped(path), f"{path.name}: nbstripout --verify fails"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_story_shape(path: Path) -> None:
    """A `parameters` cell with `backend = "local"` comes first; every code cell follows a markdown cell."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []) and 'backend = "local"' in code[0].source
    for prev, cell in zip(nb.cells, nb.cells[1:], strict=False):
        if cell.cell_type == "code":
            assert prev.cell_type == "markdown", f"{path.name}: code cell without markdown before it"
    assert "close()" in code[-1].source, f"{path.name}: the last cell must close the fleet"


# What each notebook's markdown promises, read from its executed outputs: (first line of the cell, pattern that
# its text output must match). Shorter quick parameters must still tell the same story, so they are checked here.
STORY: dict[str, list[tuple[str, str]]] = {
    "01_launch_fleet": [("fleet.scale(", r"(?s)in_service\s+healthy.*in_service\s+healthy")],  # 2 healthy
    "02_load_test": [("session = ml.run_session", r"LoadResult\(ramp"), ("report = ", r"report\.html")],
    "03_scaling_behaviour": [("events[", r"(?s)scale_out.*scale_in")],  # out under load, back in when quiet
    "04_capacity_planning": [
        ("profile = ", r"False"),  # the sweep reached a step that broke the SLO
        ("plan = ", r"max OK rate per target: \d"),
    ],
    "05_llm_fleet": [("display(ml.plots.scaling_timeline", r"ConcurrencyPerTarget [\d.]+ > target")],
    "06_bring_your_own_server": [("def wait(", r"scale-out reached\s+scale-in reached")],
    "07_distributed_load": [("import numpy", r"responses from 2 shards")],
    "08_which_fleet": [("print(sweep.recommendation)", r"Recommended: "), ("from mlops_lb", r"Comparison\(")],
    "09_safe_rollout": [
        ("panel = ", r"RolloutResult completed"),
        ("slow = ", r"rolled_back"),
        ("stop.set()", r"errors: 0; status: rolled_back"),
    ],
    "10_routing": [("rc = ", r"consistent_hash hit"), ("print(rc.recommendation)", r"\S")],
}


def _text_of(cell: nbformat.NotebookNode) -> str:
    """A code cell's printed and displayed text (streams and text/plain)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def test_story_covers_every_notebook() -> None:
    """Each notebook has promises checked on its outputs, and each names an existing cell."""
    assert sorted(STORY) == [p.stem for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        for start, _pattern in STORY[path.stem]:
            assert sum(s.startswith(start) for s in sources) == 1, (path.name, start)


# Notebooks run two at a time (scripts/test.sh) except these: 03 waits for a scale-out and a scale-in on the
# compressed clock, 07 runs its shards on Ray (several processes; Ray tests run alone).
SERIAL_NOTEBOOKS = {"03_scaling_behaviour", "07_distributed_load"}
# Notebook 07 runs unchanged (cluster="ray") with RAY_ADDRESS naming the session's two-node Ray cluster
# (tests/_raycluster.py, shared with tests/distributed), as on a cluster's own node: run_load connects to it instead
# of starting a local Ray, 15-30 s of start-up saved. The local start, ray.init() with its sizing, is pinned by
# tests/load/test_ray_connect.py.
def _kernel_env_for(stem: str, request: pytest.FixtureRequest) -> dict[str, str]:
    env = _kernel_env()
    if stem == "07_distributed_load":
        env["RAY_ADDRESS"] = request.getfixturevalue("ray_cluster").address
    return env


def _marks(stem: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.serial] if stem in SERIAL_NOTEBOOKS else []
    return marks + ([pytest.mark.ray] if stem == "07_distributed_load" else [])


@pytest.mark.notebook
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=_marks(p.stem)) for p in NOTEBOOKS],
    ids=lambda p: p.stem,
)
def test_notebook_executes(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The notebook runs without a cell error on the local fleet (each cell within 150 s)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=150,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    t0 = time.monotonic()
    client.execute(env=_kernel_env_for(path.stem, request))
    print(f"{path.name}: {time.monotonic() - t0:.1f} s")
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"
    ]
    assert not errors
    code = [c for c in nb.cells if c.cell_type == "code"]
    for start, pattern in STORY[path.stem]:
        text = _text_of(next(c for c in code if c.source.startswith(start)))
        assert re.search(pattern, text), (
            f"{path.name}: the cell {start!r} does not show {pattern!r}:\n{text[-3000:]}"
        )
