"""One self-contained HTML report per run: summary table, plots, scale-out waterfall, spec and events.

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
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .errors import SpecError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["load_bundle", "render_report_html", "write_report"]

logger = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.verdict { display: inline-block; padding: 0.3em 0.8em; border-radius: 4px; font-weight: bold; }
.valid { background: #d8f3dc; color: #1b4332; } .invalid { background: #ffd6d6; color: #7f1d1d; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.muted { color: #777; }
"""


# --------------------------------------------------------------------------- loading
def _read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def load_bundle(run_dir_or_bundle: Any) -> Any:
    """A bundle-like object from a run directory (via ``RunBundle.load``) or a bundle passed through.

    Falls back to reading the files directly when :mod:`mlops_lb.bundle` is not importable.

    Example::

        b = load_bundle("runs/2025-01-15T12-00-00-demo"); b.intervals.head()
    """
    if not isinstance(run_dir_or_bundle, (str, Path)):
        return run_dir_or_bundle
    path = Path(run_dir_or_bundle)
    if not path.is_dir():
        raise SpecError("run_dir", f"is not a directory: {str(path)!r} (pass a runs/<id>/ folder)")
    try:
        from .bundle import RunBundle
    except ImportError:
        RunBundle = None  # type: ignore[assignment,misc]
    if RunBundle is not None:
        return RunBundle.load(path)
    from .spec import FleetSpec

    spec_file, summary_file = path / "spec.json", path / "summary.json"
    return SimpleNamespace(
        path=path,
        spec=FleetSpec.from_dict(json.loads(spec_file.read_text())) if spec_file.is_file() else None,
        summary=json.loads(summary_file.read_text()) if summary_file.is_file() else {},
        requests=_read_frame(path / "requests.parquet"),
        intervals=_read_frame(path / "intervals.parquet"),
        metrics=_read_frame(path / "metrics.parquet"),
        events=_read_frame(path / "events.parquet"),
    )


def _frame(b: Any, name: str) -> pd.DataFrame:
    import pandas as pd

    v = getattr(b, name, None)
    if callable(v):
        v = v()
    return v if isinstance(v, pd.DataFrame) else pd.DataFrame()


