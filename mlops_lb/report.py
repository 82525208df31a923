"""One self-contained HTML report per run: summary table, plots, scale-out waterfall, spec and events.

(Over 500 lines on purpose: the report is one self-contained page; every section renders from the same
LoadedBundle and shares the page's CSS, tables and embedded images.)

The file has no external resources at all: images are embedded as base64 PNG ``data:`` URIs, the CSS is inline,
there is no JavaScript and no web font, so it opens offline and can be mailed or attached to a ticket.

Example::

    from mlops_lb.report import write_report
    path = write_report("runs/2025-01-15T12-00-00-demo", png=True)   # also writes one PNG per plot
    # or from the shell:  mlops-lb report runs/2025-01-15T12-00-00-demo
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BundleError, MlopsLbError, SpecError, StorageError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .bundle import LoadedBundle

__all__ = ["load_bundle", "render_report_html", "write_report"]

logger = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; vertical-align: top;
         overflow-wrap: anywhere; }
td.wrap { text-align: left; white-space: normal; max-width: 560px; }
td.nw { white-space: nowrap; overflow-wrap: normal; }
abbr, span[title] { text-decoration: underline dotted #999; cursor: help; }
ul.reasons { margin: 0.3em 0 1em; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.verdict { display: inline-block; padding: 0.3em 0.8em; border-radius: 4px; font-weight: bold; }
.valid { background: #d8f3dc; color: #1b4332; } .invalid { background: #ffd6d6; color: #7f1d1d; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.muted { color: #777; }
"""


# --------------------------------------------------------------------------- loading
def load_bundle(run_dir_or_bundle: Any) -> LoadedBundle:
    """The report's typed input: a :class:`~mlops_lb.bundle.LoadedBundle` from a run directory, a LoadedBundle,
    or a bundle-like object (see :meth:`LoadedBundle.coerce`).

    Example::

        b = load_bundle("runs/2025-01-15T12-00-00-demo"); b.intervals.head(); b.window
    """
    from .bundle import LoadedBundle

    if isinstance(run_dir_or_bundle, (str, Path)) and not Path(run_dir_or_bundle).is_dir():
        raise SpecError(
            "run_dir", f"is not a directory: {str(run_dir_or_bundle)!r} (pass a runs/<id>/ folder)"
        )
    return LoadedBundle.coerce(
        run_dir_or_bundle
    )  # a folder that is not a bundle: BundleError naming those inside


# --------------------------------------------------------------------------- pieces
# write_report(png=True) writes the very figures the page embeds: each is encoded once (a savefig with
# constrained layout costs about 0.3 s of CPU, and a report has a dozen figures).
_ENCODED: weakref.WeakKeyDictionary[Figure, bytes] = weakref.WeakKeyDictionary()


def _png(fig: Figure) -> bytes:
    png = _ENCODED.get(fig)
    if png is None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        png = _ENCODED[fig] = buf.getvalue()
    return png


def _figure_input(b: LoadedBundle, slo_p99_s: float | None, summary: dict[str, Any] | None = None) -> Any:
    """The registry's input for this run: its tables cut to its window, its start, its metric period."""
    from .plots import FigureInput

    facts = b.facts
    inb = b.in_window()
    return FigureInput(
        intervals=inb.intervals,
        requests=inb.requests,
        metrics=inb.metrics,
        events=inb.events,
        t0=facts.start,
        spec=inb.spec,
        summary=dict(summary if summary is not None else b.summary),
        slo_p99_s=slo_p99_s,
        metric_period_s=facts.metric_period_s,
        rollouts=tuple(b.rollouts),
    )


def _plots(b: Any, slo_p99_s: float | None) -> list[tuple[str, str, Figure]]:
    """(file stem, caption, figure) for each registered report figure the bundle has data for."""
    from .plots import draw_figures

    return draw_figures(_figure_input(load_bundle(b), slo_p99_s), "plots")


