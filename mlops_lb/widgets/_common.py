"""Helpers shared by the panels: a status table in HTML, messages, a stoppable ticker, a worker thread."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Targets still billed / still in the group; "terminated" rows are history.
LIVE_STATES = ("pending", "in_service", "draining")

_COLOURS = {"info": "#555", "busy": "#8a6d00", "ok": "#1a7f37", "error": "#b42318"}


def message_html(text: str, kind: str = "info") -> str:
    """A one-line coloured message (escaped) for an HTML widget."""
    colour = _COLOURS.get(kind, _COLOURS["info"])
    # white-space/overflow-wrap: a long reason wraps inside the panel instead of running past its edge, where an
    # ipywidgets HTML box (Voila, JupyterLab) clips it
    return (
        f'<div class="mlops-lb-msg mlops-lb-{kind}" style="color:{colour};white-space:normal;overflow-wrap:anywhere">'
        f"{html.escape(text)}</div>"
    )


def error_text(exc: BaseException) -> str:
    """``SpecError: capacity.min must be ...`` — the class name tells SpecError from ProvisionError."""
    return f"{type(exc).__name__}: {exc}"


def live_targets(status: pd.DataFrame) -> pd.DataFrame:
    """Rows of a ``fleet.status()`` frame that are still part of the group."""
    if "state" not in status.columns:
        return status
    return status[status["state"].isin(LIVE_STATES)]


def status_summary(status: pd.DataFrame) -> str:
    """``2 targets (2 healthy, 0 pending)`` for the live rows of a status frame."""
    live = live_targets(status)
    n = len(live)
    healthy = int((live["health"] == "healthy").sum()) if "health" in live.columns else 0
    pending = int((live["state"] == "pending").sum()) if "state" in live.columns else 0
    noun = "target" if n == 1 else "targets"
    return f"{n} {noun} ({healthy} healthy, {pending} pending)"


def status_table_html(status: pd.DataFrame) -> str:
    """Summary line plus a compact table of target, address, state, health, launched_at."""
    cols = [c for c in ("target", "address", "state", "health", "launched_at") if c in status.columns]
    live = live_targets(status)
    table = live[cols].to_html(index=False, border=0, classes="mlops-lb-status", na_rep="")
    summary = html.escape(status_summary(status))
    return f'<div class="mlops-lb-status-summary"><b>{summary}</b></div>{table}'


class Ticker:
    """Call ``fn`` every ``interval_s`` seconds on a daemon thread until :meth:`stop`.

    Exceptions from ``fn`` are logged and the ticker keeps going: a flaky status read must not kill the refresh.

    Example::

        t = Ticker(2.0, panel.refresh, name="status"); t.start(); ...; t.stop()
    """

    def __init__(self, interval_s: float, fn: Callable[[], Any], *, name: str = "ticker") -> None:
        self.interval_s = float(interval_s)
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlops-lb-{name}", daemon=True)

    def start(self) -> Ticker:
        """Start ticking; returns self."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True until stopped (or never started)."""
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop and wait (up to ``timeout``) for a tick in progress to finish."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._fn()
            except Exception:  # keep ticking; the panel shows its own errors
                log.exception("periodic %s failed", self._thread.name)


class PanelWorker:
    """The one thread a panel runs its slow calls on: the ``executor`` it was given, or its own, which
    :meth:`close` shuts down (a given executor belongs to the caller and is left running).

    Example::

        worker = PanelWorker(None, name="scale"); worker.submit(fleet.scale, desired=3); worker.close()
    """

    def __init__(self, executor: Executor | None, *, name: str) -> None:
        self._owned = executor is None
        self.executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"mlops-lb-{name}"
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """``executor.submit``: raises RuntimeError once the executor is shut down."""
        return self.executor.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Shut down an executor of our own without waiting; leave a given one alone."""
        if self._owned:
            self.executor.shutdown(wait=False)


def fleet_closed(fleet: Any) -> bool:
    """True once ``fleet.close()`` has run (the protocol's ``closed``)."""
    return fleet is not None and bool(fleet.closed)


def live_capacity(fleet: Any) -> tuple[int, int, int]:
    """The fleet's current ``(min, desired, max)``, read from the fleet (``fleet.capacity``), not from its spec."""
    cap = fleet.capacity
    return int(cap[0]), int(cap[1]), int(cap[2])


CLOSED_TEXT = "fleet closed: this panel no longer controls anything (open a new fleet to go on)"
