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


@pytest.fixture
def small_fs(tmp_path):
    """A tiny tmpfs (mounted as root; the test is skipped where mount is not permitted) and a filler to fill it.

    ``fill(free)`` leaves about ``free`` bytes: a disk that fills up mid-run, reproducibly.
    """
    import shutil
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"mount not permitted here: {res.stderr.decode().strip()}")

    def fill(free: int) -> None:
        st = os.statvfs(mnt)
        avail = st.f_bavail * st.f_frsize
        with open(mnt / "filler", "wb") as fh:
            fh.write(b"\0" * max(avail - free, 0))

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class TestStorageErrors:
    def test_root_that_is_a_file(self, tmp_path):
        """A bundle root that is a file: StorageError (an MlopsLbError) naming the path and the cause."""
        from mlops_lb.errors import StorageError

        root = tmp_path / "runs"
        root.write_text("not a folder")
        with pytest.raises(StorageError) as ei:
            RunBundle.create(root=root, name="x")
        assert isinstance(ei.value, MlopsLbError)
        assert str(root) in str(ei.value) and "not a directory" in str(ei.value).lower()
        assert ei.value.path == root and isinstance(ei.value.cause, OSError)

    def test_read_only_root(self, tmp_path):
        """A read-only filesystem (root ignores file modes, so a read-only mount): StorageError naming the path."""
        import subprocess

        from mlops_lb.errors import StorageError

        mnt = tmp_path / "ro"
        mnt.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True
        )
        if res.returncode != 0:
            pytest.skip(f"mount not permitted here: {res.stderr.decode().strip()}")
        try:
            with pytest.raises(StorageError) as ei:
                RunBundle.create(root=mnt / "runs", name="x")
            assert str(mnt / "runs") in str(ei.value) and "read-only" in str(ei.value).lower()
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

    def test_full_disk_append_and_finalize(self, small_fs):
        """ENOSPC on append and on finalize: StorageError with the part's path; whatever reached disk loads."""
        from mlops_lb.errors import StorageError

        mnt, fill = small_fs
        b = RunBundle.create(root=mnt, name="full")
        b.append_requests(_rows(0, 50))
        fill(0)
        with pytest.raises(StorageError) as ei:
            for i in range(200):
                b.append_requests(_rows(50 + i * 1000, 1000))
        assert "requests.parts" in str(ei.value) and ei.value.errno == 28
        with pytest.raises(StorageError):
            b.finalize()
        assert len(RunBundle.load(b.path).requests) >= 50
        assert not list((b.path / "requests.parts").glob("*.tmp"))  # no half-written file left behind
