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
import contextlib
import datetime as dt
import html
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SpecError, StorageError

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
    return LoadedBundle.coerce(run_dir_or_bundle)


# --------------------------------------------------------------------------- pieces
def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _plots(b: Any, slo_p99_s: float | None) -> list[tuple[str, str, Figure]]:
    """(file stem, caption, figure) for each plot the bundle has data for, all on the run's own time axis."""
    from . import plots

    b = load_bundle(b)
    win = b.window
    b = b.in_window()
    t0 = win[0] if win is not None else None
    intervals, requests, metrics, events = b.intervals, b.requests, b.metrics, b.events
    out: list[tuple[str, str, Figure]] = []
    if len(intervals):
        out.append(
            (
                "latency_over_time",
                "Latency percentiles per interval; dashed lines are uncorrected (from the actual send time).",
                plots.latency_over_time(intervals, t0=t0),
            )
        )
        out.append(
            (
                "throughput",
                "Offered vs achieved requests per second; errors per second by kind. The hollow point is the "
                "last interval, which the run ended part of the way through.",
                plots.throughput(intervals, t0=t0),
            )
        )
    if len(requests) and "latency_s" in requests.columns:
        out.append(
            (
                "percentile_spectrum",
                "HDR percentile spectrum of successful requests.",
                plots.percentile_spectrum(requests),
            )
        )
    if len(requests) and "target" in requests.columns:
        out.append(("per_target", "Requests served and p99 latency per target.", plots.per_target(requests)))
    if len(metrics):
        target = b.spec.scaling.target_rps_per_target if b.spec is not None else None
        out.append(
            (
                "scaling_timeline",
                "Targets and RequestCountPerTarget against the policy target, during this run only.",
                # The period comes from the metrics' spacing: spec.local.period_s is wrong for an AWS run (60 s).
                plots.scaling_timeline(
                    metrics, events if len(events) else None, target_rps_per_target=target, t0=t0
                ),
            )
        )
    if slo_p99_s is not None and "step_rps" in intervals.columns and intervals["step_rps"].notna().any():
        out.append(
            (
                "capacity_curve",
                "p99 against offered rate per step, with the SLO and the knee.",
                plots.capacity_curve(intervals, slo_p99_s=slo_p99_s),
            )
        )
    return out


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


def _df_html(df: pd.DataFrame, t0: Any = None, max_rows: int = 500, wrap: tuple[str, ...] = ()) -> str:
    """A table whose time columns read ``t+16.9 s`` (UTC on hover) and whose ``wrap`` columns wrap."""
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
                cells.append(f"<td>{_rel(v, t0)}</td>" if not pd.isna(v) else "<td></td>")
            elif isinstance(v, float):
                cells.append(f"<td>{'' if v != v else f'{v:.1f}'}</td>")
            else:
                cls = " class='wrap'" if col in wrap else " class='l'"
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
    # No summary.json (e.g. a crashed run): derive the basics from the records.
    import numpy as np

    req = b.requests
    if req.empty:
        return {}
    err = (
        req["error"].notna() & (req["error"].astype(str) != "")
        if "error" in req.columns
        else req["status"] >= 400
    )
    span = (req["intended_at"].max() - req["intended_at"].min()).total_seconds() or 1.0
    out: dict[str, Any] = {
        "requests": len(req),
        "errors": int(err.sum()),
        "offered_rps": len(req) / span,
        "achieved_rps": int((~err).sum()) / span,
        "duration_s": span,
        "valid": None,
        "invalid_reasons": ["no summary.json: the run may not have finished"],
    }
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100)):
        out[f"{name}_s"] = float(np.percentile(req["latency_s"], q))
        if "service_s" in req.columns:
            out[f"{name}_uncorrected_s"] = float(np.percentile(req["service_s"], q))
    return out


