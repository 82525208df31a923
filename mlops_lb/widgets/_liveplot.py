"""The load panel's live figure: latency (p50, p99) and throughput (offered, achieved) as intervals arrive."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as w

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LivePlot"]


def _is_ipympl_backend() -> bool:
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    return "ipympl" in backend or backend == "widget"


class LivePlot:
    """Latency (p50, p99) and throughput (offered, achieved) against time since the start.

    With ``%matplotlib widget`` (ipympl) the figure is a live canvas widget; otherwise the figure is rendered to
    PNG and set as the single output of an Output widget — setting ``outputs`` is safe from the load's thread,
    where ``with output:`` capture is not.
    """

    def __init__(self, mode: str = "auto") -> None:
        self.mode = ("ipympl" if _is_ipympl_backend() else "static") if mode == "auto" else mode
        self.redraws = 0
        if self.mode == "ipympl":
            import matplotlib.pyplot as plt

            with plt.ioff():
                self.figure: Figure = plt.figure(figsize=(8, 3.2))
            self.widget: w.DOMWidget = self.figure.canvas  # type: ignore[assignment]
        else:
            from matplotlib.figure import Figure

            # A bare Figure (no pyplot): nothing global, nothing that needs the main thread.
            self.figure = Figure(figsize=(8, 3.2))
            self.widget = w.Output()
        self.lat_ax: Axes
        self.rps_ax: Axes
        self.lat_ax, self.rps_ax = self.figure.subplots(1, 2)
        # markers: a run of one interval is a point, and a line without markers would draw nothing
        self.lines = {
            "p50": self.lat_ax.plot([], [], marker="o", markersize=3, label="p50")[0],
            "p99": self.lat_ax.plot([], [], marker="o", markersize=3, label="p99")[0],
            "offered": self.rps_ax.plot([], [], marker="o", markersize=3, label="offered", linestyle="--")[0],
            "achieved": self.rps_ax.plot([], [], marker="o", markersize=3, label="achieved")[0],
        }
        self.lat_ax.set(title="latency (corrected)", xlabel="time since start (s)", ylabel="latency (ms)")
        self.rps_ax.set(title="throughput", xlabel="time since start (s)", ylabel="requests per second")
        for ax in (self.lat_ax, self.rps_ax):
            ax.legend(loc="upper left", fontsize="small")
            ax.grid(alpha=0.3)
            ax.set_xlim(0, 1)  # before the first interval: an honest empty frame, not -0.04…0.04
            ax.set_ylim(0, 1)
        self.figure.tight_layout()
        if isinstance(self.widget, w.Output):
            self.widget.outputs = (
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/plain": "live plot: waiting for the first interval…"},
                },
            )

    def update(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Redraw from every interval row so far."""
        if not rows:
            return
        xs = _seconds_since_first([r.get("interval_start") for r in rows])
        series = {
            "p50": [_ms(r.get("p50_s")) for r in rows],
            "p99": [_ms(r.get("p99_s")) for r in rows],
            "offered": [_num(r.get("offered_rps")) for r in rows],
            "achieved": [_num(r.get("achieved_rps")) for r in rows],
        }
        for name, ys in series.items():
            self.lines[name].set_data(xs, ys)
        right = max(max(xs), 1.0) * 1.05
        for ax, names in ((self.lat_ax, ("p50", "p99")), (self.rps_ax, ("offered", "achieved"))):
            finite = [y for n in names for y in series[n] if y == y]
            ax.set_xlim(left=0, right=right)
            ax.set_ylim(bottom=0, top=max(finite, default=1.0) * 1.15 or 1.0)  # head room for the top point
        self.redraws += 1
        if self.mode == "ipympl":
            self.figure.canvas.draw_idle()
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        buf = io.BytesIO()
        FigureCanvasAgg(self.figure).print_png(buf)
        png = base64.b64encode(buf.getvalue()).decode("ascii")
        assert isinstance(self.widget, w.Output)
        self.widget.outputs = (
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": png, "text/plain": f"<live plot, {len(rows)} intervals>"},
            },
        )


def _ms(v: Any) -> float:
    return _num(v) * 1000.0


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _seconds_since_first(stamps: list[Any]) -> list[float]:
    def secs(s: Any) -> float:
        if isinstance(s, datetime):
            return s.timestamp()
        if hasattr(s, "timestamp"):
            return float(s.timestamp())
        return _num(s)

    vals = [secs(s) for s in stamps]
    if not vals or vals[0] != vals[0]:
        return [float(i) for i in range(len(stamps))]
    return [v - vals[0] for v in vals]
