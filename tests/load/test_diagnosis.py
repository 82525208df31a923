"""LoadResult's diagnosis: invalid_kinds parallel to invalid_reasons, each reason naming its fix.

The decision is a function of the records and histograms, so most cases are built directly; the two that
depend on the engine's own accounting (starved sends, server errors) run against the real test target."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_lb.load import constant, run_load
from mlops_lb.load._engine import ERROR_KINDS, fold
from mlops_lb.load.result import LoadResult, empty_hists

BODY = [b'{"rows": [[1.0, 2.0]]}']


def _result(
    n=1000, sent=None, err=None, status=200, lag_s=0.0005, starved=0, workers=1, lost=None, cluster=None
):
    sent_mask = np.ones(n, bool) if sent is None else sent
    intended = np.arange(n) / 100.0
    rec = {
        "index": np.arange(n),
        "intended": intended,
        "sent": np.where(sent_mask, intended + lag_s, np.nan),
        "done": intended + 0.01,
        "status": np.full(n, status, np.int16),
        "err": np.zeros(n, np.int8) if err is None else err,
        "bytes": np.full(n, 2),
        "target": np.full(n, "t", dtype=object),
        "worker": np.zeros(n, np.int16),
    }
    hists = empty_hists()
    fold(hists[2], np.full(int(sent_mask.sum()), lag_s))
    return LoadResult(url="http://x/", profile=constant(100, n / 100), epoch=0.0, records=rec, intervals=[],
                      hists=hists, scheduled=n, due=n, duration_s=n / 100, stopped=False, stop_reason="",
                      max_lag_p99_s=0.003, connections=32, timeout_s=10.0, starved=starved, workers=workers,
                      lost_workers=lost, cluster=cluster)  # fmt: skip


class TestKinds:
    def test_clean_run(self):
        """No lag, everything sent and answered: valid, no kinds."""
        r = _result()
        assert r.valid and r.invalid_kinds == [] and r.summary()["invalid_kinds"] == []

    def test_generator_lag_while_connections_were_free(self):
        """Lag with no starved sends: the generator, with workers= named."""
        r = _result(lag_s=0.02, starved=0)
        assert r.invalid_kinds == ["generator_lag"]
        assert "workers= (now 1)" in r.invalid_reasons[0] and "connections were free" in r.invalid_reasons[0]

    def test_generator_lag_of_ray_shards_names_shards(self):
        """On a Ray cluster the generators are shards: the fix names shards=, not worker processes."""
        r = _result(lag_s=0.02, starved=0, workers=4, cluster="ray")
        assert r.invalid_kinds == ["generator_lag"]
        assert "shards= (now 4" in r.invalid_reasons[0] and "workers=" not in r.invalid_reasons[0]

    def test_connections_exhausted(self):
        """Lag while most sends waited for a connection: fleet saturated, raise connections= (now 32)."""
        r = _result(lag_s=0.02, starved=600)
        assert r.invalid_kinds == ["connections_exhausted"]
        assert "fleet saturated" in r.invalid_reasons[0] and "connections= (now 32)" in r.invalid_reasons[0]

    def test_no_connection_is_starvation_not_under_sending(self):
        """Requests given up for want of a connection: connections_exhausted, and not also under_sent."""
        err = np.zeros(1000, np.int8)
        err[:100] = ERROR_KINDS.index("no_connection")
        sent = np.ones(1000, bool)
        sent[:100] = False
        r = _result(sent=sent, err=err)
        assert r.invalid_kinds == ["connections_exhausted"]

    def test_server_not_answering(self):
        """Timeouts beyond 1 %: the server's side, named as such."""
        err = np.zeros(1000, np.int8)
        err[:50] = ERROR_KINDS.index("timeout")
        status = 200
        r = _result(err=err, status=status)
        assert r.invalid_kinds[0] == "server_not_answering" and "not the generator" in r.invalid_reasons[0]

    def test_under_sent(self):
        """Under 99 % sent without a server-side cause: under_sent, naming workers= and connections=."""
        sent = np.ones(1000, bool)
        sent[:50] = False
        r = _result(sent=sent)
        assert r.invalid_kinds == ["under_sent"] and "workers= (now 1)" in r.invalid_reasons[0]

    def test_lost_worker_is_under_sent(self):
        r = _result(lost={1: 300}, workers=2)
        assert r.invalid_kinds == ["under_sent"] and "worker 1 died" in r.invalid_reasons[0]

    def test_kinds_parallel_reasons(self):
        """Several causes at once: one kind per reason, in the same order."""
        err = np.zeros(1000, np.int8)
        err[:50] = ERROR_KINDS.index("http_5xx")
        r = _result(err=err, lag_s=0.02)
        assert r.invalid_kinds == ["generator_lag", "server_errors"]
        assert len(r.invalid_reasons) == 2 and "5xx" in r.invalid_reasons[1]


class TestAgainstTheTarget:
    def test_server_errors(self, target):
        """Every answer a 500: server_errors, the fleet's own failures."""
        r = run_load(
            f"{target.base}/500", constant(50, 1), BODY, connections=2, progress=False, max_lag_p99_s=10
        )
        assert "server_errors" in r.invalid_kinds

    @pytest.mark.parametrize("connections", [2])
    def test_stall_with_few_connections_is_fleet_saturation(self, target_factory, connections):
        """A 1 s server stall on 2 connections: the backlog waits for connections, so the lag is the fleet's."""
        t = target_factory(stall_at=0.5, stall_s=1.0)
        r = run_load(f"{t.base}/ok", constant(200, 2), BODY, connections=connections, progress=False,
                     max_lag_p99_s=0.1)  # fmt: skip
        assert "connections_exhausted" in r.invalid_kinds, r.invalid_reasons
        assert "generator_lag" not in r.invalid_kinds
        assert f"connections= (now {connections})" in " ".join(r.invalid_reasons)
