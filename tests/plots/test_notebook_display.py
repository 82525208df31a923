"""Figures from mlops_lb.plots display as pictures in a notebook without `%matplotlib inline`."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

CELL = """\
import numpy as np, pandas as pd
from mlops_lb import plots
t = pd.date_range("2026-01-01", periods=5, freq="1s", tz="UTC")
df = pd.DataFrame({"interval_start": t, "p50_s": np.linspace(0.01, 0.02, 5), "p99_s": np.linspace(0.02, 0.05, 5)})
plots.latency_over_time(df)
"""


@pytest.mark.notebook
def test_a_figure_as_the_last_value_of_a_cell_renders_as_png() -> None:
    """A bare Figure (built without pyplot) gets an image/png output, not only its text repr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    outputs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