def _figures_html(figures: list[tuple[str, str, Figure]]) -> str:
    return "".join(
        f"<figure id='{stem}'><img alt='{html.escape(stem.replace('_', ' '))}' "
        f"src='data:image/png;base64,{base64.b64encode(_png(fig)).decode('ascii')}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for stem, caption, fig in figures
    )


class _Html(str):
    """A table cell that is already HTML (a hover title), not text to escape."""


def _table(rows: list[tuple[str, str]]) -> str:
    return (
        "<table>"
        + "".join(
            f"<tr><th class='l'>{html.escape(k)}</th>"
            f"<td class='l'>{v if isinstance(v, _Html) else html.escape(v)}</td></tr>"
            for k, v in rows
        )
        + "</table>"
    )


def _rel(t: Any, t0: Any) -> str:
    """``t+16.9 s`` with the absolute UTC time on hover."""
    import pandas as pd

    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    utc = f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond // 1000:03d} UTC"
    if t0 is None:
        return f"<span title='{utc}'>{ts:%H:%M:%S} UTC</span>"
    return f"<span title='{utc}'>t+{(ts - t0).total_seconds():.1f} s</span>"


def _df_html(
    df: pd.DataFrame,
    t0: Any = None,
    max_rows: int = 500,
    wrap: tuple[str, ...] = (),
    nowrap: tuple[str, ...] = ("target",),
) -> str:
    """A table whose time columns read ``t+16.9 s`` (UTC on hover) and never wrap, whose ``nowrap`` columns (ids)
    stay on one line and whose ``wrap`` columns (reasons, details) wrap whole, never cut."""
    import pandas as pd

    if df.empty:
        return "<p class='muted'>none</p>"
    shown = df.head(max_rows)
    more = f"<p class='muted'>{len(df) - max_rows} more rows not shown</p>" if len(df) > max_rows else ""
    # numbers align right under a right-aligned header; text (targets, reasons) reads from the left
    head = "".join(
        f"<th>{html.escape(str(c))}</th>"
        if pd.api.types.is_numeric_dtype(shown[c]) or pd.api.types.is_datetime64_any_dtype(shown[c])
        else f"<th class='l'>{html.escape(str(c))}</th>"
        for c in shown.columns
    )
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for col, v in zip(shown.columns, row, strict=True):
            if isinstance(v, pd.Timestamp) or (hasattr(v, "isoformat") and not isinstance(v, str)):
                cells.append(f"<td class='nw'>{_rel(v, t0)}</td>" if not pd.isna(v) else "<td></td>")
            elif isinstance(v, float):
                cells.append(f"<td>{'' if v != v else f'{v:.1f}'}</td>")
            else:
                cls = " class='wrap'" if col in wrap else " class='l nw'" if col in nowrap else " class='l'"
                cells.append(f"<td{cls}>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table class='dataframe'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
    )


