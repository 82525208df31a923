"""Build and cache what the instance sandbox installs (scripts/setup.sh --dev runs this; safe to run again).

For each instance Python (default 3.11 3.12 3.13): the serve closure resolved for AL2023 (uv, see
mlops_lb.aws.assets.resolve_requirements) downloaded as wheels into the sandbox cache, plus AL2023's pip wheels.
Prints what it resolved and how long each step took.

Usage: python scripts/instance_wheelhouses.py [3.13 ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlops_lb.aws.assets import build_wheelhouse, resolve_requirements

CACHE = Path(os.environ.get("MLOPS_LB_SANDBOX_CACHE", str(Path.home() / ".cache" / "mlops_lb" / "sandbox")))
AL2023_PIP = {"3.11": "22.3.1", "3.12": "23.2.1", "3.13": "24.2"}


def main(versions: list[str]) -> None:
    pip_dir = CACHE / "pip"
    pip_dir.mkdir(parents=True, exist_ok=True)
    for v in AL2023_PIP.values():
        if not (pip_dir / f"pip-{v}-py3-none-any.whl").is_file():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(pip_dir), f"pip=={v}"],
                check=True,
            )
    for py in versions:
        t0 = time.monotonic()
        pins = resolve_requirements(python_version=py)
        t1 = time.monotonic()
        house = build_wheelhouse(pins, python_version=py, cache_dir=CACHE / "wheelhouse")
        t2 = time.monotonic()
        print(
            f"Python {py}: {len(pins)} pins resolved in {t1 - t0:.1f} s, wheelhouse {house.path} in {t2 - t1:.1f} s"
        )
        print(
            "  "
            + " ".join(
                p
                for p in pins
                if p.split("==")[0]
                in ("numpy", "scipy", "scikit-learn", "uvicorn", "websockets", "watchfiles", "python-dotenv")
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:] or list(AL2023_PIP))
