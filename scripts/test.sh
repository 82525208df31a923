#!/usr/bin/env bash
# Quick start, command 2: set up (with dev tools), then lint, type-check, check the import contracts and run every
# test, notebooks included. Arguments, when given, go to one plain `pytest` run instead of the two phases below.
#
# The tests run in two phases (markers in pyproject.toml; tests/conftest.py fails a test that starts a server,
# HAProxy, Ray or a notebook kernel without its marker, so the split stays exact):
#   1. in parallel on two workers (pytest-xdist): tests that start no fleet, server, notebook, Ray or browser and
#      do not time anything (`serial`): these are CPU-bound and independent;
#   2. one at a time: everything else. Those tests measure latencies and wait for scaling on a compressed clock; a
#      neighbour on the same two cores would make them slow or flaky, so they never share the machine.
# The fast command for development is phase 1 alone:
#   pytest -n 2 -m "not (fleet or notebook or ray or browser or serial or slow or aws)"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check mlops_lb tests bench; ruff format --check mlops_lb tests bench
echo "== mypy"; mypy
echo "== import contracts (layers of shared/DESIGN.md §2, no cycles)"; lint-imports
echo "== notebooks are stripped"; nbstripout --verify notebooks/*.ipynb
if [ "$#" -gt 0 ]; then
  echo "== pytest $*"; exec pytest "$@"
fi
heavy="fleet or notebook or ray or browser or serial"
# Both phases run even when the first fails, so one run shows every failure; the script fails if either did.
status=0
echo "== pytest, phase 1 of 2: in parallel (no fleet, notebook, Ray, browser or timing)"
pytest -n 2 --durations=25 -m "not ($heavy or slow or aws)" || status=$?
echo "== pytest, phase 2 of 2: one at a time (fleets, notebooks, Ray, browser, timing)"
pytest --durations=25 -m "($heavy) and not slow and not aws" || status=$?
exit "$status"
