"""summary_rows / verdict: one reading of a run's summary for every view."""

from __future__ import annotations

from mlops_lb.summary import html_table, summary_rows, text_table, verdict


def test_verdict_names_the_engines_kind_and_keeps_its_fix() -> None:
    """An invalid run reads 'INVALID: fleet saturated'; the reason (with its fix) is a row of its own."""
    s = {
        "requests": 2000,
        "valid": False,
        "invalid_kinds": ["connections_exhausted"],
        "invalid_reasons": ["all 32 connections were busy: raise connections="],
    }
    rows = dict(summary_rows(s))
    assert rows["verdict"] == "INVALID: fleet saturated" and "generator lag" not in text_table(
        summary_rows(s)
    )
    assert rows["why invalid"] == "all 32 connections were busy: raise connections="
    assert verdict({"valid": False, "invalid_reasons": ["x"]}).headline == "INVALID"  # no kinds: no guess
    assert verdict({}).word == "UNKNOWN"


def test_rows_of_a_streamed_run_with_an_slo() -> None:
    """Token numbers and goodput appear when the run has them; under-sent runs show the schedule."""
    s = {
        "requests": 90,
        "scheduled": 100,
        "valid": True,
        "output_tokens": 900,
        "ttft_p50_s": 0.05,
        "ttft_p99_s": 0.2,
        "tpot_p50_s": 0.01,
        "tpot_p99_s": 0.02,
        "output_tokens_per_s": 90.0,
        "slo": {"ttft_s": 0.1},
        "requests_meeting_slo": 80,
        "goodput_rps": 8.0,
    }
    rows = dict(summary_rows(s))
    assert rows["requests"] == "90 (of 100 scheduled)"
    assert rows["TTFT p50 / p99"] == "50.0 ms / 200.0 ms" and rows["output tokens/s"] == "90.0"
    assert rows["goodput"] == "8.0 rps (80 requests met ttft_s <= 100.0 ms)"
    assert "<td class='l' style='color:#1a7f37;font-weight:bold'>VALID</td>" in html_table(summary_rows(s))
