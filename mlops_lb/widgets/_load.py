"""LoadTestPanel: pick a profile, Start/Stop a load test, watch p50/p99 and throughput live, get the report."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any
from urllib.parse import quote

import ipywidgets as w

from ..load.profiles import rate_kinds
from ..summary import html_table, summary_rows, verdict
from ._common import CLOSED_TEXT, PanelWorker, Ticker, error_text, fleet_closed, message_html
from ._liveplot import LivePlot

__all__ = ["PROFILES", "LoadTestPanel", "build_profile", "report_href"]

log = logging.getLogger(__name__)

#: The shapes the panel offers when this module is imported; the panel itself asks :func:`rate_kinds` when it is
#: built, so a shape registered in a notebook before that is offered too.
PROFILES = rate_kinds()


def build_profile(kind: str, rate: float, end_rate: float, duration_s: float) -> Any:
    """The ``ml.load`` profile the panel's inputs describe: :func:`mlops_lb.load.make_profile`, as the CLI does.

    ``constant``: ``rate`` for ``duration_s``; ``ramp``: ``rate`` → ``end_rate``; ``step``: four equal steps from
    ``rate`` to ``end_rate``; ``spike``: ``rate`` with a burst to ``end_rate`` from 1/3 of the run lasting 1/6.

    Example::

        build_profile("ramp", 10, 100, 30)      # ml.load.ramp(start_rps=10, end_rps=100, duration_s=30)
    """
    from .. import load
    from ..errors import SpecError

    kinds = rate_kinds()
    if kind not in kinds:
        raise SpecError("profile", f"must be one of {', '.join(kinds)} (got {kind!r})")
    # constant has one rate input, the first; the others read "from rate to end rate".
    rps = rate if kind == "constant" else end_rate
    return load.make_profile(kind, rps=rps, start_rps=rate, duration_s=duration_s)


class LoadTestPanel:
    """Start and stop a load test against a fleet (or a URL) and watch it live.

    Start checks the inputs (a wrong one is named, never replaced), then runs a
    :class:`~mlops_lb.session.RunSession`: a bundle under ``root`` (``root=None``: none), the load through
    ``start_load`` (``mlops_lb.load.start_load`` unless injected) with ``connections`` from its field, the fleet's
    data for the run's window and the report, whose link appears in ``report_html`` (``panel.report_path``).
    ``phase_html`` says what the run is doing (sending, draining in-flight requests, writing the report); Start
    stays disabled until all of that is over. The verdict names why a run is invalid (``fleet saturated``,
    ``generator lag``…) and the summary table gives each reason's fix. One load at a time per fleet: a second
    panel's Start says why it is refused. Every ``watch_s`` seconds the panel checks whether the fleet was closed and
    then disables Start with a visible reason (``watch_s=None``: only at Start; the cockpit drives it from its own
    tick). For a fleet the URL is ``fleet.url + "/predict"``.

    Example::

        panel = ml.widgets.LoadTestPanel(fleet)
        panel.profile_dropdown.value = "ramp"; panel.rate_input.value = 10; panel.end_rate_input.value = 80
        panel.duration_input.value = 20; panel.start_button.click()
        panel.wait(); panel.report_path
    """

    def __init__(
        self,
        fleet_or_url: Any,
        *,
        root: str | Path | None = "runs",
        start_load: Callable[..., Any] | None = None,
        payloads: Any = None,
        make_bundle: Callable[[str, Any], Any] | None = None,
        write_report: Callable[[Any], Any] | None = None,
        executor: Executor | None = None,
        plot: str = "auto",
        connections: int = 32,
        watch_s: float | None = 2.0,
        workers: int = 1,
        late_after_s: float | None = None,
        max_late_share: float = 0.01,
        max_error_share: float = 0.01,
        max_lag_p99_s: float | None = None,
    ) -> None:
        if max_lag_p99_s is not None and late_after_s is None:
            late_after_s = (
                max_lag_p99_s  # the old name of the tolerance (notebooks written before it was renamed)
            )
        if isinstance(fleet_or_url, str):
            self.fleet: Any = None
            self.url = fleet_or_url
            spec = None
        else:
            self.fleet = fleet_or_url
            self.url = ""  # read at Start: a fleet may be launched after the panel is built
            spec = fleet_or_url.spec
        self.spec = spec
        self.root = root
        self.payloads = payloads
        self._start_load = start_load
        self._make_bundle = make_bundle
        self._write_report = write_report
        self._executor = PanelWorker(executor, name="load")
        self._rows: list[dict[str, Any]] = []
        self._rows_lock = threading.Lock()
        self._t0 = 0.0
        self._duration_s = 1.0
        self._stopped = False
        self.run: Any = None
        self.bundle: Any = None
        self.result: Any = None
        self.report_path: Path | None = None
        self._future: Future[Any] | None = None
        self.session: Any = None
        self._phase_ticker: Ticker | None = None

        target = spec.scaling.target_rps_per_target if spec is not None else 20.0
        top = target * (spec.capacity.max if spec is not None else 4)
        style = {"description_width": "90px"}
        self.profile_dropdown = w.Dropdown(
            options=list(rate_kinds()), value="ramp", description="profile", style=style
        )
        # Unbounded inputs on purpose: a bounded one silently replaces -5 by its minimum; Start checks them
        # and says which value is wrong instead.
        self.rate_input = w.FloatText(
            value=round(target / 2, 1), step=1, description="rps (start)", style=style
        )
        self.end_rate_input = w.FloatText(value=round(top, 1), step=1, description="rps (end)", style=style)
        self.duration_input = w.FloatText(value=30.0, step=5, description="duration s", style=style)
        self.connections_input = w.IntText(
            value=int(connections),
            description="connections",
            style=style,
            tooltip="keep-alive connections of the generator (run_load's connections=); "
            "raise it when a saturated fleet holds every connection",
        )
        self.workers_input = w.IntText(
            value=int(workers),
            description="workers",
            style=style,
            tooltip="generator processes (run_load's workers=): raise it when the verdict says generator lag",
        )
        # The verdict's tolerance (LoadSettings' names). 0 = automatic: late means sent more than max(5 ms, 10 %
        # of the run's service-time p50) after its intended time.
        self.late_after_input = w.FloatText(
            value=float(late_after_s or 0.0),
            step=0.005,
            description="late after s",
            style=style,
            tooltip="a send is late when it leaves more than this after its intended time; 0 = automatic",
        )
        self.max_late_share_input = w.FloatText(
            value=float(max_late_share), step=0.01, description="max late", style=style,
            tooltip="INVALID when more than this share of sends is late where the rate suffered (0.01 = 1 %)",
        )  # fmt: skip
        self.max_error_share_input = w.FloatText(
            value=float(max_error_share), step=0.01, description="max errors", style=style,
            tooltip="INVALID when more than this share of requests fail, 4xx included (0.01 = 1 %)",
        )  # fmt: skip
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress", style=style)
        self.phase_html = w.HTML("")
        self.message = w.HTML(message_html("choose a profile and press Start"), layout=w.Layout(width="100%"))
        self.summary_html = w.HTML("", layout=w.Layout(width="100%"))
        self.report_html = w.HTML("")
        self.live_plot = LivePlot(plot)
        self.plot = self.live_plot.widget

        self.profile_dropdown.observe(lambda _c: self._sync_inputs(), names="value")
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self._sync_inputs()
        self.load_options()  # a bad keyword (workers=0, max_late_share=2) fails here, naming it
        # Notices fleet.close() between runs, so Start is disabled with a reason before anyone clicks it.
        self._watch: Ticker | None = None
        if watch_s and self.fleet is not None:
            self._watch = Ticker(watch_s, self.sync_fleet_state, name="load-watch").start()
        self._widget = w.VBox(
            [
                w.HTML("<b>Load test</b>"),
                w.HBox([self.profile_dropdown, self.duration_input]),
                w.HBox([self.rate_input, self.end_rate_input]),
                w.HBox([self.connections_input, self.workers_input]),
                w.HBox([self.late_after_input, self.max_late_share_input, self.max_error_share_input]),
                w.HBox([self.start_button, self.stop_button, self.progress, self.phase_html]),
                self.message,
                self.plot,
                self.summary_html,
                self.report_html,
            ]
        )

    # ------------------------------------------------------------------ display
    @property
    def widget(self) -> w.VBox:
        """The panel's root widget."""
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._widget)

    def _sync_inputs(self) -> None:
        # constant has one rate; for spike the second rate is the burst's.
        kind = self.profile_dropdown.value
        self.end_rate_input.disabled = kind == "constant"
        self.rate_input.description = (
            "rps" if kind == "constant" else ("base rps" if kind == "spike" else "rps (start)")
        )
        self.end_rate_input.description = "spike rps" if kind == "spike" else "rps (end)"

    # ------------------------------------------------------------------ actions
    def _checked_inputs(self) -> tuple[float, float, float, int]:
        """The inputs, or a SpecError naming the first one that is wrong (nothing is replaced silently)."""
        from ..errors import SpecError

        def positive(ctl: w.Widget, what: str) -> float:
            try:
                v = float(ctl.value)
            except (TypeError, ValueError):
                raise SpecError(what, f"must be a number (got {ctl.value!r})") from None
            if not v > 0 or v != v:
                raise SpecError(what, f"must be greater than 0 (got {v:g}); nothing was started")
            return v

        rate = positive(self.rate_input, self.rate_input.description)
        end = (
            rate
            if self.end_rate_input.disabled
            else positive(self.end_rate_input, self.end_rate_input.description)
        )
        duration = positive(self.duration_input, "duration s")
        conns = self.connections_input.value
        if not isinstance(conns, int) or conns < 1:
            raise SpecError(
                "connections", f"must be a whole number >= 1 (got {conns!r}); nothing was started"
            )
        return rate, end, duration, conns

    def load_options(self) -> dict[str, Any]:
        """The generator and verdict knobs of the inputs, as ``start_load`` keywords (checked by LoadSettings).

        Only what differs from the library's defaults is passed, so a default stays the library's. Example::

            panel.workers_input.value = 2; panel.load_options()   # {'connections': 32, 'workers': 2}
        """
        from ..errors import SpecError
        from ..load.settings import LoadSettings

        _r, _e, _d, conns = self._checked_inputs()
        opts: dict[str, Any] = {"connections": conns}
        workers = self.workers_input.value
        if workers != 1:
            opts["workers"] = workers
        late = float(self.late_after_input.value or 0.0)
        if late < 0 or late != late:
            raise SpecError(
                "late after s", f"must be 0 (automatic) or a positive number of seconds (got {late:g})"
            )
        names = {f.name for f in dataclasses.fields(LoadSettings)}
        if late > 0:
            # an engine without late_after_s (before issue 24) judged lateness by max_lag_p99_s
            opts["late_after_s" if "late_after_s" in names else "max_lag_p99_s"] = late
        for key, ctl in (
            ("max_late_share", self.max_late_share_input),
            ("max_error_share", self.max_error_share_input),
        ):
            value = float(ctl.value)
            if not 0 <= value <= 1:
                raise SpecError(
                    ctl.description, f"must be a fraction between 0 and 1, e.g. 0.01 (got {value:g})"
                )
            if value != 0.01:
                opts[key] = value
        try:
            LoadSettings(**opts)
        except TypeError as exc:
            raise SpecError(None, f"this load engine does not accept {sorted(opts)}: {exc}") from exc
        return opts

    def profile(self) -> Any:
        """The profile the inputs describe (see :func:`build_profile`)."""
        rate, end, duration, _ = self._checked_inputs()
        return build_profile(self.profile_dropdown.value, rate, end, duration)

    @property
    def running(self) -> bool:
        """True from Start until the run's report is written (or it failed)."""
        return self._future is not None and not self._future.done()

    def start(self) -> None:
        """Start a run in the background; problems are shown in ``message``."""
        from ..session import RunSession

        if self.running:
            self.message.value = message_html("a run is already going: Stop it first", "error")
            return
        if fleet_closed(self.fleet):
            self._show_closed()
            return
        self._stopped = False
        self.result = self.report_path = None
        self.summary_html.value = self.report_html.value = ""
        self.progress.value = 0.0
        self.progress.bar_style = ""
        with self._rows_lock:
            self._rows = []
        try:
            profile = self.profile()
            _rate, _end, duration, _conns = self._checked_inputs()
            options = self.load_options()
            self._duration_s = duration
            self.session = RunSession(
                self.fleet if self.fleet is not None else self.url,
                profile,
                out=self.root,
                name=getattr(self.spec, "name", None) or "load",
                payloads=self.payloads,
                on_interval=self._on_interval,
                on_phase=self._on_phase,
                start_load=self._start_load,
                make_bundle=self._make_bundle,
                write_report=self._write_report or _default_write_report(),
                **options,
            )
            self._t0 = time.monotonic()
            self.session.start()
        except Exception as exc:
            log.info("load test did not start: %s", exc)
            self.message.value = message_html(error_text(exc), "error")
            return
        self.run = self.session.run
        self.bundle = self.session.bundle
        url = self.session.url
        log.info("load test started against %s", url)
        # Start stays disabled until the run has ended *and* its report is written.
        self.start_button.disabled = True
        self.stop_button.disabled = False
        self.message.value = message_html(f"running {self.profile_dropdown.value} against {url}…", "busy")
        self._future = self._executor.submit(self._finish)
        self._phase_ticker = Ticker(0.5, self._tick_phase, name="load-phase").start()

    def _on_phase(self, phase: str) -> None:
        self._show_phase(phase)

    def _tick_phase(self) -> None:
        s = self.session
        if s is not None:
            self._show_phase(s.phase)

    def _show_phase(self, phase: str) -> None:
        s = self.session
        elapsed = s.elapsed_s if s is not None else 0.0
        if phase == "sending":
            self.progress.value = min(1.0, elapsed / self._duration_s)
            text = f"sending: {min(elapsed, self._duration_s):.0f} of {self._duration_s:g} s"
        elif phase == "draining":
            self.progress.value = 1.0
            self.progress.bar_style = "warning"
            late = max(0.0, elapsed - self._duration_s)
            text = f"draining in-flight requests: schedule over {late:.0f} s ago, waiting for the fleet's responses"
        elif phase == "writing report":
            text = "writing the report…"
        else:
            text = phase
        self.phase_html.value = message_html(
            text, "busy" if phase in ("sending", "draining", "writing report") else "info"
        )

    def stop(self) -> None:
        """Ask the running load to stop; what was measured is kept and reported."""
        if self.session is None or not self.running:
            return
        self._stopped = True
        self.stop_button.disabled = True
        self.message.value = message_html("stopping… (in-flight requests are still awaited)", "busy")
        self.session.stop()

    def wait(self, timeout: float | None = None) -> Path | None:
        """Block until the run is over and its report written; returns the report's path (or None)."""
        if self._future is not None:
            self._future.exception(timeout)
        return self.report_path

    def _on_interval(self, row: Mapping[str, Any]) -> None:
        # Called on the load's thread once per interval; must never raise into the load engine.
        try:
            with self._rows_lock:
                self._rows.append(dict(row))
                rows = list(self._rows)
            self.progress.value = min(1.0, (time.monotonic() - self._t0) / self._duration_s)
            self.live_plot.update(rows)
        except Exception:
            log.exception("live plot update failed")

    @property
    def intervals(self) -> list[dict[str, Any]]:
        """The interval rows received so far (a copy)."""
        with self._rows_lock:
            return list(self._rows)

    def _finish(self) -> None:
        try:
            outcome = self.session.finish()
        except Exception as exc:  # the session itself broke: say so, never leave Start disabled
            log.exception("load session failed")
            self.message.value = message_html(error_text(exc), "error")
            return
        finally:
            if self._phase_ticker is not None:
                self._phase_ticker.stop(timeout=0)
            self.start_button.disabled = fleet_closed(self.fleet)
            self.stop_button.disabled = True
        self.result = outcome.result
        if outcome.error is not None:
            log.info("load test failed: %s", outcome.error)
            self.message.value = message_html(error_text(outcome.error), "error")
        else:
            self.progress.value = 1.0
            v = verdict(outcome.summary)
            done = "stopped — kept what was measured" if self._stopped else "done"
            self.message.value = message_html(
                f"{done} — {v.headline}", "ok" if v.valid is not False else "error"
            )
            self.progress.bar_style = "success" if v.valid is not False else "danger"
        self.phase_html.value = message_html("ended", "info")
        summary = outcome.summary
        # Every reason whole: the table wraps in the panel's width rather than being clipped at its edge.
        self.summary_html.value = (
            f'<div style="white-space:normal;overflow-wrap:anywhere">{html_table(summary_rows(summary))}</div>'
            if summary
            else ""
        )
        if outcome.report_path is not None:
            self.report_path = outcome.report_path
            self.report_html.value = _report_link(self.report_path)
        elif outcome.report_error is not None:
            self.report_html.value = message_html("report: " + error_text(outcome.report_error), "error")

    def _show_closed(self) -> None:
        self.start_button.disabled = True
        self.stop_button.disabled = True
        self.message.value = message_html(CLOSED_TEXT, "error")

    def sync_fleet_state(self) -> None:
        """Disable Start with a visible message once the fleet is closed (the cockpit calls this each tick)."""
        if fleet_closed(self.fleet) and not self.running:
            self._show_closed()
            if self._watch is not None:
                self._watch.stop(timeout=0)

    def close(self) -> None:
        """Stop a running load and release the panel's threads."""
        self.stop()
        if self._watch is not None:
            self._watch.stop(timeout=0)
        self._executor.close()

    def __repr__(self) -> str:
        return (
            f"LoadTestPanel({self.profile_dropdown.value}, {self.rate_input.value:g}->{self.end_rate_input.value:g}"
            f" rps, {self.duration_input.value:g} s, running={self.running})"
        )


