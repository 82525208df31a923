"""A run session: fleet + load profile -> run bundle (records, fleet data) -> report, written once.

``mlops-lb demo``, ``mlops-lb load`` and the load-test panel all go through :class:`RunSession`, so every bundle
has the same tables (requests, intervals, metrics, events, decisions, status, summary) and every report is cut to
its run's own window. A session also owns the two promises the panels make:

- **phases**: ``starting`` → ``sending`` → ``draining`` (every engine has sent its last request, responses are
  still due: the run's own ``send_end_s``, never a wall-clock guess) → ``writing report`` → ``done`` (or
  ``failed``); ``on_phase`` hears each change.
- **one load at a time per fleet**: a second session on a fleet that has one running raises
  :class:`~mlops_lb.errors.LoadTestError` saying which one.

It also writes the run's facts once (``run.json``: start, end, send end, metric period, backend), which the
window, the report and the replay read instead of guessing them again, and saves the fleet's metrics and events
into the bundle while the run goes (every :data:`CAPTURE_EVERY_S` seconds, or the metric period if longer), so a
session killed mid-run keeps them.

Example::

    import mlops_lb as ml
    out = ml.run_session(fleet, ml.load.ramp(10, 80, 20), out="runs")
    out.report_path, out.summary["p99_s"]

    s = ml.RunSession(fleet, ml.load.constant(50, 600)).start()   # in the background; s.phase, s.stop()
    outcome = s.finish()
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .errors import LoadTestError, SpecError

__all__ = ["PHASES", "RunSession", "SessionOutcome", "run_session"]

log = logging.getLogger(__name__)

PHASES = ("starting", "sending", "draining", "writing report", "done", "failed")
CAPTURE_EVERY_S = 5.0
SEND_END_POLL_S = 0.05
"""How often a session asks its run whether sending is over (``LoadRun.send_end_s``), for the draining phase."""
"""Seconds between two saves of the fleet's metrics and events while a run goes (at least one metric period)."""

_RUNNING: dict[int, RunSession] = {}  # id(fleet) -> its running session
_RUNNING_LOCK = threading.Lock()


@dataclass
class SessionOutcome:
    """What a finished session left: the load's result (None if it failed), the bundle and the report.

    Example::

        outcome = run_session(fleet, profile); outcome.report_path; outcome.summary.get("valid")
    """

    result: Any
    bundle_path: Path | None
    report_path: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    report_error: BaseException | None = None
    capture_failed: list[str] = field(default_factory=list)


