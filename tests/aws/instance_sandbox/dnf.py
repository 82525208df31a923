"""The sandbox's ``dnf``: records each call and "installs" AL2023's side-by-side Pythons.

``dnf install python3.N`` makes ``python3.N`` exist (the instance's real interpreter, pyenv's N, as
/usr/bin/python3.N does on AL2023: https://docs.aws.amazon.com/linux/al2023/ug/python.html, read 2026-12-06).
A venv made with it gets AL2023's packaged pip version (the ``python3.N-pip`` RPM's: 3.11 -> 22.3.1,
3.12 -> 23.2.1, 3.13 -> 24.2), not the newer one pyenv's ensurepip bundles, so an option our user data passes to
pip must work with the pip the instance really has. Anything else is only recorded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["SANDBOX_ROOT"])
AL2023_PIP = {"3.11": "22.3.1", "3.12": "23.2.1", "3.13": "24.2"}

WRAPPER = """#!/bin/bash
# python{ver} as AL2023's python{ver} RPM installs it (the sandbox's dnf made this file).
REAL={real}
if [ "${{1:-}}" = "-m" ] && [ "${{2:-}}" = "venv" ]; then
  "$REAL" "$@" || exit $?
  case " $* " in *" --without-pip "*) exit 0 ;; esac  # venv's own option: no pip at all
  for a in "$@"; do dir="$a"; done
  # AL2023's venvs carry the RPM's pip (ensurepip uses python{ver}-pip-wheel), not pyenv's newer bundled one.
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links {wheels} pip=={pip} || exit $?
  exit 0
fi
exec "$REAL" "$@"
"""


def main(argv: list[str]) -> int:
    with (ROOT / "dnf-calls.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "argv": argv}) + "\n")
    if argv[:1] != ["install"]:
        return 0
    pythons = json.loads(
        os.environ["SANDBOX_PYTHONS"]
    )  # {"3.13": "/root/.pyenv/versions/3.13.0/bin/python3.13"}
    for pkg in argv[1:]:
        if pkg.startswith("-"):
            continue
        ver = pkg[len("python") :] if pkg.startswith("python3.") and "-" not in pkg else None
        if ver is None:
            continue
        if ver not in pythons:
            print(f"Error: Unable to find a match: {pkg}", file=sys.stderr)
            return 1
        exe = ROOT / "installed" / f"python{ver}"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(
            WRAPPER.format(
                ver=ver, real=pythons[ver], pip=AL2023_PIP[ver], wheels=os.environ["SANDBOX_WHEELS"]
            )
        )
        exe.chmod(0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
