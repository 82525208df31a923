#!/usr/bin/env bash
# Quick start, command 2: set up (with dev tools), then lint, type-check and run every test, notebooks included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check mlops_lb tests bench; ruff format --check mlops_lb tests bench
echo "== mypy"; mypy
echo "== notebooks are stripped"; nbstripout --verify notebooks/*.ipynb
echo "== pytest"; exec pytest "$@"
