"""One reading of a load run's summary: the rows every view shows (terminal table, panel, report, ``repr``).

``summary_rows(summary)`` turns ``LoadResult.summary()`` (or a bundle's ``summary.json``) into ``(label, text)``
pairs; ``verdict(summary)`` says whether the run is valid and, when it is not, *why* in a few words
(``fleet saturated``, ``generator lag``…) with the fix. The classification itself is the engine's
(``invalid_kinds``, parallel to ``invalid_reasons``); this module only names it.

Example::

    from mlops_lb.summary import summary_rows, text_table, verdict
    print(text_table(summary_rows(result.summary())))
    verdict(result.summary()).headline      # 'INVALID: fleet saturated'
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KIND_LABELS", "Verdict", "captioned_table", "html_table", "summary_rows", "text_table", "verdict"]

# What each of the engine's invalid kinds means to the person reading the result.
KIND_LABELS: dict[str, str] = {
    "generator_lag": "generator lag (this machine could not keep the schedule)",
    "connections_exhausted": "fleet saturated (every connection was waiting on the fleet)",
    "server_not_answering": "fleet not answering",
    "server_errors": "fleet errors",
    "client_errors": "requests refused (4xx)",
    "fleet_shedding": "fleet shedding (429)",
    "generator_lost": "load generator lost (a worker or shard died)",
    "under_sent": "schedule under-sent",
}


@dataclass(frozen=True)
class Verdict:
    """Whether a run's numbers can be trusted, with the short cause and the engine's reasons (each names a fix).

    Example::

        v = verdict(summary); v.valid, v.headline, v.reasons
    """

    valid: bool | None
    kinds: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def word(self) -> str:
        """``VALID``, ``INVALID`` or ``UNKNOWN`` (no summary)."""
        return "VALID" if self.valid is True else ("INVALID" if self.valid is False else "UNKNOWN")

    @property
    def causes(self) -> list[str]:
        """Short names of the causes: ``fleet saturated``, ``generator lag``… (empty when valid or unclassified)."""
        return [KIND_LABELS.get(k, k.replace("_", " ")).split(" (")[0] for k in self.kinds]

    @property
    def fixes(self) -> list[str]:
        """What to do, one per reason (the text after ``Fix:``; the whole reason when it has none)."""
        return [r.rsplit("Fix: ", 1)[-1] for r in self.reasons]

    @property
    def headline(self) -> str:
        """``VALID``, ``INVALID: fleet saturated`` or ``INVALID`` when the engine gave no kind."""
        causes = self.causes
        return f"{self.word}: {', '.join(causes)}" if causes and self.valid is False else self.word


def verdict(summary: Mapping[str, Any]) -> Verdict:
    """The :class:`Verdict` of a summary dict (``valid``, ``invalid_kinds``, ``invalid_reasons``)."""
    valid = summary.get("valid")
    kinds = tuple(str(k) for k in summary.get("invalid_kinds") or ())
    reasons = tuple(str(r) for r in summary.get("invalid_reasons") or ())
    return Verdict(valid if isinstance(valid, bool) else None, kinds, reasons)


def _ms(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(f):
        return "-"
    return f"{f * 1000:.1f} ms" if f < 1 else f"{f:.2f} s"


def _rate(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return f"{f:.1f}" if math.isfinite(f) else "-"


def _count(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and v == v else "-"


def summary_rows(
    summary: Mapping[str, Any], *, scale_events: tuple[int, int] | None = None
) -> list[tuple[str, str]]:
    """``(label, text)`` rows of a run summary, the same in every view. ``scale_events``: (scale-outs, scale-ins).

    Example::

        summary_rows({"requests": 100, "errors": 0, "p99_s": 0.02, "valid": True})[0]   # ('verdict', 'VALID')
    """
    v = verdict(summary)
    rows: list[tuple[str, str]] = [("verdict", v.headline)]
    sent = summary.get("requests")
    scheduled = summary.get("scheduled")
    under = scheduled is not None and sent is not None and scheduled != sent
    rows.append(("requests", _count(sent) + (f" (of {_count(scheduled)} scheduled)" if under else "")))
    by_kind = {k: n for k, n in (summary.get("errors_by_kind") or {}).items() if n}
    rows.append(
        (
            "errors",
            _count(summary.get("errors"))
            + (" (" + ", ".join(f"{k}: {n:,}" for k, n in by_kind.items()) + ")" if by_kind else ""),
        )
    )
    rows.append(
        (
            "offered / achieved",
            f"{_rate(summary.get('offered_rps'))} / {_rate(summary.get('achieved_rps'))} rps",
        )
    )
    rows.append(("p50 / p90 / p99", " / ".join(_ms(summary.get(k)) for k in ("p50_s", "p90_s", "p99_s"))))
    rows.append(("p99.9 / max", f"{_ms(summary.get('p999_s'))} / {_ms(summary.get('max_s'))}"))
    if "p99_uncorrected_s" in summary:
        rows.append(("p99 uncorrected", _ms(summary.get("p99_uncorrected_s"))))
    if "late_share" in summary:
        rows.append(
            (
                "late sends",
                f"{float(summary['late_share']):.1%} later than {_ms(summary.get('late_after_s'))}",
            )
        )
    if "lag_p99_s" in summary:
        rows.append(("schedule lag p99", _ms(summary.get("lag_p99_s"))))
    if "duration_s" in summary:
        stopped = f" (stopped: {summary.get('stop_reason') or 'early'})" if summary.get("stopped") else ""
        rows.append(("duration", f"{_rate(summary.get('duration_s'))} s{stopped}"))
    if (summary.get("output_tokens") or 0) > 0:  # a streamed (LLM) run: the token-level numbers too
        rows.append(
            ("TTFT p50 / p99", f"{_ms(summary.get('ttft_p50_s'))} / {_ms(summary.get('ttft_p99_s'))}")
        )
        rows.append(
            ("TPOT p50 / p99", f"{_ms(summary.get('tpot_p50_s'))} / {_ms(summary.get('tpot_p99_s'))}")
        )
        rows.append(("output tokens/s", _rate(summary.get("output_tokens_per_s"))))
    if summary.get("slo"):
        slo = ", ".join(f"{k} <= {_ms(v)}" for k, v in summary["slo"].items())
        met = _count(summary.get("requests_meeting_slo"))
        rows.append(("goodput", f"{_rate(summary.get('goodput_rps'))} rps ({met} requests met {slo})"))
    if summary.get("bundle_error"):
        rows.append(("bundle", f"NOT fully saved: {summary['bundle_error']}"))
    if scale_events is not None:
        rows.append(("scale-outs / scale-ins", f"{scale_events[0]} / {scale_events[1]}"))
    if v.valid is False:
        rows.extend(("why invalid", r) for r in v.reasons or ("no reason recorded",))
    rows.extend(("note", str(n)) for n in summary.get("notes") or ())
    return rows


def text_table(rows: Sequence[tuple[str, str]]) -> str:
    """Rows as aligned plain text (the terminal's view)."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def html_table(rows: Sequence[tuple[str, str]], *, css_class: str = "mlops-lb-summary") -> str:
    """Rows as an HTML table (escaped); the verdict row is coloured."""
    out = []
    for k, v in rows:
        style = ""
        if k == "verdict":
            style = (
                " style='color:#1a7f37;font-weight:bold'"
                if v == "VALID"
                else " style='color:#b42318;font-weight:bold'"
            )
        out.append(
            f"<tr><th class='l' style='text-align:left'>{html.escape(k)}</th><td class='l'{style}>{html.escape(v)}</td></tr>"
        )
    return f'<table class="{css_class}">' + "".join(out) + "</table>"


def captioned_table(caption: str, rows: Sequence[tuple[str, str]]) -> str:
    """Key/value rows as a captioned HTML table (escaped): the notebook view of a plan or a replay.

    Example::

        captioned_table("Capacity plan", [("instances", "3")])
    """
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption>{cells}</table>"
