"""The open-loop engine against real loopback servers: counts, errors, stalls, Stop, workers, bundles."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import numpy as np
import pandas as pd
import pytest

from mlops_lb.bundle import RunBundle
from mlops_lb.load import LoadResult, constant, run_load, start_load, sweep
from mlops_lb.load.result import INTERVAL_COLUMNS, REQUEST_COLUMNS

# Most tests here pin counts, kinds, records and files with a lax lag bound (LAX): they run two at a time. The
# three marked `serial` bound a latency or a rate from above, which a neighbour test could push past its bound.

BODY = [b'{"rows": [[1.0, 2.0]]}']
# The test machine is shared; these tests pin behaviour, not the generator's timing precision.
LAX = {"progress": False, "max_lag_p99_s": 10.0}


class TestCountsAndClassification:
    def test_ok_run_counts_match_server(self, target):
        """Every scheduled request is sent once, answered 200, tagged with X-Target-Id, and the server saw them all."""
        r = run_load(f"{target.base}/ok", constant(200, 1.5), BODY, connections=4, **LAX)
        s = r.summary()
        assert s["scheduled"] == 300 and s["requests"] == 300 and s["responses"] == 300
        assert s["errors"] == 0
        assert target.count() == 300
        df = r.requests()
        assert list(df.columns) == list(REQUEST_COLUMNS)
        assert (df["status"] == 200).all() and (df["target"] == "t-1").all() and (df["error"] == "").all()
        assert (df["bytes"] > 0).all()
        assert str(df["intended_at"].dtype) == "datetime64[ns, UTC]"
        assert np.allclose(df["latency_s"], df["service_s"] + df["lag_s"])
        iv = r.intervals()
        assert list(iv.columns) == list(INTERVAL_COLUMNS)
        assert iv["ok"].sum() == 300 and iv["sent"].sum() == 300
        assert iv["step_rps"].isna().all()

    @pytest.mark.parametrize(
        ("path", "kind", "status"),
        [("/500", "http_5xx", 500), ("/404", "http_4xx", 404), ("/close", "reset", 0)],
    )
    def test_error_kinds(self, target, path, kind, status):
        """5xx, 4xx and a connection closed mid-response are classified by kind, with the status kept."""
        r = run_load(f"{target.base}{path}", constant(50, 1), BODY, connections=2, **LAX)
        df = r.requests()
        assert (df["error"] == kind).all(), df["error"].value_counts()
        assert (df["status"] == status).all()
        assert r.summary()["errors_by_kind"][kind] == 50
        assert r.intervals()[f"err_{kind}"].sum() == 50

    def test_timeout(self, target):
        """A server that never answers gives `timeout` errors after timeout_s: from the send while the run goes,
        and at the latest at the run's end (last intended send + timeout_s), so always timeout_s after the
        intended send."""
        r = run_load(f"{target.base}/hang", constant(10, 0.5), BODY, connections=5, timeout_s=0.3, **LAX)
        df = r.requests()
        assert (df["error"] == "timeout").all()
        assert (df["latency_s"] >= 0.3).all()
        assert (df["service_s"].iloc[:-1] >= 0.3).all()  # the last one may be cut by the run's end

    def test_connect_refused(self, closed_port):
        """Nothing listening: every request is a `connect` error, none hang."""
        r = run_load(f"http://127.0.0.1:{closed_port}/x", constant(20, 0.5), BODY, connections=2, **LAX)
        assert (r.requests()["error"] == "connect").all()
        assert r.summary()["errors"] == 10


class TestCoordinatedOmission:
    @pytest.mark.serial  # uncorrected p99 < 0.3 s and a connections_exhausted verdict
    def test_stall_shows_in_corrected_not_uncorrected(self, target_factory):
        """A 1 s server stall at a fixed rate: corrected p99 shows ~1 s, uncorrected (service time) stays small."""
        t = target_factory(stall_at=1.0, stall_s=1.0)
        r = run_load(f"{t.base}/ok", constant(200, 4), BODY, connections=2, progress=False, max_lag_p99_s=0.1)
        s = r.summary()
        assert s["requests"] == 800 and s["errors"] == 0
        assert s["p99_s"] > 0.8
        assert s["p99_uncorrected_s"] < 0.3
        assert s["max_uncorrected_s"] > 0.8  # the two stalled requests themselves
        assert not r.valid and r.invalid_kinds == ["connections_exhausted"]  # the backlog: the fleet held it
        assert "INVALID" in repr(r)

    @pytest.mark.serial  # achieved rps < 0.7 x offered
    def test_achieved_rate_counts_the_time_responses_really_took(self, target_factory):
        """Answers held past the schedule's end stretch the run: achieved rps falls below offered, not equal to it."""
        t = target_factory(stall_at=0.5, stall_s=1.5)  # answers due in [0.5, 2.0) s arrive at 2.0 s
        r = run_load(
            f"{t.base}/ok", constant(100, 1), BODY, connections=64, progress=False, max_lag_p99_s=1.0
        )
        s = r.summary()
        assert s["responses"] == 100 and s["offered_rps"] == pytest.approx(100, rel=0.05)
        assert s["achieved_rps"] < 0.7 * s["offered_rps"]  # 100 responses over ~2 s, not over the 1 s plan


