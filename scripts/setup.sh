#!/usr/bin/env bash
# Set up everything mlops_lb needs, idempotently: system programs (HAProxy; with --dev also wrk, nginx and
# Chromium for benchmarks and browser tests), a virtualenv in .venv, and the package installed into it.
# Works as root on Debian/Ubuntu (apt-get), with sudo, or on macOS (brew). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY="${PYTHON:-python3}"

want=()
command -v haproxy >/dev/null 2>&1 || want+=(haproxy)
if [ "$DEV" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || want+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || want+=(nginx)
  [ -x /usr/bin/chromium ] || want+=(chromium)
fi
command -v "$PY" >/dev/null 2>&1 || want+=(python3)
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then want+=(python3-venv); fi

if [ ${#want[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing ${want[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew_pkgs=()
    for p in "${want[@]}"; do case "$p" in haproxy|wrk|nginx) brew_pkgs+=("$p");; esac; done
    [ ${#brew_pkgs[@]} -gt 0 ] && brew install "${brew_pkgs[@]}"
  else
    echo "setup: please install: ${want[*]} (apt-get install -y ... or brew install ...)" >&2
  fi
fi
command -v haproxy >/dev/null 2>&1 || { echo "setup: haproxy is required: apt-get install -y haproxy  (macOS: brew install haproxy)" >&2; exit 1; }

# uv creates the venv and installs into it in about a minute from a cold cache where pip takes about seven
# (measured on two busy cores: docs/testing.md); pip stays the fallback when uv is missing or fails, e.g. on a
# laptop whose pip.conf names a private index that uv does not read. `--seed` puts pip into the venv: the package
# (aws/assets.py) and the instance sandbox call `python -m pip download`.
UV="$(command -v uv || true)"
if [ ! -x .venv/bin/python ]; then
  if [ -n "$UV" ]; then
    "$UV" venv -q --seed --python "$PY" .venv || { rm -rf .venv; "$PY" -m venv .venv; }
  else
    "$PY" -m venv .venv
  fi
fi
# pip's, uv's and setuptools' build chatter goes to a log; it is shown only when the install fails.
log=.venv/setup-pip.log
extras=notebook; [ "$DEV" = 1 ] && extras=dev
: >"$log"
if [ -z "$UV" ] && [ ! -x .venv/bin/uv ]; then
  # uv is one of our own dependencies, so installing it first costs one wheel and no extra package in the end.
  .venv/bin/python -m pip install -q --disable-pip-version-check uv >>"$log" 2>&1 || true
fi
[ -z "$UV" ] && [ -x .venv/bin/uv ] && UV=.venv/bin/uv
installed=0
if [ -n "$UV" ]; then
  echo "setup: installing mlops_lb[$extras] into .venv with uv (log: $log)"
  "$UV" pip install -q --python .venv/bin/python -e ".[$extras]" >>"$log" 2>&1 && installed=1 ||
    echo "setup: note: uv could not install (see $log); falling back to pip" >&2
fi
if [ "$installed" = 0 ]; then
  echo "setup: installing mlops_lb[$extras] into .venv with pip (log: $log)"
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check -U pip &&
         .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"; } >>"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (see above)" >&2
    exit 1
  fi
fi
if [ "$DEV" = 1 ]; then
  # The instance sandbox's wheelhouses (what EC2 instances install, resolved per instance Python) and AL2023's pip
  # wheels: downloaded once from PyPI into ~/.cache/mlops_lb/sandbox, so the tests run offline.
  echo "setup: caching the instance sandbox's wheelhouses (log: .venv/setup-wheelhouses.log)"
  .venv/bin/python scripts/instance_wheelhouses.py >.venv/setup-wheelhouses.log 2>&1 ||
    echo "setup: note: caching the instance wheelhouses failed (see .venv/setup-wheelhouses.log); those sandbox tests skip" >&2
fi
command -v pulumi >/dev/null 2>&1 || echo "setup: note: the Pulumi CLI is not installed; the local fleet does not need it. For AWS: curl -fsSL https://get.pulumi.com | sh"
echo "setup: ready (.venv)"