def _ms(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if f != f else f"{f * 1000:.1f}"


def _summary(b: LoadedBundle) -> dict[str, Any]:
    if b.summary:
        return b.summary
    # No summary.json (e.g. a crashed run): derive the basics from the records, with the same HDR percentile
    # definition LoadResult.summary() uses, over the successful requests as it does.
    req = b.requests
    if req.empty or "latency_s" not in req.columns:
        return {}
    err = (
        req["error"].notna() & (req["error"].astype(str) != "")
        if "error" in req.columns
        else req["status"] >= 400
    )
    facts = b.facts
    span = (
        (facts.send_end - facts.start).total_seconds()
        if facts.send_end is not None and facts.start is not None
        else 0.0
    ) or 1.0
    ok = req[~err]
    out: dict[str, Any] = {
        "requests": len(req),
        "errors": int(err.sum()),
        "offered_rps": len(req) / span,
        "achieved_rps": len(ok) / span,
        "duration_s": span,
        "valid": None,
        "invalid_reasons": ["no summary.json: the run may not have finished"],
    }
    out.update(_hdr_percentiles(ok["latency_s"]))
    if "service_s" in ok.columns:
        out.update(_hdr_percentiles(ok["service_s"], "_uncorrected"))
    return out


def _hdr_percentiles(values_s: Any, suffix: str = "") -> dict[str, float]:
    """p50 … max of ``values_s`` through the load's own µs HDR histogram and percentile names (one definition)."""
    import numpy as np

    from .load._hdr import HIST_HIGHEST_US, HIST_LOWEST_US, new_histogram
    from .load.result import hist_percentiles

    h = new_histogram()
    us = np.asarray(values_s, dtype=float)
    us = np.clip(np.rint(us[np.isfinite(us)] * 1e6), HIST_LOWEST_US, HIST_HIGHEST_US).astype(np.int64)
    for v in us.tolist():
        h.record_value(v)
    return hist_percentiles(h, suffix)


def _cost(b: LoadedBundle, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's cost at list prices (:func:`mlops_lb.analysis.run_cost`) over the run's own window.

    A local fleet costs nothing itself: its rows say they price the same targets as if they were the spec's
    instance type on AWS, and each rate-based row names the rate it uses.
    """
    from .analysis.pricing import run_cost

    itype = b.spec.instance.type if b.spec is not None else "t3.small"
    region = (b.spec.region if b.spec is not None else None) or "us-east-1"
    on_aws = b.facts.backend == "aws"
    try:
        c = run_cost(
            b.metrics,
            instance_type=itype,
            region=region,
            duration_s=float(summary.get("duration_s") or 0.0),
            achieved_rps=float(summary.get("achieved_rps") or 0.0),
        )
    except SpecError as exc:
        return [("estimated cost", f"n/a: {exc}")]
    per_million = c.usd_per_million_requests
    priced = (
        f"{itype} in {region} at {c.usd_per_hour:g} USD/h (on-demand list price)"
        if on_aws
        else f"as if priced at {itype} in {region}, {c.usd_per_hour:g} USD/h on-demand: what the same targets "
        f"would cost on AWS (this {b.facts.backend or 'local'} fleet itself costs nothing)"
    )
    return [
        *_token_cost_rows(b, summary, c.instance_seconds, itype, region),
        ("instance type", priced),
        ("instance-hours (wall clock)", f"{c.instance_hours:.4f}"),
        ("estimated cost of this run", f"{c.usd:.5f} USD (instances + ALB + LCU estimate)"),
        (
            "hourly cost at peak capacity",
            f"{c.usd_per_hour_at_peak:.4f} USD/h: {c.peak_instances:g} instance(s) (the run's peak in service) "
            f"plus the ALB at the achieved rate, {c.achieved_rps:.1f} rps",
        ),
        (
            "cost per million requests",
            "n/a"
            if per_million != per_million
            else f"{per_million:.4f} USD: the hourly cost at peak capacity over the achieved rate "
            f"({c.achieved_rps:.1f} rps)",
        ),
    ]


def _token_cost_rows(
    b: LoadedBundle, summary: dict[str, Any], instance_seconds: float, itype: str, region: str
) -> list[tuple[str, str]]:
    """$ per 1M output / good / GKE-definition tokens for a streamed run (issue 27); none for other runs."""
    if not (summary.get("output_tokens") or 0) > 0:
        return []
    from .analysis.economics import good_tokens, token_cost

    # a local fleet's status has pids (and it records decisions): its price is "as if" the spec's type
    local = "pid" in b.status.columns or not b.decisions.empty
    try:
        n_good, good = good_tokens(b.requests, summary.get("slo") or {})
        c = token_cost(instance_type=itype, region=region, instance_seconds=instance_seconds,
                       output_tokens=int(summary["output_tokens"]), good_output_tokens=good,
                       requests=int(summary.get("requests") or 0), good_requests=n_good, local=local)  # fmt: skip
    except SpecError as exc:
        return [("cost per token", f"n/a: {exc}")]
    return [(k, v) for k, v in c.rows() if k not in ("instance $", "$ / 1M requests")]


def _scale_times(events: pd.DataFrame, t0: Any) -> list[tuple[str, str]]:
    import pandas as pd

    if events.empty or "kind" not in events.columns:
        return [("scale-outs", "none"), ("scale-ins", "none")]
    out = []
    for kind, label in (("scale_out", "scale-outs"), ("scale_in", "scale-ins")):
        ts = pd.to_datetime(events.loc[events["kind"] == kind, "timestamp"], utc=True)
        if not len(ts):
            out.append((label, "none"))
            continue
        out.append((label, _Html(f"{len(ts)}: " + ", ".join(_rel(t, t0) for t in ts))))
    return out


def _spot_section(b: LoadedBundle, requests: pd.DataFrame, events: pd.DataFrame, t0: Any) -> str:
    """Spot fleets: per interruption the target, notice, notice -> deregistered / replacement healthy and the
    client-visible errors attributed to it; then errors per interruption and the cost actually incurred against
    all on-demand. A bundle written before the spot tables were saved says so (its events still show them)."""
    import pandas as pd

    from .analysis.spot import interruption_errors, ledger_cost

    spot_events = (
        int(events["kind"].astype(str).str.startswith("spot_").sum())
        if len(events) and "kind" in events.columns
        else 0
    )
    if not len(b.spot_interruptions) and not len(b.spot_ledger):
        if not spot_events:
            return ""
        return (
            "<h2>Spot interruptions</h2><p class='muted'>This bundle has spot events but no spot tables "
            "(spot_interruptions.parquet, spot_ledger.parquet: written by runs since they were saved), so "
            "errors per interruption and the cost incurred cannot be shown; the events below list each step.</p>"
        )
    spec = b.spec
    scale = spec.local.time_scale if spec is not None else 1.0
    # a reclaimed target without an agent fails requests until the balancer marks it down: its own events say
    # when; without them, the health checks' bound (unhealthy_threshold x interval + timeout)
    hc = spec.health_check if spec is not None else None
    detect_s = (hc.interval_s * hc.unhealthy_threshold + hc.timeout_s) * scale if hc is not None else 0.0
    win = b.window
    table = b.spot_interruptions
    if win is not None and len(table) and "triggered_at" in table.columns:
        # the fleet's whole life is in the table: keep the interruptions that overlap this run
        began = pd.to_datetime(table["triggered_at"], utc=True)
        ended = (
            pd.to_datetime(table["terminated_at"], utc=True) if "terminated_at" in table.columns else began
        )
        table = table[(began <= win[1]) & (ended.isna() | (ended >= win[0]))]
    per = interruption_errors(table, requests, events=events, detect_s=detect_s)
    n = len(per)
    attributed = int(per["client_errors"].sum()) if n else 0
    shown = per.assign(
        notice_to_deregistered_s=[_secs(v) for v in per["notice_to_deregistered_s"]],
        notice_to_replacement_healthy_s=[_secs(v) for v in per["notice_to_replacement_healthy_s"]],
    )
    region = (spec.region if spec is not None else None) or "us-east-1"
    rows: list[tuple[str, str]] = [
        ("interruptions", str(n)),
        (
            "client-visible errors per interruption",
            f"{attributed / n:.2f} ({attributed} attributed to {n} interruption(s))" if n else "n/a (none)",
        ),
        ("errors outside any interruption", str(per.attrs.get("unattributed", 0))),
    ]
    if win is not None and len(b.spot_ledger):
        try:
            c = ledger_cost(b.spot_ledger, start=win[0], end=win[1], region=region, interruptions=n,
                            client_errors=attributed)  # fmt: skip
            rows += [
                (
                    "cost incurred (instances)",
                    f"{c.usd:.5f} USD vs {c.all_on_demand_usd:.5f} USD all on-demand: "
                    + (f"{100 * c.saving_share:.1f} % saved" if c.all_on_demand_usd else "n/a")
                    + f" ({region}; spot at the shipped snapshot's median, on-demand at list prices)",
                ),
                (
                    "instance-hours (AWS time)",
                    f"{c.spot_instance_hours:.4f} spot, {c.on_demand_instance_hours:.4f} on-demand",
                ),
            ]
        except (SpecError, KeyError, TypeError, ValueError) as exc:
            rows.append(("cost incurred (instances)", f"n/a: {exc}"))
    clock = (
        f" Durations are local seconds; on AWS they stand for local / {scale:g} (the compressed clock)."
        if scale != 1.0
        else ""
    )
    return (
        "<h2>Spot interruptions</h2><p class='muted'>A failed request counts against an interruption when the "
        "interrupted target answered it after the interruption began, or, with no target (refused, reset, a "
        "balancer 503), when it was sent between the notice and the moment the balancer stopped routing to the "
        "reclaimed target (its first unhealthy, terminate or deregistered event; without one, the reclaim plus "
        f"the health checks' bound, {detect_s:.2f} s).{html.escape(clock)}</p>"
        + _df_html(shown, t0)
        + _table(rows)
    )


def _secs(v: Any) -> str:
    return "" if v is None or v != v else f"{float(v):.2f}"


MAX_EMBED_CHARS = 100_000
"""The most characters of one recorded text (the spec) the page embeds: a spec is a few kB, and the page is meant
to be mailed; the whole file stays in the bundle."""


def _bounded(text: str, what: str, limit: int | None = None) -> str:
    limit = MAX_EMBED_CHARS if limit is None else limit
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… {len(text) - limit:,} more characters of {what} not shown (the whole file is in the bundle)"


def _spec_text(b: LoadedBundle) -> str:
    if b.spec is not None:
        return _bounded(str(b.spec.to_yaml()), "the spec")
    if b.spec_dict is not None:
        return _bounded(json.dumps(b.spec_dict, indent=2, default=str), "spec.json")
    return "no spec recorded"


def _settings_rows(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """The load settings, one line each: a profile's fields as ``profile.<field>``, a list of send times
    (a trace) as its count, span and peak rate, header values never shown, long values bounded."""
    rows: list[tuple[str, str]] = []
    for key, value in sorted(settings.items()):
        if key == "profile" and isinstance(value, dict):
            rows += [(f"profile.{k}", _setting_text(k, v)) for k, v in value.items()]
        else:
            rows.append((key, _setting_text(key, value)))
    return rows


def _setting_text(key: str, value: Any) -> str:
    import numpy as np

    if key == "headers" and isinstance(value, dict):
        # header values may be credentials: the names say what was sent, the values stay out of the page
        return ", ".join(f"{k}: ***" for k in value) or "none"
    if isinstance(value, list) and len(value) > 8:
        nums = np.asarray([v for v in value if isinstance(v, (int, float))], dtype=float)
        if key == "offsets" and len(nums) == len(value):
            span = float(nums.max() - nums.min()) if len(nums) else 0.0
            # the busiest whole second of the schedule
            peak = int(np.bincount(np.floor(nums - nums.min()).astype(np.int64)).max()) if len(nums) else 0
            return f"{len(nums):,} send times over {span:.1f} s, peak {peak:,} rps (busiest second)"
        if len(nums) == len(value):
            return f"{len(nums):,} values from {nums.min():g} to {nums.max():g}"
        return f"{len(value):,} values"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _bounded(text, key, 300)


def _waterfall(events: pd.DataFrame, requests: pd.DataFrame, t0: Any) -> pd.DataFrame:
    """The scale-out waterfall as durations per stage (seconds) with the decision's time: it fits the page."""
    import pandas as pd

    from .analysis.waterfall import scale_out_waterfall

    wf = scale_out_waterfall(events, requests if len(requests) else None)
    if wf.empty:
        return wf
    return pd.DataFrame(
        {
            "decision": wf["scale_out_at"],
            "target": wf["target"],
            "decision → launch (s)": wf["decision_to_launch_s"],
            "launch → healthy (s)": wf["launch_to_healthy_s"],
            "healthy → first request (s)": wf["healthy_to_first_request_s"],
            "decision → first request (s)": wf["decision_to_first_request_s"],
            "reason": wf["reason"],
        }
    )


# --------------------------------------------------------------------------- streamed (LLM) responses
_STREAM_ROWS = (
    ("TTFT corrected", "ttft_", "_s"),
    ("TTFT uncorrected", "ttft_", "_uncorrected_s"),
    ("ITL", "itl_", "_s"),
    ("TPOT", "tpot_", "_s"),
)


def _llm_section(run: Any) -> tuple[str, list[tuple[str, str, Figure]]]:
    """The LLM section (HTML, figures) when the run streamed: TTFT/ITL/TPOT table, tokens/s, goodput with its SLO,
    and the streaming plots; ``("", [])`` for a run whose summary has no TTFT (nothing streamed)."""
    import math

    from .plots import draw_figures

    summary = run.summary

    def num(key: str) -> float:
        try:
            return float(summary.get(key, math.nan))
        except (TypeError, ValueError):
            return math.nan

    if math.isnan(num("ttft_p50_s")):  # NaN or missing: no streamed response
        return "", []
    pcts = ("p50", "p90", "p99", "p999", "max")
    head = "".join(f"<th>{h}</th>" for h in ("", "p50", "p90", "p99", "p99.9", "max"))
    body = "".join(
        f"<tr><th class='l'>{label} (ms)</th>"
        + "".join(f"<td>{_ms(summary.get(f'{pre}{p}{suf}'))}</td>" for p in pcts)
        + "</tr>"
        for label, pre, suf in _STREAM_ROWS
    )
    slo = {k: v for k, v in dict(summary.get("slo") or {}).items() if v is not None}
    slo_text = (
        ", ".join(f"{k.removesuffix('_s').upper()} ≤ {float(v) * 1000:g} ms" for k, v in slo.items())
        if slo
        else "none given: every successful request counts"
    )
    tokens, tok_s, good = num("output_tokens"), num("output_tokens_per_s"), num("goodput_rps")
    meeting, requests = summary.get("requests_meeting_slo"), summary.get("requests")
    rows: list[tuple[str, str]] = [
        ("output tokens", "n/a" if tokens != tokens else f"{tokens:,.0f}"),
        ("output tokens per second", "n/a" if tok_s != tok_s else f"{tok_s:,.1f}"),
        ("SLO", slo_text),
        (
            "goodput",
            ("n/a" if good != good else f"{good:.2f} requests/s")
            + (
                f" ({meeting:,} of {requests:,} requests met the SLO)"
                if meeting is not None and requests
                else ""
            ),
        ),
    ]
    figs = draw_figures(run, "llm")
    imgs = _figures_html(figs)
    doc = (
        "<h2>LLM streaming</h2>"
        "<p class='muted'>TTFT runs from the intended send time to the first token (corrected for coordinated "
        "omission; uncorrected: from the actual send); ITL is the gap between token events; TPOT is (latency − "
        "TTFT) / (output tokens − 1). Goodput counts successful requests that met every SLO bound.</p>"
        f"<table><tr>{head}</tr>{body}</table>{_table(rows)}{imgs}"
    )
    return doc, figs


# --------------------------------------------------------------------------- the report
def _shadow_section(shadow: dict[str, Any] | None) -> str:
    """The shadow fleet's numbers from ``shadow.json`` (``ShadowResult.summary()``): a copy of the load sent to a
    second fleet, with how often its answers differed from the primary's (status; body hashes when compared)."""
    if not shadow:
        return ""

    def share(key: str) -> str:
        v = shadow.get(key)
        return "not compared" if v is None or v != v else f"{float(v):.1%}"

    rows = [
        ("shadow URL", str(shadow.get("url", ""))),
        ("copies sent / dropped", f"{shadow.get('sent', 0)} / {shadow.get('dropped', 0)}"),
        ("errors", f"{shadow.get('errors', 0)} ({float(shadow.get('error_share') or 0):.1%})"),
        ("p50 / p99 (ms)", f"{_ms(shadow.get('p50_s'))} / {_ms(shadow.get('p99_s'))}"),
        ("status differs from the primary's", share("status_differs_share")),
        ("response body differs (hash)", share("body_differs_share")),
    ]
    return (
        "<h2>Shadow traffic</h2><p class='muted'>A copy of each request sent to a second fleet; copies never count "
        "in this run's verdict. Bodies are compared by hash only (never stored).</p>" + _table(rows)
    )


def _render(bundle: LoadedBundle, slo_p99_s: float | None) -> tuple[str, list[tuple[str, str, Figure]]]:
    """The page and its figures; a bundle whose content does not render is a :class:`BundleError`, one line."""
    try:
        return _render_page(bundle, slo_p99_s)
    except (MlopsLbError, ImportError, NameError):  # ours, or a broken install: never blamed on the bundle
        raise
    except Exception as exc:  # a bundle is data from anywhere: a malformed one is an error, never a traceback
        where = bundle.path if bundle.path is not None else "the bundle"
        raise BundleError(
            where, f"{where} is malformed and cannot be reported: {type(exc).__name__}: {exc}"
        ) from exc


def _render_page(bundle: LoadedBundle, slo_p99_s: float | None) -> tuple[str, list[tuple[str, str, Figure]]]:
    from .summary import summary_rows, verdict

    summary = _summary(bundle)
    win = bundle.window
    run = _figure_input(bundle, slo_p99_s, summary)  # metrics, events of this run only, not the fleet's life
    t0 = run.t0
    b = bundle.in_window()
    intervals, requests, events = run.intervals, run.requests, run.events
    spec = b.spec
    name = (spec.name if spec is not None else None) or (b.path.name if b.path is not None else "run")

    v = verdict(summary)
    if v.valid is True:
        verdict_html = "<span class='verdict valid'>VALID</span>"
    else:
        # The engine's reasons each name their fix; the headline names the cause (fleet saturated, generator lag…).
        verdict_html = f"<span class='verdict invalid'>{html.escape(v.headline)}</span> " + html.escape(
            "; ".join(v.reasons) or "no reason recorded"
        )
    rows: list[tuple[str, str]] = [
        (k, val)
        for k, val in summary_rows(summary)
        if k not in ("verdict", "why invalid") and not k.startswith("p")
    ]
    rows += [*_scale_times(events, t0), *_cost(b, summary)]
    lat_head = "".join(f"<th>{h}</th>" for h in ("", "p50", "p90", "p99", "p99.9", "max"))
    lat_rows = "".join(
        f"<tr><th class='l'>{label} (ms)</th>"
        + "".join(
            f"<td>{_ms(summary.get(f'{p}{suffix}'))}</td>" for p in ("p50", "p90", "p99", "p999", "max")
        )
        + "</tr>"
        for label, suffix in (("corrected", "_s"), ("uncorrected", "_uncorrected_s"))
    )
    from .plots import draw_figures

    figures = draw_figures(run, "plots")
    llm_html, llm_figures = _llm_section(run)
    fig_html = _figures_html(figures)
    import pandas as pd

    waterfall = _waterfall(events, requests, t0) if len(events) else pd.DataFrame()
    spot_html = _spot_section(b, requests, events, t0)
    plan_html = ""
    if slo_p99_s is not None and run.is_sweep:
        from .analysis.capacity import plan_capacity

        plan_html = (
            "<h2>Capacity plan</h2>"
            + plan_capacity(
                intervals,
                slo_p99_s=slo_p99_s,
                instance_type=spec.instance.type if spec is not None else "t3.small",
                region=(spec.region if spec is not None else None) or "us-east-1",
            )._repr_html_()
        )
    ev_cols = [c for c in ("timestamp", "kind", "target", "detail") if c in events.columns]
    settings = b.load_settings
    load_html = f"<h2>Load settings</h2>{_table(_settings_rows(settings))}" if settings else ""
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    window_note = (
        f"Times are relative to the run's start, t+0 = {t0:%Y-%m-%d %H:%M:%S} UTC (hover a time for its UTC "
        f"value); metrics, events, scale-outs and costs cover this run's window only "
        f"(t+0 to t+{(win[1] - win[0]).total_seconds():.1f} s)."
        if win is not None and t0 is not None
        else "No request records: times are UTC."
    )
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlops_lb report: {html.escape(str(name))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Throughput report: {html.escape(str(name))}</h1>
<p class="muted">{html.escape(str(b.path or ""))} · generated {generated}</p>
<p>{verdict_html}</p>
<p class="muted">{html.escape(window_note)}</p>
<h2>Summary</h2>
{_table(rows)}
<h2>Latency</h2>
<p class="muted">Corrected latency is measured from the intended send time (coordinated omission corrected);
uncorrected from the actual send.</p>
<table><tr>{lat_head}</tr>{lat_rows}</table>
<h2>Plots</h2>
{fig_html or "<p class='muted'>no data to plot</p>"}
{llm_html}
{spot_html}
{_shadow_section(b.shadow)}
{plan_html}
<h2>Scale-out waterfall</h2>
<p class="muted">Seconds spent in each stage, per new target: decision → launch → healthy (first passing check)
→ first request served by the new target.</p>
{_df_html(waterfall, t0, wrap=("reason",))}
<h2>Spec</h2>
<pre>{html.escape(_spec_text(b))}</pre>
{load_html}
<h2>Events</h2>
{_df_html(events[ev_cols] if ev_cols else events, t0, wrap=("detail",))}
</body></html>
"""
    return doc, figures + llm_figures


def render_report_html(bundle: Any, *, slo_p99_s: float | None = None) -> str:
    """The report as one HTML string (no external resources). ``bundle``: a RunBundle, run dir, or bundle-like.

    ``slo_p99_s`` adds a capacity plan and curve when the run was a sweep.

    Example::

        html_text = render_report_html(RunBundle.load(run_dir))
    """
    return _render(load_bundle(bundle), slo_p99_s)[0]


def write_report(
    run_dir_or_bundle: Any,
    *,
    out: str | Path | None = None,
    png: bool = False,
    slo_p99_s: float | None = None,
) -> Path:
    """Write ``report.html`` into the bundle folder (or to ``out``) and return its path; ``png=True`` also writes
    one PNG per plot next to it.

    Example::

        write_report("runs/2025-01-15T12-00-00-demo")     # -> runs/.../report.html
    """
    b = load_bundle(run_dir_or_bundle)
    if out is None:
        if b.path is None:
            raise SpecError("out", "is required when the bundle has no folder (pass out='report.html')")
        target = b.path / "report.html"
    else:
        target = Path(out)
    doc, figures = _render(b, slo_p99_s)
    from .bundle import atomic_write_bytes

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # fresh temporary names, then a rename: a symlink planted at report.html (or a fixed report.html.tmp)
        # is replaced, never followed to overwrite its target
        atomic_write_bytes(target, doc.encode("utf-8"))
        if png:
            for stem, _caption, fig in figures:
                atomic_write_bytes(target.parent / f"{stem}.png", _png(fig))
    except OSError as exc:  # a full disk or a read-only folder: say which file, keep the cause
        raise StorageError(target, exc) from exc
    logger.info("wrote report %s (%d plots)", target, len(figures))
    return target
