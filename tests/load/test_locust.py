"""The Locust runner: real master + worker subprocesses, stats history converted to the intervals schema."""

from __future__ import annotations

import sys

import pytest

from mlops_lb.load import run_locust
from mlops_lb.load.result import INTERVAL_COLUMNS


def test_locust_run_converts_to_intervals(target, tmp_path):
    """A ≈5 s Locust run against a local target becomes a closed-loop frame with the intervals columns."""
    res = run_locust(f"{target.base}/ok", users=4, spawn_rate=4, duration_s=5, workers=1,
                     payloads=[b'{"rows": [[1]]}'], out_dir=tmp_path)  # fmt: skip
    df = res.intervals()
    assert list(df.columns) == list(INTERVAL_COLUMNS)
    assert df.attrs["loop"] == "closed" and df.attrs["corrected"] is False
    assert len(df) >= 2 and df["sent"].sum() > 0 and df["errors"].sum() == 0
    assert str(df["interval_start"].dtype) == "datetime64[ns, UTC]"
    assert df["p50_s"].dropna().lt(1.0).all()  # ms were converted to seconds
    s = res.summary()
    assert s["requests"] == target.count() > 0
    assert "closed loop" in repr(res)
    assert (tmp_path / "locustfile.py").exists()


def test_locust_never_imported_here():
    """run_locust keeps Locust (and its gevent monkey-patching) out of this process."""
    assert "locust" not in sys.modules and "gevent.monkey" not in sys.modules


def test_locust_invalid_users():
    """Bad arguments raise SpecError naming the field."""
    from mlops_lb.errors import SpecError

    with pytest.raises(SpecError, match="users"):
        run_locust("http://127.0.0.1:1/", users=0, spawn_rate=1, duration_s=1)
