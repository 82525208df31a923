"""Streamed responses (SSE and chunked) against a server with a KNOWN token schedule (tests/load/_server.py).

The server writes the first token ``ttft`` after it read the request and then one every ``gap`` (optionally one
held back by a stall), so the truth of TTFT, ITL, TPOT and the token count is known; the engine's numbers are
checked against it with bounds wide enough for a loaded machine (timer slack only ever adds time).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_lb.bundle import RunBundle
from mlops_lb.load import constant, run_load
from mlops_lb.load.result import INTERVAL_COLUMNS, REQUEST_COLUMNS

# serial: TTFT/ITL windows of a few tens of ms (scripts/test.sh runs serial tests one at a time)
pytestmark = pytest.mark.serial

BODY = [b'{"model": "m", "stream": true}']
LAX = {"progress": False, "max_lag_p99_s": 10.0}
# What a busy 2-core machine (load average 10) may add to a server timer plus a read. A late token lengthens
# the gap before it and shortens the one after, so per-gap bounds get SLACK on both sides, means over 9 gaps a ninth.
SLACK = 0.4
# uvloop rounds timers to whole milliseconds, so the server's may fire up to 1 ms early
EARLY = 0.002


def _run(target, query, n=4, **kw):
    opts = {"connections": 4, **LAX, **kw}
    return run_load(f"{target.base}{query}", constant(n, 1), BODY, **opts)


class TestKnownSchedule:
    @pytest.mark.parametrize("split", ["0", "1"])
    def test_sse_truth_without_stall(self, target, split, tmp_path):
        """10 tokens, TTFT 0.2 s, gap 0.05 s (events split across chunks or not): TTFT, ITL, TPOT and token count
        match the schedule; a role-only first delta is not a token; everything lands in the bundle."""
        b = RunBundle.create(root=tmp_path, name="sse")
        r = _run(target, f"/sse?tokens=10&ttft=0.2&gap=0.05&split={split}", bundle=b)
        df = r.requests()
        assert list(df.columns) == list(REQUEST_COLUMNS)
        assert (df["error"] == "").all(), df["error"].value_counts()
        assert (df["output_tokens"] == 10).all()
        assert df["ttft_s"].between(0.2 - EARLY, 0.2 + SLACK).all(), df["ttft_s"]
        assert (df["ttft_uncorrected_s"] <= df["ttft_s"] + 1e-9).all()
        assert df["itl_mean_s"].between(0.05 - SLACK / 9, 0.05 + SLACK / 9).all(), df["itl_mean_s"]
        assert np.allclose(df["tpot_s"], (df["latency_s"] - df["ttft_s"]) / 9)
        s = r.summary()
        assert (
            0.2 - EARLY <= s["ttft_p50_s"] <= 0.2 + SLACK
            and 0.05 - SLACK / 9 <= s["itl_p50_s"] <= 0.05 + SLACK / 9
        )
        assert s["output_tokens"] == 40 and s["output_tokens_per_s"] == pytest.approx(40 / r.duration_s)
        iv = r.intervals()
        assert list(iv.columns) == list(INTERVAL_COLUMNS)
        assert iv["output_tokens"].sum() == 40 and iv["ttft_p50_s"].notna().any()
        loaded = RunBundle.load(b.path)
        assert (loaded.requests["output_tokens"] == 10).all() and "ttft_p99_s" in loaded.intervals
        assert loaded.summary["ttft_p50_s"] == pytest.approx(s["ttft_p50_s"])

    def test_sse_truth_with_one_second_stall(self, target):
        """The 6th token held back 1 s: ITL max and p99 show the stall, TPOT spreads it over the 9 gaps."""
        r = _run(target, "/sse?tokens=10&ttft=0.2&gap=0.05&stall_at=5&stall_s=1.0")
        df = r.requests()
        assert (df["error"] == "").all() and (df["output_tokens"] == 10).all()
        assert df["itl_max_s"].between(1.05 - SLACK / 2, 1.05 + SLACK).all(), df["itl_max_s"]
        truth_tpot = (9 * 0.05 + 1.0) / 9
        assert df["tpot_s"].between(truth_tpot - SLACK / 9, truth_tpot + SLACK / 9).all(), df["tpot_s"]
        s = r.summary()
        assert s["itl_max_s"] >= 1.05 - SLACK / 2 and s["itl_p50_s"] < 0.5  # the stall is one gap in nine
        assert s["tpot_p50_s"] == pytest.approx(truth_tpot, abs=SLACK / 9)

    def test_usage_block_replaces_the_event_count(self, target):
        """With usage.completion_tokens (stream_options.include_usage) that count is the token count."""
        r = _run(target, "/sse?tokens=5&ttft=0.1&gap=0.02&usage=25", n=2)
        df = r.requests()
        assert (df["output_tokens"] == 25).all()
        assert np.allclose(df["tpot_s"], (df["latency_s"] - df["ttft_s"]) / 24)
        assert np.allclose(df["itl_mean_s"], df["itl_mean_s"].iloc[0], atol=0.05)  # ITL stays per event

    def test_chunked_non_sse_counts_one_token_per_chunk(self, target):
        """A chunked body that is not SSE: one token per non-empty chunk."""
        r = _run(target, "/chunked?tokens=6&ttft=0.1&gap=0.03", n=2)
        df = r.requests()
        assert (df["error"] == "").all() and (df["output_tokens"] == 6).all()
        assert df["ttft_s"].between(0.1 - EARLY, 0.1 + SLACK).all()

    def test_workers_merge_stream_histograms(self, target):
        """workers=2: the stream histograms travel encoded and merge; every request keeps its tokens."""
        r = _run(target, "/sse?tokens=4&ttft=0.1&gap=0.02", n=4, workers=2)
        assert (r.requests()["output_tokens"] == 4).all()
        assert r.stream_histogram("ttft").get_total_count() == 4
        assert r.stream_histogram("itl").get_total_count() == 12

    def test_non_streamed_responses_have_no_stream_values(self, target):
        """A plain response: NaN TTFT/ITL/TPOT, 0 tokens, NaN streaming percentiles."""
        r = _run(target, "/ok", n=4)
        df = r.requests()
        assert df["ttft_s"].isna().all() and (df["output_tokens"] == 0).all()
        assert math.isnan(r.summary()["ttft_p50_s"])


class TestSlo:
    def test_goodput_counts_requests_meeting_every_bound(self, target):
        """slo bounds: TTFT 0.2 s is met, a 0.1 s TTFT is not; goodput is meeting requests per second."""
        ok = _run(target, "/sse?tokens=4&ttft=0.2&gap=0.02", slo={"ttft_s": 1.0, "tpot_s": 0.5}).summary()
        # goodput is over the span of achieved_rps: every request met the SLO, so the two are equal
        assert ok["requests_meeting_slo"] == 4 and ok["goodput_rps"] == pytest.approx(ok["achieved_rps"])
        bad = _run(target, "/sse?tokens=4&ttft=0.2&gap=0.02", slo={"ttft_s": 0.1}).summary()
        assert bad["requests_meeting_slo"] == 0 and bad["goodput_rps"] == 0

    def test_slo_is_validated(self, target):
        """An unknown SLO key is a SpecError naming it and the allowed keys, before any request."""
        from mlops_lb.errors import SpecError

        with pytest.raises(SpecError, match=r"slo\.ttfb_s.*ttft_s"):
            _run(target, "/ok", slo={"ttfb_s": 1})
        assert target.count() == 0


class TestBadStreams:
    @pytest.mark.parametrize(
        ("query", "kind"),
        [
            ("/sse?tokens=4&ttft=0.05&gap=0.02&truncate=1", "stream_truncated"),  # half an event, then close
            ("/sse?tokens=4&ttft=0.05&gap=0.02&truncate=2", "stream_truncated"),  # half an event, body ends
            ("/sse?tokens=4&ttft=0.05&gap=0.02&bad=1", "bad_event"),
            ("/sse?tokens=0&ttft=0.05", "no_tokens"),
        ],
    )
    def test_named_error_with_partial_timings(self, target, query, kind):
        """Each broken stream is a named error kind on its request; the token timings it got are kept."""
        r = _run(target, query, n=2)
        df = r.requests()
        assert (df["error"] == kind).all(), df["error"].value_counts()
        if kind != "no_tokens":
            assert (df["output_tokens"] >= 4).all() and df["ttft_s"].notna().all()
        assert r.summary()["errors_by_kind"][kind] == 2

    def test_stall_past_timeout_is_a_timeout_with_partial_timings(self, target):
        """A stream that stalls longer than timeout_s ends as `timeout`, keeping TTFT and the tokens so far;
        a stream longer than timeout_s that keeps flowing is not cut, except by the run's end (last intended
        send + timeout_s)."""
        r = _run(target, "/sse?tokens=6&ttft=0.05&gap=0.02&stall_at=2&stall_s=3", n=2, timeout_s=1.0)
        df = r.requests()
        assert (df["error"] == "timeout").all(), df["error"].value_counts()
        assert (df["output_tokens"] == 2).all() and df["ttft_s"].notna().all()
        long = run_load(f"{target.base}/sse?tokens=16&ttft=0.05&gap=0.05", constant(2, 3), BODY, timeout_s=0.6,
                        connections=4, **LAX).requests()  # fmt: skip  # 0.8 s streams at 0, 0.5, ... 2.5 s
        early = long.iloc[:4]
        assert (early["error"] == "").all() and (early["latency_s"] > 0.6).all()
        assert long["error"].iloc[-1] == "timeout"  # still flowing when the run ended at 2.5 + 0.6 s
