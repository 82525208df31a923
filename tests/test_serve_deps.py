"""What an EC2 instance installs (the `serve` extra) is enough to run the model server."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = r"""
import sys, importlib.abc
BLOCKED = {"pandas", "matplotlib", "pulumi", "pulumi_aws", "boto3", "botocore", "ipywidgets", "pyarrow", "hdrhistogram", "psutil", "tqdm"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on instances")
sys.meta_path.insert(0, Block())
from mlops_lb.cli import build_parser
from mlops_lb.serving import create_app, load_model
handle = load_model("demo")
create_app(model="demo", target_id="i-test")
print(handle.predict(handle.sample_rows(1)))
"""


def test_model_server_runs_without_the_notebook_and_aws_dependencies() -> None:
    """Importing the CLI and serving, loading the model and building the app never touch non-`serve` packages."""
    proc = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("[")
