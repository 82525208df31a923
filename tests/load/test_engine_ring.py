"""The engine's bounded memory: the schedule is loaded a chunk at a time into a ring of request slots.

Chunks and the ring are shrunk here (``CHUNK=40``, ``RING_MIN=128``) so that a run of a few thousand requests
wraps the ring dozens of times, grows it under a stall, and stops with most of its schedule never loaded: the
paths a 600 s run at 20k rps takes with the real sizes.
"""

from __future__ import annotations

import logging
import re
import threading

import numpy as np
import pytest

from mlops_lb.load import _engine, constant, run_load, sharding

# serial: a late share and a wall-clock deadline (scripts/test.sh runs serial tests one at a time)
pytestmark = pytest.mark.serial

BODY = [b'{"rows": [[1.0, 2.0]]}']
LAX = {"progress": False, "max_lag_p99_s": 10.0}


@pytest.fixture
def small_ring(monkeypatch):
    monkeypatch.setattr(sharding, "CHUNK", 40)  # where ScheduleShare draws its chunks
    monkeypatch.setattr(_engine, "RING_MIN", 128)
    monkeypatch.setattr(_engine, "FEED_AHEAD", 32)


def _ring_sizes(caplog) -> list[int]:
    """The ring size before each growth the engine logged."""
    found = (re.search(r"ring grew from (\d+) to", r.getMessage()) for r in caplog.records)
    return [int(m.group(1)) for m in found if m]


def _offsets(r, df=None) -> np.ndarray:
    df = r.requests() if df is None else df
    return np.sort((df["intended_at"] - r.started_at).dt.total_seconds().to_numpy())


def test_every_request_once_through_a_wrapping_ring(small_ring, target, caplog):
    """2,400 requests through 128 slots: each sent once, in schedule order, with its own intended time."""
    caplog.set_level(logging.DEBUG, logger="mlops_lb.load._engine")
    p = constant(800, 3, arrival="poisson", seed=5)
    r = run_load(f"{target.base}/ok", p, BODY, connections=8, **LAX)
    df = r.requests()
    assert len(df) == len(p.schedule()) == r.summary()["responses"] == target.count()
    assert np.allclose(_offsets(r, df), p.schedule(), atol=1e-6)  # each intended time once
    assert _ring_sizes(caplog) == []  # a fast server never needs more than the smallest ring
    iv = r.intervals()
    assert iv["sent"].sum() == len(df)
    # each whole 1 s interval offers the requests intended in it, counted on the ring
    want = np.histogram(p.schedule(), bins=[0, 1, 2, 3])[0]
    assert iv["offered_rps"].to_numpy()[:3].tolist() == want.tolist()


def test_a_stall_grows_the_ring_and_loses_nothing(small_ring, target_factory, caplog):
    """A 1 s stall keeps ~400 requests open (waiting or in flight): the ring doubles, every record survives."""
    caplog.set_level(logging.DEBUG, logger="mlops_lb.load._engine")
    t = target_factory(stall_at=0.5, stall_s=1.0)
    p = constant(400, 3)
    r = run_load(f"{t.base}/ok", p, BODY, connections=16, timeout_s=5, **LAX)
    df = r.requests()
    assert len(df) == 1200 and r.summary()["responses"] == t.count() == 1200
    assert np.allclose(_offsets(r, df), p.schedule(), atol=1e-6)
    grew = _ring_sizes(caplog)
    assert grew and grew[0] == 128  # grew from the smallest ring, and only while the stall held requests
    # the stall shows in the corrected latency of requests intended during it
    late = df[(df["intended_at"] - r.started_at).dt.total_seconds().between(0.6, 1.3)]
    assert late["latency_s"].median() > 0.2


def test_stop_keeps_the_never_loaded_remainder_as_unsent(small_ring, target):
    """A Stop after 1 s of 30 s: the 29 s never loaded into the ring still come back, as unsent records."""
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    r = run_load(f"{target.base}/ok", constant(100, 30), BODY, connections=4, stop=stop, **LAX)
    df = r.requests()
    assert r.stopped and len(df) == 3000
    assert np.allclose(_offsets(r, df), constant(100, 30).schedule(), atol=1e-6)
    assert df["sent_at"].notna().sum() == r.summary()["requests"] == target.count()
    assert r.valid


def test_worker_processes_draw_poisson_shares(target):
    """workers=2 splits a Poisson schedule by thinning (each share Poisson), together exactly the schedule."""
    p = constant(600, 2, arrival="poisson", seed=9)
    r = run_load(f"{target.base}/ok", p, BODY, connections=8, workers=2, **LAX)
    df = r.requests()
    sched = p.schedule()
    assert np.allclose(_offsets(r, df), sched, atol=1e-6)
    for w in (0, 1):
        assert np.allclose(
            _offsets(r, df[df["worker"] == w]), sched[sharding.shard_indices(p, w, 2)], atol=1e-6
        )


def test_records_reach_disk_while_the_run_goes(target):
    """Each interval's records are written as a part file during the run, none are kept in memory, and a time
    window reads back only its rows."""
    import time

    from mlops_lb.load import start_load

    p = constant(200, 3)
    run = start_load(f"{target.base}/ok", p, BODY, connections=4, interval_s=0.5, **LAX)
    deadline = time.monotonic() + 20
    while run._run._store is None or len(run._run._store.parts) < 2:
        assert time.monotonic() < deadline and not run.done, "no record part written while the run went on"
        time.sleep(0.05)
    assert not run.done  # parts exist before the end
    r = run.result(timeout=30)
    assert r._rec is None and len(r._store.parts) >= 6 and not r._store.memory
    window = r.requests(1.0, 2.0)
    sched = p.schedule()
    assert len(window) == int(((sched >= 1.0) & (sched < 2.0)).sum()) == 200
