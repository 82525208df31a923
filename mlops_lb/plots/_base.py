"""What every figure shares: bare-Figure axes, time axes, latency axes that always carry numbers, plain text.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never through pyplot state,
so they render the same in a notebook, a headless test and the HTML report.

Example::

    from mlops_lb.plots._base import _axes, plain
    fig, ax = _axes(None); ax.set_title(plain("target $x$"))   # shown as written, never as mathtext
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

# one coercion rule (a DataFrame, or a bundle's attribute, or a LoadResult's method) for figures and analysis
from ..analysis.goodput import _frame as _frame  # re-exported for the figure modules
from ..analysis.goodput import _utc

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TimeAxis = Literal["relative", "utc"]

_PCTS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
_COLORS = {"p50": "tab:blue", "p90": "tab:green", "p99": "tab:orange", "p999": "tab:red"}
_ERROR_KINDS = ("timeout", "connect", "reset", "http_4xx", "http_5xx", "other")


# --------------------------------------------------------------------------- helpers
_FORMATTER_REGISTERED = False


def _show_figures_in_notebooks() -> None:
    """Let a bare Figure (no pyplot) display as a PNG when it is a notebook cell's last value.

    Figures built without pyplot have no inline display unless ``%matplotlib inline`` ran first; registering a
    PNG formatter for the Figure type makes ``plots.latency_over_time(r)`` show a picture in any kernel.
    """
    global _FORMATTER_REGISTERED
    if _FORMATTER_REGISTERED:
        return
    _FORMATTER_REGISTERED = True
    import sys

    ipython_mod = sys.modules.get("IPython")
    ip = ipython_mod.get_ipython() if ipython_mod is not None else None  # type: ignore[attr-defined]
    if ip is None:
        return
    from matplotlib.figure import Figure

    png = ip.display_formatter.formatters["image/png"]
    if not _has_type(png, Figure):  # %matplotlib inline registers its own; keep it
        png.for_type(Figure, _png_bytes)


def _has_type(formatter: Any, cls: type) -> bool:
    try:
        formatter.lookup_by_type(cls)
    except KeyError:
        return False
    return True


def _png_bytes(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _axes(ax: Axes | None, figsize: tuple[float, float] = (9.0, 4.0)) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    _show_figures_in_notebooks()
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _x(ts: pd.Series, time: TimeAxis, t0: Any) -> Any:
    """x values for timestamps: seconds since ``t0`` (default: the first timestamp) or naive UTC datetimes."""
    import pandas as pd

    ts = _utc(ts)
    if time == "utc":
        return ts.dt.tz_localize(None).to_numpy()
    if time != "relative":
        raise ValueError(f"time must be 'relative' or 'utc' (got {time!r})")
    start = ts.min() if t0 is None else pd.Timestamp(t0)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return (ts - start).dt.total_seconds().to_numpy()


def _latency_y(ax: Axes, what: str = "latency") -> None:
    """A latency axis in ms that always has numbers: linear when the data spans less than a decade, else log
    with ticks at 1-2-5 steps (10, 20, 50, 100 ms); the label says which."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    pos = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys]) if ys else np.zeros(0)
    if not pos.size:
        # Nothing positive to draw (every request failed): a log axis would raise at draw time.
        ax.text(0.5, 0.5, "no successful requests", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylabel(f"{what} (ms)")
        return
    lo, hi = float(pos.min()), float(pos.max())
    if hi / lo < 10.0:
        # A narrow range: on a log axis it would sit between two decade ticks with no number in sight.
        ax.set_ylim(bottom=0, top=hi * 1.1)
        ax.set_ylabel(f"{what} (ms)")
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=tuple(float(k) for k in range(1, 10))))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"{what} (ms, log scale)")


def _nominal(period_s: float) -> float:
    """The period a measured spacing stands for: 2.03577 s of real spacing is the nominal 2 s period."""
    if period_s <= 0 or not math.isfinite(period_s):
        return period_s
    nearest = round(period_s)
    if nearest >= 1 and abs(period_s - nearest) <= 0.05 * nearest:
        return float(nearest)
    return float(f"{period_s:.2g}")


def _markers(n: int) -> dict[str, Any]:
    """Markers for short series: a run of one interval is a single point, which a bare line does not draw."""
    return {"marker": "o", "markersize": 3} if n <= 60 else {}


def _time_label(ax: Axes, time: TimeAxis) -> None:
    ax.set_xlabel("time (UTC)" if time == "utc" else "time since start (s)")


def _metric_period(mf: pd.DataFrame, rcpt: pd.DataFrame) -> float:
    """Seconds one datapoint covers: RequestCountPerTarget's spacing, else the whole frame's, else CloudWatch's 60."""
    if len(rcpt) > 1:
        return _interval_s(rcpt["timestamp"])
    stamps = mf["timestamp"].drop_duplicates()
    return _interval_s(stamps) if len(stamps) > 1 else 60.0


def _interval_s(ts: pd.Series) -> float:
    d = _utc(ts).sort_values().diff().dt.total_seconds().dropna()
    d = d[d > 0]
    return float(d.median()) if len(d) else 1.0


def _spectrum_xy(p: Any) -> tuple[Any, Any]:
    import numpy as np

    p = np.asarray(p, dtype=float)
    if p.size == 0:  # a run whose every request failed has no latency spectrum
        return p, np.zeros(0, dtype=bool)
    if np.nanmax(p) > 1.0:  # percent, not fraction
        p = p / 100.0
    keep = (p >= 0) & (p < 1)
    return 1.0 / (1.0 - p[keep]), keep


def _spectrum_from_values(values: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(np.asarray(values, dtype=float))])
    if not len(v):
        return pd.DataFrame({"percentile": [], "latency_s": []})
    # Log-spaced in 1/(1-p), up to the resolution the sample supports.
    top = 1.0 - 1.0 / len(v)
    inv = np.logspace(0, math.log10(max(1.0 / (1.0 - top), 1.0)), 200)
    pct = 1.0 - 1.0 / inv
    return pd.DataFrame({"percentile": pct * 100.0, "latency_s": np.quantile(v, pct)})


def plain(text: Any) -> str:
    """``text`` as matplotlib shows it literally: every ``$`` escaped, so a pair never starts mathtext.

    A target id or run name is data: ``"a$b$c"`` made matplotlib parse ``$b$`` as math (and a malformed one,
    ``"$\\x$"``, raised at draw time and lost the whole report). Matplotlib's own rule: a backslash-escaped dollar
    sign is a literal dollar (https://matplotlib.org/stable/users/explain/text/mathtext.html, section "Special
    characters", read 2026-12-06); tests/reliability/test_hostile_bundles.py checks what is drawn.
    """
    return str(text).replace("$", r"\$")
