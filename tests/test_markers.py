"""The process guard behind the fast command: which started processes need which marker (tests/_markers.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import _markers
import pytest

from mlops_lb.serving import worker_command


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (
            tuple(worker_command(port=8081, target_id="w1")),
            "fleet",
        ),  # the local fleet's worker, the server fixture
        (("/usr/sbin/haproxy", "-W", "-f", "cfg"), "fleet"),
        ((sys.executable, "tests/load/_server.py", "--delay-s", "0.005"), "fleet"),  # the load tests' target
        ((sys.executable, "-m", "mlops_lb", "demo", "--duration-s", "45"), "fleet"),  # a fleet inside a child
        (("<fork>",), "fleet"),
        ((sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"), "notebook"),
        (("/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server", "--port=0"), "ray"),
        ((sys.executable, "-c", "import mlops_lb"), None),  # a fresh interpreter that imports and exits
        ((sys.executable, "-c", "import sys; print('uvicorn' in sys.modules)"), None),  # code naming a server
        ((sys.executable, "-m", "uvicorn", "app:app"), "fleet"),
        ((sys.executable, "-c", "import sys, mlops_lb.load.distributed; print('ray' in sys.modules)"), None),
        (("nbstripout", "--verify", "notebooks/01_launch_fleet.ipynb"), None),
        (
            ("pulumi", "--non-interactive", "stack", "select", "--stack", "demo"),
            None,
        ),  # the fake CLI of tests/aws
        (("bash", "-n", "ud.sh"), None),
    ],
)
def test_process_kind_names_the_marker_a_started_process_needs(
    argv: tuple[str, ...], kind: str | None
) -> None:
    """Servers, HAProxy, forks, kernels and Ray need their marker; short tools that exit need none."""
    assert _markers.process_kind(argv) == kind


def test_the_audit_hook_sees_every_process_this_test_starts() -> None:
    """A process started through subprocess is recorded with its argv (the guard reads this list)."""
    first = len(_markers.SPAWNED)
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert _markers.SPAWNED[first:] == [(sys.executable, "-c", "pass")]


# The phases of scripts/test.sh, read from the script itself: every test not marked slow or aws runs in exactly one.
MARKERS = ("fleet", "notebook", "ray", "browser", "serial", "slow", "aws")


def _phases(script: str) -> list[str]:
    """The ``-m`` expressions of the script's pytest phases, with its shell variables filled in."""
    names = dict(re.findall(r'^(\w+)="([^"$]*)"$', script, re.M))
    exprs = re.findall(r'^pytest .*-m "([^"]+)"', script, re.M)
    return [re.sub(r"\$(\w+)", lambda m: names[m.group(1)], e) for e in exprs]


def test_the_phases_of_test_sh_run_every_test_exactly_once() -> None:
    """For every combination of markers, a test not marked slow or aws is in exactly one phase (none otherwise);
    a `serial` or `ray` test is always in the last phase, alone; the fast command takes no test that starts a
    process and no test that times something."""
    import itertools
    from pathlib import Path

    from _pytest.mark.expression import Expression

    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    phases = [Expression.compile(e) for e in _phases(script)]
    assert len(phases) == 2, _phases(script)
    fast = Expression.compile(re.search(r'^#\s+pytest -n 2 -m "([^"]+)"', script, re.M)[1])
    for n in range(len(MARKERS) + 1):
        for marks in itertools.combinations(MARKERS, n):

            def has(name: str, marks: tuple[str, ...] = marks, **_: object) -> bool:
                return name in marks

            hits = [i for i, p in enumerate(phases) if p.evaluate(has)]
            expected = 0 if {"slow", "aws"} & set(marks) else 1
            assert len(hits) == expected, (marks, hits)
            if expected and {"serial", "ray"} & set(marks):
                assert hits == [1], marks
            assert fast.evaluate(has) == (not marks), marks


def test_only_the_last_phase_runs_one_test_at_a_time() -> None:
    """Phase 1 runs on three workers (its tests mostly wait on their processes); the serial phase has no -n."""
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    lines = re.findall(r"^pytest .*$", script, re.M)
    assert ["-n 3" in line for line in lines] == [True, False], lines


def test_the_parallel_phase_keeps_a_module_on_one_worker_and_spreads_the_notebooks() -> None:
    """Phase 1 schedules by tests/conftest.py's hook (``--dist loadgroup``): one unit per module, so a module-scoped
    fleet starts once, but one unit per notebook, so ten notebooks do not queue on one worker."""
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    phase1 = re.findall(r"^pytest .*$", script, re.M)[0]
    assert "--dist loadgroup" in phase1, phase1
    a = "tests/test_cli.py::TestExitCodes::test_a"
    b = "tests/test_cli.py::test_b[x]"
    assert _markers.worker_scope(a) == _markers.worker_scope(b) == "tests/test_cli.py"
    nb = "tests/notebooks/test_notebooks.py::test_notebook_executes[{}]"
    assert _markers.worker_scope(nb.format("01_launch_fleet")) != _markers.worker_scope(
        nb.format("02_load_test")
    )


class _Item:
    def __init__(self, nodeid: str, *marks: str) -> None:
        self.nodeid = nodeid
        self._marks = [getattr(pytest.mark, m).mark for m in marks]

    def iter_markers(self) -> list[pytest.Mark]:
        return self._marks


def test_run_order_hands_out_notebooks_then_fleets_then_the_rest_keeping_modules_whole() -> None:
    """Longest first: the notebook module, then modules with a fleet test (larger first), then CPU-only modules
    (larger first); a module's tests stay together and in order."""
    items = [
        _Item("tests/a.py::t1"),
        _Item("tests/b.py::t1"),
        _Item("tests/b.py::t2", "fleet"),
        _Item("tests/c.py::t1"),
        _Item("tests/c.py::t2"),
        _Item("tests/n.py::nb", "notebook"),
        _Item("tests/a.py::t2"),
        _Item("tests/a.py::t3"),
    ]
    order = [i.nodeid for i in _markers.run_order(items)]  # type: ignore[arg-type]
    assert order == [
        "tests/n.py::nb",
        "tests/b.py::t1",
        "tests/b.py::t2",
        "tests/a.py::t1",
        "tests/a.py::t2",
        "tests/a.py::t3",
        "tests/c.py::t1",
        "tests/c.py::t2",
    ]


def test_the_serial_phase_collects_every_module_that_holds_a_serial_or_ray_test() -> None:
    """scripts/test.sh's serial phase collects only ``_markers.alone_modules()``: every module whose tests the
    markers put there must be in it, or its tests would silently not run. The markers' answer comes from this
    process's own collection (the whole suite in scripts/test.sh), else from collecting it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(_markers.alone_modules(str(root)))
    seen = set(_markers.ALONE_SEEN)
    if len(seen) < 10:  # this process collected a few files only: ask pytest about the whole suite
        out = subprocess.run(
            # "(ray)": a bare " ray " in an argv reads as a Ray process to the guard (process_kind)
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "-m", "serial or (ray)"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seen = {line.split("::", 1)[0] for line in out.splitlines() if "::" in line}
    assert seen and seen <= listed, sorted(seen - listed)
    assert "tests/test_demo.py" in listed and "tests/test_spec.py" not in listed