# --------------------------------------------------------------------------- pieces
def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _plots(b: Any, slo_p99_s: float | None) -> list[tuple[str, str, Figure]]:
    """(file stem, caption, figure) for each plot the bundle has data for."""
    from . import plots

    intervals, requests, metrics, events = (
        _frame(b, n) for n in ("intervals", "requests", "metrics", "events")
    )
    spec = getattr(b, "spec", None)
    out: list[tuple[str, str, Figure]] = []
    if len(intervals):
        out.append(
            (
                "latency_over_time",
                "Latency percentiles per interval; dashed lines are uncorrected (from the actual send time).",
                plots.latency_over_time(intervals),
            )
        )
        out.append(
            (
                "throughput",
                "Offered vs achieved requests per second; errors per second by kind.",
                plots.throughput(intervals),
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
        scaling = getattr(spec, "scaling", None)
        out.append(
            (
                "scaling_timeline",
                "Targets over time and RequestCountPerTarget against the policy target.",
                # The period comes from the metrics' spacing: spec.local.period_s is wrong for an AWS run (60 s).
                plots.scaling_timeline(
                    metrics,
                    events if len(events) else None,
                    target_rps_per_target=getattr(scaling, "target_rps_per_target", None),
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


def _table(rows: list[tuple[str, str]]) -> str:
    return (
        "<table>"
        + "".join(
            f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        + "</table>"
    )


def _df_html(df: pd.DataFrame, max_rows: int = 500) -> str:
    if df.empty:
        return "<p class='muted'>none</p>"
    shown = df.head(max_rows)
    more = f"<p class='muted'>{len(df) - max_rows} more rows not shown</p>" if len(df) > max_rows else ""
    return shown.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.3f}") + more


def _ms(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if f != f else f"{f * 1000:.1f}"


def _summary(b: Any) -> dict[str, Any]:
    s = getattr(b, "summary", None)
    if callable(s):
        s = s()
    if isinstance(s, dict) and s:
        return s
    # No summary.json (e.g. a crashed run): derive the basics from the records.
    import numpy as np

    req = _frame(b, "requests")
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


def _cost(b: Any, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Wall-clock instance-hours from the in-service capacity, priced with the package's price table."""
    import pandas as pd

    from .analysis.pricing import alb_hourly_cost, hourly_price

    spec = getattr(b, "spec", None)
    itype = getattr(getattr(spec, "instance", None), "type", "t3.small")
    region = getattr(spec, "region", None) or "us-east-1"
    try:
        price = hourly_price(itype, region)
    except SpecError as exc:
        return [("estimated cost", f"n/a: {exc}")]
    metrics = _frame(b, "metrics")
    cap = pd.DataFrame()
    if len(metrics):
        for name in ("GroupInServiceInstances", "GroupDesiredCapacity", "HealthyHostCount"):
            cap = metrics[(metrics["metric"] == name) & (metrics["target"].astype(str) == "")]
            if len(cap):
                break
    duration = float(summary.get("duration_s") or 0.0)
    if len(cap) > 1:
        cap = cap.sort_values("timestamp")
        ts = pd.to_datetime(cap["timestamp"], utc=True)
        step = ts.diff().dt.total_seconds().median()
        inst_s = float((cap["value"] * step).sum())
        peak = float(cap["value"].max())
    else:
        peak = 1.0
        inst_s = duration
    rps = float(summary.get("achieved_rps") or 0.0)
    per_hour_peak = peak * price + alb_hourly_cost(rps, region)
    run_cost = inst_s / 3600.0 * price + duration / 3600.0 * alb_hourly_cost(rps, region)
    per_million = per_hour_peak / (rps * 3600.0) * 1e6 if rps > 0 else float("nan")
    return [
        ("instance type", f"{itype} in {region} at {price:g} USD/h (on-demand list price)"),
        ("instance-hours (wall clock)", f"{inst_s / 3600.0:.4f}"),
        ("estimated cost of this run", f"{run_cost:.5f} USD (instances + ALB + LCU estimate)"),
        (
            "hourly cost at peak capacity",
            f"{per_hour_peak:.4f} USD/h for {peak:g} instance(s) at {rps:.1f} rps",
        ),
        ("cost per million requests", "n/a" if per_million != per_million else f"{per_million:.4f} USD"),
    ]


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
        parts = [
            f"+{(t - t0).total_seconds():.1f} s ({t:%H:%M:%S} UTC)" if t0 is not None else f"{t:%H:%M:%S} UTC"
            for t in ts
        ]
        out.append((label, f"{len(ts)}: " + ", ".join(parts)))
    return out


def _spec_text(spec: Any) -> str:
    if spec is None:
        return "no spec recorded"
    to_yaml = getattr(spec, "to_yaml", None)
    if callable(to_yaml):
        return str(to_yaml())
    return json.dumps(spec, indent=2, default=str)


# --------------------------------------------------------------------------- the report
def _render(b: Any, slo_p99_s: float | None) -> tuple[str, list[tuple[str, str, Figure]]]:
    import pandas as pd

    from .analysis.waterfall import scale_out_waterfall

    summary = _summary(b)
    intervals, requests, events = (_frame(b, n) for n in ("intervals", "requests", "events"))
    t0 = None
    if len(intervals):
        t0 = pd.to_datetime(intervals["interval_start"], utc=True).min()
    elif len(requests):
        t0 = pd.to_datetime(requests["intended_at"], utc=True).min()
    spec = getattr(b, "spec", None)
    name = getattr(spec, "name", None) or Path(str(getattr(b, "path", "run") or "run")).name

    valid = summary.get("valid")
    reasons = summary.get("invalid_reasons") or []
    if valid is True:
        verdict = "<span class='verdict valid'>VALID</span>"
    else:
        word = "INVALID" if valid is False else "UNKNOWN"
        verdict = f"<span class='verdict invalid'>{word}</span> " + html.escape(
            "; ".join(map(str, reasons)) or "no reason recorded"
        )
    by_kind = summary.get("errors_by_kind") or {}
    rows: list[tuple[str, str]] = [
        ("requests", f"{summary.get('requests', 'n/a')}"),
        (
            "errors",
            f"{summary.get('errors', 'n/a')}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in by_kind.items()) + ")" if by_kind else ""),
        ),
        (
            "offered vs achieved",
            f"{float(summary.get('offered_rps', float('nan'))):.1f} rps offered, "
            f"{float(summary.get('achieved_rps', float('nan'))):.1f} rps achieved",
        ),
        (
            "duration",
            f"{float(summary.get('duration_s', float('nan'))):.1f} s"
            + (" (stopped early)" if summary.get("stopped") else ""),
        ),
        *_scale_times(events, t0),
        *_cost(b, summary),
    ]
    lat_head = "".join(f"<th>{h}</th>" for h in ("", "p50", "p90", "p99", "p99.9", "max"))
    lat_rows = "".join(
        f"<tr><th class='l'>{label} (ms)</th>"
        + "".join(
            f"<td>{_ms(summary.get(f'{p}{suffix}'))}</td>" for p in ("p50", "p90", "p99", "p999", "max")
        )
        + "</tr>"
        for label, suffix in (("corrected", "_s"), ("uncorrected", "_uncorrected_s"))
    )
    figures = _plots(b, slo_p99_s)
    fig_html = "".join(
        f"<figure id='{stem}'><img alt='{html.escape(stem.replace('_', ' '))}' "
        f"src='data:image/png;base64,{base64.b64encode(_png(fig)).decode('ascii')}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for stem, caption, fig in figures
    )
    waterfall = (
        scale_out_waterfall(events, requests if len(requests) else None) if len(events) else pd.DataFrame()
    )
    plan_html = ""
    if slo_p99_s is not None and "step_rps" in intervals.columns and intervals["step_rps"].notna().any():
        from .analysis.capacity import plan_capacity

        plan_html = (
            "<h2>Capacity plan</h2>"
            + plan_capacity(
                intervals,
                slo_p99_s=slo_p99_s,
                instance_type=getattr(getattr(spec, "instance", None), "type", "t3.small"),
                region=getattr(spec, "region", None) or "us-east-1",
            )._repr_html_()
        )
    ev_cols = [c for c in ("timestamp", "kind", "target", "detail") if c in events.columns]
    settings = getattr(b, "load_settings", None)
    load_html = (
        f"<h2>Load settings</h2><pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>"
        if settings
        else ""
    )
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlops_lb report: {html.escape(str(name))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Throughput report: {html.escape(str(name))}</h1>
<p class="muted">{html.escape(str(getattr(b, "path", "") or ""))} · generated {generated}</p>
<p>{verdict}</p>
<h2>Summary</h2>
{_table(rows)}
<h2>Latency</h2>
<p class="muted">Corrected latency is measured from the intended send time (coordinated omission corrected);
uncorrected from the actual send.</p>
<table><tr>{lat_head}</tr>{lat_rows}</table>
<h2>Plots</h2>
{fig_html or "<p class='muted'>no data to plot</p>"}
{plan_html}
<h2>Scale-out waterfall</h2>
<p class="muted">Decision → launch → healthy (first passing check) → first request served by the new target.</p>
{_df_html(waterfall)}
<h2>Spec</h2>
<pre>{html.escape(_spec_text(spec))}</pre>
{load_html}
<h2>Events</h2>
{_df_html(events[ev_cols] if ev_cols else events)}
</body></html>
"""
    return doc, figures


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
        base = getattr(b, "path", None)
        if base is None:
            raise SpecError("out", "is required when the bundle has no folder (pass out='report.html')")
        target = Path(base) / "report.html"
    else:
        target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    doc, figures = _render(b, slo_p99_s)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(target)
    if png:
        for stem, _caption, fig in figures:
            (target.parent / f"{stem}.png").write_bytes(_png(fig))
    logger.info("wrote report %s (%d plots)", target, len(figures))
    return target
