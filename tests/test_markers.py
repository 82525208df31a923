"""The process guard behind the fast command: which started processes need which marker (tests/_markers.py)."""

from __future__ import annotations

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
