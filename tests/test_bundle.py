"""RunBundle: atomic appends, consolidation, and loading a bundle left behind by a crash."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from mlops_lb.bundle import RunBundle
from mlops_lb.errors import MlopsLbError
from mlops_lb.spec import FleetSpec


def _rows(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "intended_at": pd.to_datetime([1_700_000_000 + start + i for i in range(n)], unit="s", utc=True),
            "latency_s": [0.001 * (start + i) for i in range(n)],
            "target": ["t"] * n,
        }
    )


class TestRunBundle:
    def test_create_layout_and_spec(self, tmp_path):
        """create() makes runs/<utc-time>-<name>/ with spec.json; load() rebuilds the FleetSpec."""
        spec = FleetSpec(name="demo")
        b = RunBundle.create(root=tmp_path, name="my run", spec=spec)
        assert b.path.parent == tmp_path and b.path.name.endswith("-my-run")
        assert RunBundle.load(b.path).spec == spec
        b2 = RunBundle.create(root=tmp_path, name="my run")
        assert b2.path != b.path and RunBundle.load(b2.path).spec is None

    def test_append_finalize_load(self, tmp_path):
        """Appended parts are readable before and after finalize(), which merges them into one file."""
        b = RunBundle.create(root=tmp_path, name="r")
        b.append_requests(_rows(0, 3))
        b.append_requests(_rows(3, 2))
        b.append_intervals(
            pd.DataFrame({"interval_start": pd.to_datetime([0], unit="s", utc=True), "ok": [5]})
        )
        assert len(RunBundle.load(b.path).requests) == 5
        b.finalize()
        assert (b.path / "requests.parquet").exists() and not (b.path / "requests.parts").exists()
        b.append_requests(_rows(5, 1))
        loaded = RunBundle.load(b.path)
        assert list(loaded.requests["latency_s"].round(3)) == [0.0, 0.001, 0.002, 0.003, 0.004, 0.005]
        b.finalize()
        assert len(RunBundle.load(b.path).requests) == 6

    def test_interrupted_bundle_still_loads(self, tmp_path):
        """A crash mid-write (stray .tmp file, no consolidated file, no summary) still loads every whole part."""
        b = RunBundle.create(root=tmp_path, name="crash")
        b.append_requests(_rows(0, 4))
        parts = b.path / "requests.parts"
        (parts / ".part-000001.parquet.123.tmp").write_bytes(b"PAR1 half written")
        (b.path / ".requests.parquet.9.tmp").write_bytes(b"garbage")
        loaded = RunBundle.load(b.path)
        assert len(loaded.requests) == 4 and loaded.summary == {} and loaded.metrics.empty
        assert "requests=4" in repr(loaded)

    def test_interrupted_finalize_no_duplicates(self, tmp_path):
        """If finalize() dies after writing the merged file but before deleting parts, rows are not doubled."""
        b = RunBundle.create(root=tmp_path, name="f")
        b.append_requests(_rows(0, 3))
        saved = {p.name: p.read_bytes() for p in (b.path / "requests.parts").iterdir()}
        b.finalize()
        (b.path / "requests.parts").mkdir()
        for name, data in saved.items():  # the parts "survived" the crash
            (b.path / "requests.parts" / name).write_bytes(data)
        assert len(RunBundle.load(b.path).requests) == 3
        b2 = RunBundle(b.path)
        b2.finalize()
        assert len(RunBundle.load(b.path).requests) == 3

    def test_json_metrics_events(self, tmp_path):
        """write_json writes strict JSON (NaN -> null); metrics and events round-trip through parquet."""
        b = RunBundle.create(root=tmp_path, name="j")
        b.write_json("summary", {"p99_s": float("nan"), "n": 3})
        assert json.loads((b.path / "summary.json").read_text()) == {"n": 3, "p99_s": None}
        b.write_metrics(pd.DataFrame({"metric": ["RequestCount"], "value": [1.0]}))
        b.write_events(pd.DataFrame({"kind": ["launch"]}))
        loaded = RunBundle.load(b.path)
        assert loaded.summary["n"] == 3 and len(loaded.metrics) == 1 and len(loaded.events) == 1
        assert not [p for p in os.listdir(b.path) if p.endswith(".tmp")]

    def test_load_missing_folder(self, tmp_path):
        """Loading a folder that does not exist raises MlopsLbError."""
        with pytest.raises(MlopsLbError):
            RunBundle.load(tmp_path / "nope")

    def test_reopened_bundle_appends_after_finalize_are_kept(self, tmp_path):
        """A RunBundle reopened on a finalized folder names new parts past the merged ones, so none is lost."""
        b = RunBundle.create(root=tmp_path, name="reopen")
        b.append_requests(_rows(0, 3))
        b.finalize()
        again = RunBundle(b.path)
        again.append_requests(_rows(3, 2))
        assert len(RunBundle.load(b.path).requests) == 5
        again.finalize()
        assert len(RunBundle.load(b.path).requests) == 5

    def test_finalize_concurrent_with_appends_loses_nothing(self, tmp_path):
        """finalize() racing appends from another thread (the collector) neither breaks an append nor drops rows."""
        import threading

        b = RunBundle.create(root=tmp_path, name="race")
        errors: list[BaseException] = []
        done = threading.Event()

        def writer() -> None:
            try:
                for i in range(150):
                    b.append_requests(_rows(i, 1))
            except BaseException as exc:  # pragma: no cover - the failure being pinned
                errors.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=writer)
        t.start()
        while not done.is_set():
            b.finalize()
        t.join()
        b.finalize()
        assert errors == []
        assert len(RunBundle.load(b.path).requests) == 150