def _default_write_report() -> Callable[[Any], Any]:
    from ..report import write_report

    return write_report  # type: ignore[no-any-return]


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def _jupyter_servers() -> list[dict[str, Any]]:
    """The Jupyter servers of this user that are running (their ``root_dir`` and ``base_url``)."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    try:
        return list(list_running_servers())
    except Exception:  # a stale or unreadable runtime file: no link rather than no panel
        return []


def _under(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def report_href(path: Path) -> str:
    """Where a browser showing this kernel's notebook opens the report: served through Jupyter, not ``file://``.

    A browser does not open ``file://`` links from an ``http://`` page, so the link goes through the server that
    shows the notebook: under Voila (which sets ``VOILA_BASE_URL`` for its kernels) ``{base}voila/files/<path>``
    relative to the notebook's folder (Voila serves only files its ``file_allowlist`` names, images by default:
    start it with ``--VoilaConfiguration.file_allowlist="['.*\\.(png|jpg|gif|svg|html)']"``); in JupyterLab or
    Notebook ``{base_url}files/<path>`` relative to the server's root. Outside both, the ``file://`` URI.

    Example::

        report_href(Path("runs/2026-x/report.html"))   # '/voila/files/runs/2026-x/report.html' under Voila
    """
    voila = os.environ.get("VOILA_BASE_URL")
    if voila is not None:
        rel = _under(path, Path.cwd())
        if rel is not None:
            return voila.rstrip("/") + "/voila/files/" + quote(rel)
    for server in _jupyter_servers():
        root = server.get("root_dir") or server.get("notebook_dir")
        rel = _under(path, Path(root)) if root else None
        if rel is not None:
            base = str(server.get("base_url") or "/")
            return base.rstrip("/") + "/files/" + quote(rel)
    return path.resolve().as_uri()


def _report_link(path: Path) -> str:
    """The report's link (opens in a new tab, through Jupyter: :func:`report_href`) with its path to copy."""
    return (
        f'report: <a class="mlops-lb-report" href="{_esc(report_href(path))}" target="_blank" rel="noopener">'
        f"<code>{_esc(str(path))}</code></a>"
    )
