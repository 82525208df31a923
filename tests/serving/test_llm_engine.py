"""The LLM emulator's engine model on a virtual clock: prefill, decode slowdown, continuous batching, queueing."""

from __future__ import annotations

import pytest

from mlops_lb.errors import SpecError
from mlops_lb.serving.llm_engine import EngineParams, Seq, StepScheduler, simulate


class TestTiming:
    def test_one_request_alone(self):
        """Alone: the first token after prompt x prefill, then one every decode_ms_per_token."""
        p = EngineParams(prefill_ms_per_token=0.5, decode_ms_per_token=10, decode_slowdown_per_seq=0.5)
        (t,) = simulate([(1.0, 100, 4)], p)
        assert t.ttft_s == pytest.approx(0.05)
        assert t.itl_s == pytest.approx([0.01, 0.01, 0.01])

    def test_decode_slows_with_sequences_decoding_at_once(self):
        """With n decoding together each step lasts decode x (1 + slowdown x (n - 1))."""
        p = EngineParams(
            max_num_seqs=8, prefill_ms_per_token=0, decode_ms_per_token=10, decode_slowdown_per_seq=0.25
        )
        timelines = simulate([(0.0, 10, 6)] * 4, p)
        for t in timelines:
            assert t.itl_s == pytest.approx([0.01 * (1 + 0.25 * 3)] * 5)
        assert p.decode_s(4) == pytest.approx(0.0175)

    def test_prefill_of_a_newcomer_stalls_the_running_batch_once(self):
        """A request joining mid-stream costs the running ones one longer step (its prefill), then steps widen."""
        p = EngineParams(prefill_ms_per_token=1.0, decode_ms_per_token=10, decode_slowdown_per_seq=0.1)
        first, second = simulate([(0.0, 10, 10), (0.025, 50, 3)], p)
        gaps = first.itl_s
        assert gaps[0] == pytest.approx(0.01) and gaps[1] == pytest.approx(0.01)
        # The step in which the second is admitted: 50 ms of prefill plus one decode step of the first.
        assert max(gaps) == pytest.approx(0.05 + 0.01)
        assert second.ttft_s == pytest.approx(0.030 - 0.025 + 0.06)
        assert second.itl_s == pytest.approx([0.011, 0.011])


class TestBatching:
    def test_requests_beyond_max_num_seqs_queue(self):
        """The third of three simultaneous requests starts only when one of the two running finishes."""
        p = EngineParams(
            max_num_seqs=2, prefill_ms_per_token=1, decode_ms_per_token=10, decode_slowdown_per_seq=0
        )
        a, b, c = simulate([(0.0, 10, 5)] * 3, p)
        assert a.token_times_s == pytest.approx([0.02, 0.03, 0.04, 0.05, 0.06])  # both prefilled in one step
        assert a.token_times_s == b.token_times_s
        assert c.ttft_s == pytest.approx(0.06 + 0.01)  # admitted once a slot is free, then its own prefill

    def test_ttft_climbs_with_the_queue(self):
        """An overload (arrivals faster than the engine serves) gives each later request a longer TTFT."""
        p = EngineParams(max_num_seqs=2)
        ts = simulate([(i * 0.05, 128, 64) for i in range(20)], p)
        ttfts = [t.ttft_s for t in ts]
        assert ttfts[-1] > 10 * ttfts[0]
        assert all(len(t.token_times_s) == 64 for t in ts)

    def test_continuous_batching_admits_at_any_step(self):
        """A short request finishing frees its slot for the waiting one at once, not at the end of the batch."""
        p = EngineParams(
            max_num_seqs=2, prefill_ms_per_token=0, decode_ms_per_token=10, decode_slowdown_per_seq=0
        )
        long, _short, waiting = simulate([(0.0, 1, 50), (0.0, 1, 2), (0.0, 1, 2)], p)
        assert waiting.token_times_s[0] < long.token_times_s[10]

    def test_an_aborted_sequence_frees_its_slot(self):
        """A sequence aborted while waiting is skipped; one aborted while running leaves at the next plan."""
        s = StepScheduler(EngineParams(max_num_seqs=1))
        a, b, c = Seq(1, 5), Seq(1, 5), Seq(1, 5)
        for q in (a, b, c):
            s.add(q)
        step = s.plan()
        assert step is not None and step.prefilled == (a,)
        s.apply(step)
        a.aborted = True
        b.aborted = True
        step = s.plan()
        assert step is not None and step.prefilled == (c,) and step.decoded == ()

    def test_idle_engine_plans_nothing(self):
        """No sequence: no step (the server then sleeps on an event, it does not poll)."""
        assert StepScheduler(EngineParams()).plan() is None


class TestParams:
    @pytest.mark.parametrize(
        ("kw", "text"),
        [
            ({"max_num_seqs": 0}, "max_num_seqs must be between 1 and 100000 (got 0)"),
            ({"decode_ms_per_token": -1}, "decode_ms_per_token must be between 0 and 100000 (got -1)"),
            ({"prefill_ms_per_token": float("nan")}, "prefill_ms_per_token must be a finite number"),
            ({"max_model_len": 1.5}, "max_model_len must be an integer (got 1.5)"),
            ({"seed": True}, "seed must be an integer (got True)"),
        ],
    )
    def test_bad_values_name_the_field(self, kw, text):
        """Each bad parameter is a SpecError naming the field, the range and the value."""
        with pytest.raises(SpecError, match=text.replace("(", r"\(").replace(")", r"\)")):
            EngineParams(**kw)
