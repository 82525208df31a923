"""``mlops-lb demo``: the whole story on one machine in about two minutes.

A local fleet comes up from the bundled demo spec; load climbs past what one target can serve, latency rises, the
autoscaler adds targets, latency recovers; the load falls, targets drain away; a run bundle and its HTML report
are written. Everything is cleaned up, Ctrl-C included.

Example::

    from mlops_lb.demo import run_demo
    bundle_path = run_demo(duration_s=120)          # prints one line per interval, returns runs/<id>/
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .spec import FleetSpec

__all__ = ["demo_rates", "demo_schedule", "interval_line", "run_demo"]

log = logging.getLogger(__name__)

# (fraction of the run, fraction of the peak rate) corners of the demo's piecewise-linear load. The climb is
# steep (5 % of the run) on purpose: the peak is more than one target can serve, and target tracking needs three
# periods plus a boot to react, so latency visibly rises before new targets bring it back down. A slow ramp
# lets the autoscaler keep up and shows nothing.
_SHAPE = ((0.0, 0.12), (0.08, 0.12), (0.13, 1.0), (0.55, 1.0), (0.58, 0.05), (1.0, 0.05))


def demo_rates(spec: FleetSpec) -> tuple[float, float]:
    """(peak rps, target rps per target).

    The peak asks for ``max - 1`` targets at 95 % of the policy's target: far enough below a whole number of
    targets that per-period noise does not add one more, and above the 90 % scale-in line so the fleet holds.
    """
    target = spec.scaling.target_rps_per_target
    peak = 0.95 * target * max(spec.capacity.max - 1, 2)
    return peak, target


def demo_schedule(spec: FleetSpec, duration_s: float) -> np.ndarray:
    """Intended send offsets (seconds) of the demo load: low, ramp past capacity, hold, fall, stay low.

    The quiet tail lasts 42 % of the run, which must cover scale-in's 15 periods plus the deregistration delay;
    ``run_demo`` warns when it cannot.
    """
    from .load import piecewise

    peak, _ = demo_rates(spec)
    return piecewise([(x * duration_s, y * peak) for x, y in _SHAPE]).schedule()


def interval_line(row: dict[str, Any], t0: float, fleet: Any = None) -> str:
    """One interval of a run as the terminal shows it (``mlops-lb demo`` and ``mlops-lb load``).

    With a fleet, its healthy targets and desired capacity end the line. Example::

        interval_line({"offered_rps": 20, "achieved_rps": 20, "p99_s": 0.004, "errors": 0}, t0=time.time())
    """
    p99 = row.get("p99_s")
    p99_txt = f"{p99 * 1000:7.1f} ms" if p99 is not None and p99 == p99 else "      - ms"
    start: Any = row.get("interval_start")
    t = (start.timestamp() - t0) if hasattr(start, "timestamp") else 0.0
    err = int(row.get("errors", 0) or 0)
    line = (
        f"t={t:5.0f}s  offered {row.get('offered_rps', 0):6.1f} rps  achieved {row.get('achieved_rps', 0):6.1f} rps"
        f"  p99 {p99_txt}  errors {err:3d}"
    )
    if fleet is None:
        return line
    healthy, desired = fleet_counts(fleet)
    return f"{line}  healthy {healthy}  desired {desired}"


def fleet_counts(fleet: Any) -> tuple[int, int]:
    """(healthy targets, desired capacity) of a fleet, from ``status()`` and ``desired``."""
    try:
        st = fleet.status()
        healthy = int((st["health"] == "healthy").sum()) if len(st) else 0
    except Exception:  # status during shutdown: report nothing rather than crash the printout
        healthy = 0
    return healthy, int(fleet.capacity[1])


def run_demo(
    *,
    duration_s: float = 120.0,
    spec: FleetSpec | str | None = None,
    out: str | Path = "runs",
    stream: TextIO | None = None,
    stop: threading.Event | None = None,
    on_fleet: Callable[[Any], None] | None = None,
    **load_options: Any,
) -> Path:
    """Run the demo and return the run bundle's path. ``stream`` receives the printout (stdout by default).

    ``load_options`` go to the load run (``connections=``, ``workers=``, and the verdict's tolerance
    ``late_after_s=``, ``max_late_share=``, ``max_error_share=``); unset, the library's defaults apply, except
    ``connections`` which defaults to enough to stay open loop at the peak.
    """
    import mlops_lb as ml

    from .bundle import RunBundle
    from .report import write_report
    from .session import run_session
    from .summary import summary_rows, text_table

    out_stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=out_stream, flush=True)

    if spec is None:
        fleet_spec = FleetSpec.example("demo")
    elif isinstance(spec, FleetSpec):
        fleet_spec = spec
    else:
        fleet_spec = FleetSpec.from_yaml(spec)
    if duration_s < 20:
        from .errors import SpecError

        raise SpecError(
            "duration_s", f"must be at least 20 s for the demo to show scaling (got {duration_s:g})"
        )

    if load_options:  # a bad knob fails here, before a bundle or a process exists
        from .load.settings import LoadSettings

        LoadSettings(**load_options)
    peak, target = demo_rates(fleet_spec)
    local = fleet_spec.local
    scale_in_s = 15 * local.period_s + fleet_spec.target_group.deregistration_delay_s * local.time_scale
    if 0.42 * duration_s < scale_in_s + 2 * local.period_s:
        say(
            f"note: the quiet tail ({0.42 * duration_s:.0f} s) is shorter than scale-in needs (~{scale_in_s:.0f} s); "
            f"use a longer --duration-s to see targets drain away"
        )

    bundle = RunBundle.create(root=out, name=fleet_spec.name, spec=fleet_spec)
    report = Path(bundle.path) / "report.html"
    fleet = ml.open_fleet(fleet_spec, backend="local")
    interrupted = False
    try:
        say(f"mlops-lb demo: {fleet!r}")
        say(f"load: up to {peak:.0f} rps over {duration_s:.0f} s; the policy keeps {target:g} rps per target")
        fleet.launch(on_output=lambda line: say(f"  {line}"))
        if on_fleet is not None:
            on_fleet(fleet)
        say(f"fleet ready at {fleet.url}")
        import time

        t0 = time.time()
        profile = ml.load.trace(demo_schedule(fleet_spec, duration_s).tolist())
        try:
            # The session saves the fleet's data for the run's window and writes the report, Ctrl-C included.
            run_session(
                fleet,
                profile,
                bundle=bundle,
                **{"connections": _open_loop_connections(), **load_options},
                stop=stop,
                on_interval=lambda row: say(interval_line(row, t0, fleet)),
                on_phase=lambda phase: say(f"[{phase}]") if phase in ("draining", "writing report") else None,
            )
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted: keeping what was measured")
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted during launch")
    finally:
        try:
            if not report.exists():  # stopped before the session saved the fleet's data (during launch)
                bundle.capture(fleet)
        finally:
            fleet.close()
    if not report.exists():
        bundle.finalize()
        report = write_report(bundle.path)
    loaded = RunBundle.load(bundle.path)  # once: the summary and the window's scale events both come from it
    if loaded.summary:
        say("")
        say(text_table(summary_rows(loaded.summary, scale_events=_scale_counts(loaded))))
    say(f"run bundle: {bundle.path}")
    say(f"report:     {report}")
    if interrupted:
        raise KeyboardInterrupt
    return Path(bundle.path)


def _scale_counts(bundle: Any) -> tuple[int, int]:
    """(scale-outs, scale-ins) during the run, from the loaded bundle's own window."""
    ev = bundle.in_window().events
    if not len(ev):
        return 0, 0
    return int((ev["kind"] == "scale_out").sum()), int((ev["kind"] == "scale_in").sum())


def _open_loop_connections(wanted: int = 1024) -> int:
    """Connections for the demo's load: enough to stay open loop while an overloaded target holds requests.

    At the peak one target is ~50 rps short for several seconds, so hundreds of requests are outstanding; with
    fewer connections than that, new requests would wait for a free one and the run would (rightly) be flagged
    as generator-limited. Raises the soft open-file limit when it can (macOS defaults to 256).
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want_soft = min(hard if hard != resource.RLIM_INFINITY else 8192, 8192)
        if soft < want_soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want_soft, hard))
            soft = want_soft
    except (ImportError, ValueError, OSError):  # Windows, or a limit we may not raise
        return 256
    return max(64, min(wanted, soft // 4))