class TestStop:
    def test_stop_event_keeps_partial_result(self, target):
        """Setting `stop` ends the run early; the partial result is marked stopped and matches the server's count."""
        stop = threading.Event()
        threading.Timer(1.0, stop.set).start()
        t0 = time.monotonic()
        r = run_load(f"{target.base}/ok", constant(100, 30), BODY, connections=4, stop=stop, **LAX)
        assert time.monotonic() - t0 < 10
        s = r.summary()
        assert r.stopped and s["stopped"] and s["stop_reason"] == "stop requested"
        assert 50 <= s["requests"] < 3000
        assert s["responses"] == target.count()
        assert r.valid  # due requests are counted up to the stop, not the whole schedule
        assert len(r.requests()) == 3000  # unsent requests are kept with NaT sent_at
        assert r.requests()["sent_at"].notna().sum() == s["requests"]

    def test_keyboard_interrupt_returns_partial_result(self, target):
        """Ctrl-C during run_load returns the partial result (stop_reason KeyboardInterrupt) with every record."""
        threading.Timer(1.0, _thread.interrupt_main).start()
        r = run_load(f"{target.base}/ok", constant(100, 30), BODY, connections=4, **LAX)
        assert r.stopped and r.stop_reason == "KeyboardInterrupt"
        assert r.summary()["responses"] == target.count() > 0

    def test_start_load_handle(self, target):
        """start_load returns at once; latest_intervals grows; stop() ends it with a stopped result."""
        rows: list[dict] = []
        run = start_load(f"{target.base}/ok", constant(100, 30), BODY, connections=4, on_interval=rows.append,
                         interval_s=0.25, **LAX)  # fmt: skip
        deadline = time.monotonic() + 15
        while len(run.latest_intervals()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not run.done
        run.stop()
        r = run.result(timeout=15)
        assert run.done and r.stopped
        assert len(rows) == len(r.intervals()) >= 3
        assert set(rows[0]) == set(INTERVAL_COLUMNS)


class TestValidity:
    def test_unmeetable_schedule_is_invalid(self, target):
        """An absurd rate on one connection cannot be sent on time: valid=False with reasons, INVALID in repr."""
        r = run_load(f"{target.base}/ok", constant(50_000, 0.3), BODY, connections=1, timeout_s=1.0,
                     progress=False)  # fmt: skip
        assert not r.valid
        assert any("late" in x for x in r.invalid_reasons)
        assert "INVALID" in repr(r) and "INVALID" in r._repr_html_()


class TestWorkersAndLoops:
    def test_two_workers_merge(self, target):
        """workers=2 splits the schedule (interleaved) over two processes and merges records and intervals."""
        r = run_load(f"{target.base}/ok", constant(200, 1.5), BODY, connections=4, workers=2, **LAX)
        df = r.requests()
        assert len(df) == 300 and set(df["worker"]) == {0, 1}
        assert (df["error"] == "").all()
        assert df["intended_at"].is_monotonic_increasing
        assert r.intervals()["ok"].sum() == 300 == target.count()
        assert r.histogram().get_total_count() == 300

    def test_killed_worker_keeps_other_records(self, target):
        """Killing one worker process keeps the other's records; the lost share is reported and the run is invalid."""
        import os
        import signal

        run = start_load(f"{target.base}/ok", constant(100, 4), BODY, connections=4, workers=2, **LAX)
        deadline = time.monotonic() + 30
        while len(run.latest_intervals()) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(run.worker_pids[1], signal.SIGKILL)
        r = run.result(timeout=60)
        df = r.requests()
        assert (df["worker"] == 0).sum() == 200
        assert 1 in r.lost_workers and r.lost_workers[1] > 0
        assert not r.valid and any("worker 1 died" in x for x in r.invalid_reasons)

    def test_inside_running_event_loop(self, target):
        """run_load works while an asyncio loop is running in this thread (a Jupyter cell)."""

        async def cell() -> LoadResult:
            return run_load(f"{target.base}/ok", constant(50, 0.5), BODY, connections=2, **LAX)

        r = asyncio.run(cell())
        assert r.summary()["responses"] == 25


class TestBundleAndSweep:
    def test_interrupt_after_the_collector_still_merges_the_bundle(self, target, tmp_path, monkeypatch):
        """Ctrl-C that lands after the run's records are in (while building the result) leaves a merged bundle."""
        from mlops_lb.load import runner

        def interrupted(self):  # fault injection at the seam: the interrupt arrives after collection
            raise KeyboardInterrupt

        monkeypatch.setattr(runner._Run, "_result", interrupted)
        b = RunBundle.create(root=tmp_path, name="load")
        with pytest.raises(KeyboardInterrupt):
            run_load(f"{target.base}/ok", constant(50, 1), BODY, connections=2, bundle=b, **LAX)
        assert not (b.path / "requests.parts").exists()  # merged, not left in parts
        assert len(RunBundle.load(b.path).requests) == 50

    def test_bundle_appended_during_run(self, target, tmp_path):
        """Interval and request part files appear while the run goes; the finished bundle loads with one call."""
        b = RunBundle.create(root=tmp_path, name="load")
        seen: list[int] = []

        def on_interval(row: dict) -> None:
            parts = b.path / "intervals.parts"
            seen.append(len(list(parts.glob("part-*.parquet"))) if parts.exists() else 0)

        r = run_load(f"{target.base}/ok", constant(100, 2), BODY, connections=2, bundle=b, interval_s=0.5,
                     on_interval=on_interval, **LAX)  # fmt: skip
        assert seen[1] >= 1  # earlier intervals were already on disk while later ones were being measured
        loaded = RunBundle.load(b.path)
        assert len(loaded.requests) == 200 and len(loaded.intervals) == len(r.intervals())
        assert loaded.summary["requests"] == 200
        assert loaded.load_settings is not None and loaded.load_settings["profile"]["kind"] == "constant"
        assert not (b.path / "requests.parts").exists()
        pd.testing.assert_series_equal(
            loaded.requests["latency_s"].reset_index(drop=True), r.requests()["latency_s"], check_names=False
        )

    @pytest.mark.serial  # the first step's p99 must stay under 0.2 s
    def test_sweep_stops_at_broken_bound(self, target_factory):
        """A sweep stops after the first step whose p99 breaks the SLO, and records each step and why it stopped."""
        t = target_factory(stall_at=1.2, stall_s=0.8)
        p = sweep(20, 20, step_s=1.0, max_rps=200, slo_p99_s=0.2)
        r = run_load(f"{t.base}/ok", p, BODY, connections=2, interval_s=0.5, **LAX)
        steps = r.steps()
        assert list(steps.columns) == ["rate", "p99_s", "error_rate", "passed"]
        assert steps["passed"].iloc[0] and not steps["passed"].iloc[-1]
        assert len(steps) < len(p.rates)
        assert r.stopped and "sweep bound broken" in r.stop_reason
        assert r.intervals()["step_rps"].notna().all()
        spectrum = r.percentile_spectrum()
        assert spectrum["latency_s"].is_monotonic_increasing


class TestRecordsOnDisk:
    def test_records_stream_to_part_files_and_read_back(self, target):
        """Without a bundle the records go to Arrow part files as the run goes (one per interval message), the
        collector keeps only totals, and requests() reads every row back; the folder goes with the result."""
        import gc

        r = run_load(f"{target.base}/ok", constant(200, 2), BODY, connections=4, interval_s=0.25, **LAX)
        store = r._store
        assert store is not None and store.folder is not None and len(store.parts) >= 4
        assert all(p.exists() and p.parent == store.folder for p in store.parts)
        assert store.memory == []
        df = r.requests()
        assert len(df) == 400 and df["intended_at"].is_monotonic_increasing
        assert str(df["intended_at"].dtype) == "datetime64[ns, UTC]"
        assert r.summary()["responses"] == 400 == target.count()
        folder = store.folder
        del r, store, df
        gc.collect()
        assert not folder.exists()

    def test_requests_filter_by_time_range(self, target):
        """requests(start, end) keeps start <= intended_at < end, in seconds after started_at or as timestamps."""
        r = run_load(f"{target.base}/ok", constant(100, 2), BODY, connections=4, **LAX)
        part = r.requests(0.5, 1.0)
        assert len(part) == 50
        whole = r.requests()
        lo, hi = whole["intended_at"].iloc[50], whole["intended_at"].iloc[100]
        assert (part["intended_at"] >= lo).all() and (part["intended_at"] < hi).all()
        same = r.requests(start=lo, end=hi)
        assert len(same) == 50 and same["intended_at"].equals(part["intended_at"])
        assert len(r.requests(start=1.5)) == 50 and len(r.requests(end=0.25)) == 25
