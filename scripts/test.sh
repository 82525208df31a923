#!/usr/bin/env bash
# Quick start, command 2: set up (with dev tools), then lint, type-check, check the import contracts and run every
# test, notebooks included. Arguments, when given, go to one plain `pytest` run instead of the two phases below.
#
# The tests run in two phases, chosen by marker alone (pyproject.toml; tests/conftest.py fails a test that starts
# a server, HAProxy, Ray or a notebook kernel without its marker, so the split stays exact):
#   1. three at a time on the two cores (pytest-xdist `-n 3`: most of these tests wait on the processes they start,
#      and a third worker fills that wait, docs/testing.md; `--dist loadgroup`: a whole module per worker so a
#      module's shared server or fleet starts once, each notebook on its own; the scheduler in tests/conftest.py,
#      units in tests/_markers.py, hands out the notebooks and fleets first and the short CPU-only modules last):
#      every test that times nothing. Some start no process (no `fleet`, `notebook`, `ray`, `browser`: the fast command below); the
#      others start a fleet, servers, a notebook or a browser but check status codes, files, configs, cleanup.
#      Ports come from the OS and every fleet has its own temp dir, so two never collide;
#   2. one at a time: `serial` (a test that times something: latency bounds, scaling waits on the compressed clock,
#      a verdict that generator lag would flip) and `ray` (a local Ray cluster is several processes; two at once
#      overload two cores). A neighbour would make these slow or flaky, so they never share the machine.
# One parallel session instead of two (CPU-only, then processes) saves a pytest start and collection on three
# processes and lets the short tests fill the end of the notebooks' queue (docs/testing.md).
# A new test that starts processes runs in phase 1 by its `fleet`/`notebook`/`browser` marker; add `serial` when
# it asserts a duration, a rate, a latency or a scaling step (docs/testing.md).
# The fast command for development leaves out every test that starts a process:
#   pytest -n 2 -m "not (fleet or notebook or ray or browser or serial or slow or aws)"
set -euo pipefail
cd "$(dirname "$0")/.."
# Every server, CLI call, notebook kernel and pytest worker is a fresh interpreter. With PYTHONDONTWRITEBYTECODE set
# (some CI images and shells set it) and a venv made by uv (which, unlike pip, does not compile at install), each
# of them compiled fastapi, pydantic, pandas and our package from source again: 8.4 s of CPU to import a model
# server's modules instead of 3.3 s with bytecode (docs/testing.md). The test run writes bytecode as it imports,
# as Python does by default; __pycache__ is git-ignored and the instance bundles leave it out (aws/assets.py).
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check mlops_lb tests bench; ruff format --check mlops_lb tests bench
# mypy's cache lives outside the clone: it validates each entry by content hash, so a fresh clone reuses it
# (pulumi_aws alone is 6,000 modules: 125 s of CPU cold, 11 s warm; docs/testing.md). MYPY_CACHE_DIR overrides.
export MYPY_CACHE_DIR="${MYPY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops_lb/mypy}"
echo "== mypy"; mypy
echo "== import contracts (layers of shared/DESIGN.md §2, no cycles)"; lint-imports
echo "== notebooks are stripped"; nbstripout --verify notebooks/*.ipynb
if [ "$#" -gt 0 ]; then
  echo "== pytest $*"; exec pytest "$@"
fi
alone="serial or ray"
# Both phases run even when one fails, so one run shows every failure; the script fails if either did.
status=0
echo "== pytest, phase 1 of 2: three at a time, by module, longest first (nothing timed)"
pytest -n 3 --dist loadgroup --durations=25 -m "not ($alone or slow or aws)" || status=$?
echo "== pytest, phase 2 of 2: one at a time (timing and Ray)"
# Only the modules that can hold such a test are collected (tests/_markers.py, alone_modules: 8 s of CPU less in
# a phase that runs one test at a time); -m still chooses the tests, and tests/test_markers.py checks the list.
mapfile -t alone_paths < <(python tests/_markers.py)
pytest --durations=25 -m "($alone) and not slow and not aws" "${alone_paths[@]}" || status=$?
exit "$status"