class RunSession:
    """One load run against a fleet (or a bare URL), with its bundle and report. See the module docstring.

    ``start_load``, ``make_bundle`` and ``write_report`` are injectable seams (tests, other engines); the
    defaults are :func:`mlops_lb.load.start_load`, :meth:`RunBundle.create` and
    :func:`mlops_lb.report.write_report`. ``bundle`` reuses an existing bundle (the demo creates it before the
    launch); ``out=None`` runs without a bundle or report. Other keywords (``connections=``, ``timeout_s=`` …)
    go to ``start_load``. ``path`` is where a fleet's load goes (``/v1/chat/completions`` for an LLM fleet).

    Example::

        s = RunSession(fleet, ml.load.ramp(10, 80, 20), on_phase=print).start()
        s.phase            # 'sending'
        s.finish().report_path
    """

    def __init__(
        self,
        fleet_or_url: Any,
        profile: Any,
        *,
        out: str | Path | None = "runs",
        bundle: Any = None,
        name: str | None = None,
        payloads: Any = None,
        on_interval: Callable[[dict[str, Any]], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
        start_load: Callable[..., Any] | None = None,
        make_bundle: Callable[[str, Any], Any] | None = None,
        write_report: Callable[[Any], Any] | None = None,
        report: bool = True,
        path: str = "/predict",
        **load_options: Any,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError("path", f"must be a URL path starting with '/' such as '/predict' (got {path!r})")
        self.path = path
        if isinstance(fleet_or_url, str):
            self.fleet: Any = None
            self._url = fleet_or_url
        else:
            self.fleet = fleet_or_url
            self._url = ""
        self.profile = profile
        self.spec = getattr(self.fleet, "spec", None)
        self.out = out
        self.bundle = bundle
        self.name = name or getattr(self.spec, "name", None) or "load"
        self.payloads = payloads
        self._on_interval = on_interval
        self._on_phase = on_phase
        self._start_load = start_load
        self._make_bundle = make_bundle
        self._write_report = write_report
        self._report = report
        self.load_options = load_options
        self.run: Any = None
        self._phase = "starting"
        self._t0 = 0.0
        self.outcome: SessionOutcome | None = None
        self.backend = backend_name(self.fleet)
        self.metric_period_s = metric_period_s(self.fleet, self.backend)
        self._capture_stop = threading.Event()
        self._capture_thread: threading.Thread | None = None
        self._phase_lock = threading.Lock()

    # ------------------------------------------------------------------ state
    @property
    def url(self) -> str:
        """The load's target: the URL given, or ``fleet.url + path`` (read at start)."""
        return self._url or str(self.fleet.url).rstrip("/") + self.path

    @property
    def phase(self) -> str:
        """One of :data:`PHASES`. ``sending`` turns into ``draining`` when the run says every engine has sent its
        last request (``LoadRun.send_end_s``): a generator that lags past the schedule is still sending, a stopped
        run drains at once. Reading it changes nothing."""
        return self._phase

    @property
    def schedule_s(self) -> float:
        """The profile's scheduled duration in seconds."""
        try:
            return float(self.profile.duration_s)
        except (AttributeError, TypeError, ValueError):
            return float("inf")

    @property
    def elapsed_s(self) -> float:
        """Seconds since the load started (0 before)."""
        return time.monotonic() - self._t0 if self._t0 else 0.0

    def _set_phase(self, phase: str, *, only_from: str | None = None) -> None:
        with self._phase_lock:
            if phase == self._phase or (only_from is not None and self._phase != only_from):
                return
            self._phase = phase
        if self._on_phase is not None:
            try:
                self._on_phase(phase)
            except Exception:
                log.exception("on_phase callback failed")

    # ------------------------------------------------------------------ run
    def start(self) -> RunSession:
        """Claim the fleet, create the bundle and start the load in the background; returns self.

        Raises :class:`LoadTestError` when a load is already running against the fleet, and whatever the load
        module raises for a bad profile or URL (before anything is sent).
        """
        key = id(self.fleet) if self.fleet is not None else None
        if key is not None:
            with _RUNNING_LOCK:
                other = _RUNNING.get(key)
                if other is not None and other.running:
                    raise LoadTestError(
                        f"a load test is already running against this fleet ({other.profile.describe()}, "
                        f"{other.phase}); stop it first — two loads at once would measure neither"
                    )
                _RUNNING[key] = self
        made_bundle = False
        from ._owner import sweep_orphans

        sweep_orphans()  # record folders of sessions that were killed (SIGKILL never runs their cleanup)
        try:
            url = self.url
            if self.bundle is None and self.out is not None:
                made_bundle = True
                if self._make_bundle is not None:
                    self.bundle = self._make_bundle(self.name, self.spec)
                else:
                    from .bundle import RunBundle

                    self.bundle = RunBundle.create(root=self.out, name=self.name, spec=self.spec)
            start_load = self._start_load
            if start_load is None:
                from .load import start_load as default_start

                start_load = default_start
            self._write_facts(start=datetime.now(timezone.utc))
            self._t0 = time.monotonic()
            self.run = start_load(
                url,
                self.profile,
                self.payloads,
                on_interval=self._interval,
                progress=False,
                bundle=self.bundle,
                **self.load_options,
            )
        except BaseException:
            if made_bundle and self.bundle is not None:
                # the load refused its input before sending anything: the bundle made for it holds nothing
                import shutil

                shutil.rmtree(self.bundle.path, ignore_errors=True)
                self.bundle = None
            self._release()
            self._set_phase("failed")
            raise
        self._set_phase("sending")
        self._start_capture()
        threading.Thread(target=self._watch_send_end, name="mlops-lb-phase", daemon=True).start()
        return self

    def _check_send_end(self) -> None:
        if _send_ended(self.run):
            self._set_phase("draining", only_from="sending")  # never back from writing report or done

    def _watch_send_end(self) -> None:
        """sending -> draining as soon as the run's engines have all sent their last request (polls the run)."""
        while self._phase == "sending" and self.run is not None and not _done(self.run):
            self._check_send_end()
            time.sleep(SEND_END_POLL_S)
        self._check_send_end()

    # ------------------------------------------------------------------ facts and fleet tables
    def _write_facts(self, **times: Any) -> None:
        """Write ``run.json`` (best effort: a bundle that cannot take it still gets its records)."""
        write = getattr(self.bundle, "write_facts", None)
        if not callable(write):
            return
        from .bundle import RunFacts

        try:
            write(RunFacts(metric_period_s=self.metric_period_s, backend=self.backend, **times))
        except Exception as exc:
            log.warning("could not write the run's facts: %s", exc)

    def _start_capture(self) -> None:
        """Save the fleet's metrics and events into the bundle as the run goes (a killed session keeps them)."""
        if self.fleet is None or not callable(getattr(self.bundle, "capture", None)):
            return
        every = max(CAPTURE_EVERY_S, self.metric_period_s or 0.0)
        start = datetime.now(timezone.utc) - timedelta(seconds=self.metric_period_s or 0.0)

        def loop() -> None:
            while not self._capture_stop.wait(every):
                try:
                    self.bundle.capture(self.fleet, start=start, tables=("metrics", "events"))
                except Exception as exc:  # never let a side save end the run
                    log.debug("periodic capture failed: %s", exc)

        self._capture_thread = threading.Thread(target=loop, name="mlops-lb-capture", daemon=True)
        self._capture_thread.start()

    def _stop_capture(self) -> None:
        self._capture_stop.set()
        t = self._capture_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)

    def _interval(self, row: dict[str, Any]) -> None:
        self._check_send_end()
        if self._on_interval is not None:
            self._on_interval(row)

    @property
    def running(self) -> bool:
        """True from start until the report is written (or the run failed)."""
        return self._phase in ("sending", "draining", "writing report")

    def stop(self) -> None:
        """Ask the load to stop now; what was measured is kept and reported by :meth:`finish`."""
        if self.run is not None and self.running:
            self.run.stop()

    def finish(self, timeout: float | None = None) -> SessionOutcome:
        """Wait for the load, save the fleet's data for the run's window, finalize and write the report.

        A failed load still saves and reports what it measured; its error is in ``outcome.error``. A report that
        cannot be written (``StorageError``) is in ``outcome.report_error``: the records are kept either way.
        """
        if self.run is None:
            raise LoadTestError("the session was not started: call start() first")
        result = None
        error: BaseException | None = None
        try:
            result = self.run.result(timeout) if timeout is not None else self.run.result()
        except Exception as exc:  # a failure mid-run: keep what was measured
            error = exc
        try:
            self._stop_capture()
            ended = datetime.now(timezone.utc)
            started = getattr(result, "started_at", None)
            duration = getattr(result, "duration_s", None)
            if started is not None:
                # the engines' own send end when the run knows it; else the result's duration (the same when
                # the generator kept up, or the stop's offset)
                sent_s = getattr(self.run, "send_end_s", None)
                if not _is_offset(sent_s):
                    sent_s = duration
                send_end = started + timedelta(seconds=float(sent_s)) if sent_s is not None else None
                self._write_facts(start=_ts(started), end=_ts(max(ended, started)), send_end=_ts(send_end))
            summary = _summary(result)
            self._set_phase("writing report")
            outcome = self._save(result, summary, error)
        finally:
            self._release()
        self._set_phase("failed" if error is not None else "done")
        self.outcome = outcome
        return outcome

    def _save(self, result: Any, summary: dict[str, Any], error: BaseException | None) -> SessionOutcome:
        b = self.bundle
        outcome = SessionOutcome(
            result=result, bundle_path=None, report_path=None, summary=summary, error=error
        )
        if b is None:
            return outcome
        outcome.bundle_path = Path(getattr(b, "path", b))
        if self.fleet is not None and callable(getattr(b, "capture", None)):
            outcome.capture_failed = b.capture(self.fleet, start=_window_start(result, self.metric_period_s))
        if callable(getattr(b, "finalize", None)):
            b.finalize()
        if self._report:
            try:
                writer = self._write_report
                if writer is None:
                    from .report import write_report

                    writer = write_report
                outcome.report_path = Path(writer(outcome.bundle_path)).resolve()
            except Exception as exc:
                log.warning("report failed: %s", exc)
                outcome.report_error = exc
        return outcome

    def _release(self) -> None:
        if self.fleet is None:
            return
        with _RUNNING_LOCK:
            if _RUNNING.get(id(self.fleet)) is self:
                del _RUNNING[id(self.fleet)]

    def __repr__(self) -> str:
        return f"RunSession({getattr(self.profile, 'describe', lambda: '?')()} -> {self._url or 'fleet'}, {self._phase})"


def _summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    try:
        return dict(result.summary())
    except Exception:
        log.exception("summary failed")
        return {}


def _window_start(result: Any, period_s: float | None) -> Any:
    """Where the fleet data of a run starts: one metric period before the load (that period covers its start)."""
    started = getattr(result, "started_at", None)
    if started is None:
        return None
    return started - timedelta(seconds=period_s or 0.0)


def _ts(t: Any) -> Any:
    import pandas as pd

    return None if t is None else pd.Timestamp(t)


def backend_name(fleet: Any) -> str | None:
    """The registered backend name of ``fleet`` (``"local"``, ``"aws"`` …), None for a bare URL.

    A fleet may say it itself (``fleet.backend``); otherwise its class is looked up among the registered
    backends whose module is already imported (nothing is imported to answer), else its class name.

    Example::

        backend_name(ml.open_fleet(spec))   # 'local'
    """
    if fleet is None:
        return None
    own = getattr(fleet, "backend", None)
    if isinstance(own, str) and own:
        return own
    from .fleet import backend_names, get_backend

    for name in backend_names():
        module, _, cls = get_backend(name).target.partition(":")
        mod = sys.modules.get(module)
        if mod is not None and getattr(mod, cls, None) is type(fleet):
            return name
    return type(fleet).__name__


def metric_period_s(fleet: Any, backend: str | None = None) -> float | None:
    """Seconds one of ``fleet``'s metric datapoints covers: ``fleet.metric_period_s`` (the Fleet protocol);
    for a fleet that predates it, ``spec.local.period_s`` on the local backend only and CloudWatch's 60 s on
    AWS; None when unknown (the readers then use the metrics' own spacing).

    Example::

        metric_period_s(fleet)    # 2.0 for the demo's local fleet, 60.0 on AWS
    """
    if fleet is None:
        return None
    period = getattr(fleet, "metric_period_s", None)
    if isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0:
        return float(period)
    backend = backend if backend is not None else backend_name(fleet)
    if backend == "local":
        local = getattr(getattr(fleet, "spec", None), "local", None)
        value = getattr(local, "period_s", None)
        return float(value) if isinstance(value, (int, float)) and value > 0 else None
    if backend == "aws":
        return 60.0  # CloudWatch's finest period for ELB and ASG metrics
    return None


def running_session(fleet: Any) -> RunSession | None:
    """The session running against ``fleet`` now, if any."""
    with _RUNNING_LOCK:
        s = _RUNNING.get(id(fleet))
    return s if s is not None and s.running else None


def run_session(
    fleet_or_url: Any,
    profile: Any,
    *,
    out: str | Path | None = "runs",
    stop: threading.Event | None = None,
    **options: Any,
) -> SessionOutcome:
    """Run ``profile`` against a fleet (or URL) to the end and return the :class:`SessionOutcome`.

    ``stop`` (a ``threading.Event``) ends the load early; Ctrl-C does too and is re-raised after the bundle and
    report are written. Other keywords: see :class:`RunSession`.

    Example::

        outcome = run_session(fleet, ml.load.constant(40, 10), out="runs", connections=64)
        print(outcome.report_path)
    """
    session = RunSession(fleet_or_url, profile, out=out, **options).start()
    interrupted = False
    try:
        while session.run is not None and not _done(session.run):
            if stop is not None and stop.wait(0.1):
                session.stop()
                stop = None
            elif stop is None:
                time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        session.stop()
    outcome = session.finish()
    if interrupted:
        raise KeyboardInterrupt
    return outcome


def _is_offset(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _send_ended(run: Any) -> bool:
    """True once ``run.send_end_s`` (seconds into the run when every engine had sent its last request) is known;
    a handle without it never reports draining (the session goes from sending to writing report)."""
    return _is_offset(getattr(run, "send_end_s", None))


def _done(run: Any) -> bool:
    done = getattr(run, "done", None)
    if isinstance(done, bool):
        return done
    return True  # a handle without ``done`` is waited for in finish()