def _cost(b: LoadedBundle, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's cost at list prices (:func:`mlops_lb.analysis.run_cost`) over the run's own window."""
    from .analysis.pricing import run_cost

    itype = b.spec.instance.type if b.spec is not None else "t3.small"
    region = (b.spec.region if b.spec is not None else None) or "us-east-1"
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
    return [
        *_token_cost_rows(b, summary, c.instance_seconds, itype, region),
        ("instance type", f"{itype} in {region} at {c.usd_per_hour:g} USD/h (on-demand list price)"),
        ("instance-hours (wall clock)", f"{c.instance_hours:.4f}"),
        ("estimated cost of this run", f"{c.usd:.5f} USD (instances + ALB + LCU estimate)"),
        (
            "hourly cost at peak capacity",
            f"{c.usd_per_hour_at_peak:.4f} USD/h for {c.peak_instances:g} instance(s) at {c.achieved_rps:.1f} rps",
        ),
        ("cost per million requests", "n/a" if per_million != per_million else f"{per_million:.4f} USD"),
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


def _spec_text(b: LoadedBundle) -> str:
    if b.spec is not None:
        return str(b.spec.to_yaml())
    if b.spec_dict is not None:
        return json.dumps(b.spec_dict, indent=2, default=str)
    return "no spec recorded"


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


def _llm_section(
    b: LoadedBundle, summary: dict[str, Any], t0: Any
) -> tuple[str, list[tuple[str, str, Figure]]]:
    """The LLM section (HTML, figures) when the run streamed: TTFT/ITL/TPOT table, tokens/s, goodput with its SLO,
    and the streaming plots; ``("", [])`` for a run whose summary has no TTFT (nothing streamed)."""
    import math

    from . import plots

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
    inb = b.in_window()
    iv, req = inb.intervals, inb.requests
    figs: list[tuple[str, str, Figure]] = []
    if len(iv):
        figs += [
            ("ttft_over_time", "Time to first token per interval; dashed lines are uncorrected (from the actual "
             "send time).", plots.ttft_over_time(iv, t0=t0)),
            ("itl_over_time", "Inter-token latency per interval.", plots.itl_over_time(iv, t0=t0)),
            ("tokens_per_s", "Output tokens per second.", plots.tokens_per_s(iv, t0=t0)),
        ]  # fmt: skip
    if len(req) and "ttft_s" in req.columns:
        figs += [
            ("ttft_spectrum", "HDR spectrum of time to first token.", plots.ttft_spectrum(req)),
            ("itl_spectrum", "HDR spectrum of per-request mean ITL and TPOT.", plots.itl_spectrum(req)),
        ]
        if "step_rps" in iv.columns and iv["step_rps"].notna().any():
            figs.append(
                ("goodput_curve", f"Goodput per step against the offered rate (SLO: {slo_text}).",
                 plots.goodput_curve(req, iv, slo=slo))
            )  # fmt: skip
    imgs = "".join(
        f"<figure id='{stem}'><img alt='{html.escape(stem.replace('_', ' '))}' "
        f"src='data:image/png;base64,{base64.b64encode(_png(fig)).decode('ascii')}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for stem, caption, fig in figs
    )
    doc = (
        "<h2>LLM streaming</h2>"
        "<p class='muted'>TTFT runs from the intended send time to the first token (corrected for coordinated "
        "omission; uncorrected: from the actual send); ITL is the gap between token events; TPOT is (latency − "
        "TTFT) / (output tokens − 1). Goodput counts successful requests that met every SLO bound.</p>"
        f"<table><tr>{head}</tr>{body}</table>{_table(rows)}{imgs}"
    )
    return doc, figs


# --------------------------------------------------------------------------- the report
def _render(bundle: LoadedBundle, slo_p99_s: float | None) -> tuple[str, list[tuple[str, str, Figure]]]:
    from .summary import summary_rows, verdict

    summary = _summary(bundle)
    win = bundle.window
    t0 = win[0] if win is not None else None
    b = bundle.in_window()  # metrics, events and decisions of this run only, not the fleet's whole life
    intervals, requests, events = b.intervals, b.requests, b.events
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
    figures = _plots(bundle, slo_p99_s)
    llm_html, llm_figures = _llm_section(bundle, summary, t0)
    fig_html = "".join(
        f"<figure id='{stem}'><img alt='{html.escape(stem.replace('_', ' '))}' "
        f"src='data:image/png;base64,{base64.b64encode(_png(fig)).decode('ascii')}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for stem, caption, fig in figures
    )
    import pandas as pd

    waterfall = _waterfall(events, requests, t0) if len(events) else pd.DataFrame()
    plan_html = ""
    if slo_p99_s is not None and "step_rps" in intervals.columns and intervals["step_rps"].notna().any():
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
    load_html = (
        f"<h2>Load settings</h2><pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>"
        if settings
        else ""
    )
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
    tmp = target.with_name(target.name + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(doc, encoding="utf-8")
        tmp.replace(target)
        if png:
            for stem, _caption, fig in figures:
                (target.parent / f"{stem}.png").write_bytes(_png(fig))
    except OSError as exc:  # a full disk or a read-only folder: say which file, keep the cause
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StorageError(target, exc) from exc
    logger.info("wrote report %s (%d plots)", target, len(figures))
    return target
