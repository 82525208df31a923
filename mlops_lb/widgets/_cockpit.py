"""FleetCockpit: scaling and load panels, a running cost meter and an optional, cancellable time to live."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import ipywidgets as w

from ._common import Ticker, error_text, live_targets, message_html
from ._load import LoadTestPanel
from ._scaling import ScalingPanel

__all__ = ["CostMeter", "FleetCockpit"]

log = logging.getLogger(__name__)

TAB_TITLES = ("Scaling", "Load test")
LOAD_STOP_TIMEOUT_S = 120.0  # a stopped load still awaits its in-flight requests and writes its report


class CostMeter:
    """Instance-hours and dollars, integrating a piecewise-constant instance count over time.

    Each :meth:`update` bills the *previous* count for the time since the previous update, so a count read at
    ``t`` is assumed to hold until the next read (what a status poll can know).

    Example::

        m = CostMeter(usd_per_hour=0.0208)
        m.update(0.0, 2); m.update(1800.0, 3)     # two instances for half an hour
        m.instance_hours, m.cost_usd              # (1.0, 0.0208)
    """

    def __init__(self, usd_per_hour: float | None) -> None:
        self.usd_per_hour = usd_per_hour
        self.instance_seconds = 0.0
        self._last: tuple[float, int] | None = None

    def update(self, now: float, instances: int) -> None:
        """Record ``instances`` running from ``now`` on (``now`` in seconds, any monotonic origin)."""
        if self._last is not None:
            t, n = self._last
            self.instance_seconds += n * max(0.0, now - t)
        self._last = (now, int(instances))

    @property
    def instances(self) -> int:
        """The count last recorded."""
        return 0 if self._last is None else self._last[1]

    @property
    def instance_hours(self) -> float:
        """Instance-hours so far."""
        return self.instance_seconds / 3600.0

    @property
    def cost_usd(self) -> float | None:
        """Dollars so far, or None without a price."""
        return None if self.usd_per_hour is None else self.instance_hours * self.usd_per_hour

    def text(self) -> str:
        """``3 instances · 0.0123 instance-h · $0.0003 (at $0.0208/h each)``."""
        base = f"{self.instances} instances · {self.instance_hours:.4f} instance-h"
        if self.usd_per_hour is None:
            return base + " · price unknown"
        return base + f" · ${self.cost_usd:.4f} (at ${self.usd_per_hour:.4f}/h each)"


def default_price(spec: Any) -> float | None:
    """On-demand price of the spec's instance type in its region (us-east-1 if unset), or None if unknown."""
    from ..analysis import hourly_price

    try:
        return float(hourly_price(spec.instance.type, spec.region or "us-east-1"))
    except Exception as exc:  # an unknown type must not break the cockpit; the meter says "price unknown"
        log.info("no price for %s: %s", spec.instance.type, exc)
        return None


class FleetCockpit:
    """The scaling panel, the load-test panel, a cost meter and an optional time to live, in one view.

    Every ``refresh_s`` a daemon thread reads ``fleet.status()``, bills the live targets (pending, in service or
    draining) at ``price_per_hour`` (default: the spec's instance type from ``mlops_lb.analysis.hourly_price``) and
    counts the time to live down. When it reaches zero the fleet is closed (local) or destroyed
    (``fleet.destroy(confirm=stack_name)`` when the fleet has ``destroy``, i.e. AWS); ``cancel_ttl_button`` stops
    the countdown. ``clock`` is injectable so tests can drive :meth:`tick` by hand.

    Example::

        cockpit = ml.widgets.FleetCockpit(fleet, ttl_s=1800)   # closed/destroyed after 30 minutes unless cancelled
        cockpit
        cockpit.close()                                         # stops the timers; the fleet stays up
    """

    def __init__(
        self,
        fleet: Any,
        *,
        price_per_hour: float | None = None,
        ttl_s: float | None = None,
        refresh_s: float | None = 2.0,
        executor: Executor | None = None,
        start_load: Callable[..., Any] | None = None,
        root: str | Path | None = "runs",
        clock: Callable[[], float] = time.monotonic,
        **load_options: Any,
    ) -> None:
        self.fleet = fleet
        self._clock = clock
        self._lock = threading.Lock()
        # One ticker (the cockpit's) drives the status table too, so status is read once per tick.
        self.scaling = ScalingPanel(fleet, refresh_s=None, executor=executor)
        self.load = LoadTestPanel(fleet, root=root, start_load=start_load, watch_s=None, **load_options)
        price = price_per_hour if price_per_hour is not None else default_price(fleet.spec)
        self.meter = CostMeter(price)
        self.cost_html = w.HTML(message_html("cost: not measured yet"))
        self.ttl_html = w.HTML(message_html("no time to live: the fleet stays up until you close it"))
        self.cancel_ttl_button = w.Button(
            description="Cancel time to live", icon="ban", disabled=ttl_s is None
        )
        self.cancel_ttl_button.on_click(lambda _b: self.cancel_ttl())
        self.ttl_s = ttl_s
        self.deadline: float | None = None if ttl_s is None else clock() + float(ttl_s)
        self.expired = False
        self.stack_name = getattr(fleet, "stack_name", None) or fleet.spec.name
        self.tabs = w.Tab(children=[self.scaling.widget, self.load.widget], titles=TAB_TITLES)
        self._widget = w.VBox(
            [
                w.HTML(f"<h3>Fleet cockpit — {fleet.spec.name}</h3>"),
                w.HBox([self.cost_html]),
                w.HBox([self.ttl_html, self.cancel_ttl_button]),
                self.tabs,
            ]
        )
        # The first tick may already pass the deadline (a time to live shorter than this set-up on a busy machine)
        # and close the fleet; _expire() reads _ticker, so it exists first, and no ticker starts for a closed fleet.
        self._ticker: Ticker | None = None
        self.tick()
        self._ticker = (
            Ticker(refresh_s, self.tick, name="cockpit").start() if refresh_s and not self.expired else None
        )

    # ------------------------------------------------------------------ display
    @property
    def widget(self) -> w.VBox:
        """The cockpit's root widget."""
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._widget)

    # ------------------------------------------------------------------ periodic work
    @property
    def is_aws(self) -> bool:
        """True when the fleet can be destroyed (an AWS stack), False for a local fleet."""
        return callable(getattr(self.fleet, "destroy", None))

    def remaining_s(self, now: float | None = None) -> float | None:
        """Seconds until the time to live ends, or None when there is none (or it was cancelled)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - (self._clock() if now is None else now))

    def tick(self) -> None:
        """Read the status, bill it, and count the time to live down (the ticker calls this)."""
        with self._lock:
            if self.expired:
                return
            now = self._clock()
            status = self.scaling.refresh()
            self.load.sync_fleet_state()
            if self.scaling.closed:
                self.cost_html.value = message_html(
                    "cost: " + self.meter.text() + " · fleet closed, no longer billed"
                )
                return
            if status is not None:
                self.meter.update(now, len(live_targets(status)))
                self.cost_html.value = message_html("cost: " + self.meter.text())
            left = self.remaining_s(now)
            if left is None:
                return
            action = "destroy the stack " + self.stack_name if self.is_aws else "close the fleet"
            if left > 0:
                kind = "busy" if left <= 60 else "info"
                self.ttl_html.value = message_html(
                    f"time to live: {_clock_text(left)} left, then {action}", kind
                )
                return
            self._expire(action)

    def _expire(self, action: str) -> None:
        self.expired = True
        self.cancel_ttl_button.disabled = True
        log.info("time to live over for %s: %s", self.fleet.spec.name, action)
        if self.load.running:
            # The load first: closing the fleet under a running load would record its last seconds as the
            # fleet's errors and leave the report unwritten. Stop keeps what was measured and writes the report.
            self.ttl_html.value = message_html(
                f"time to live over: stopping the load test, then {action}…", "busy"
            )
            self.load.stop()
            self.load.wait(timeout=LOAD_STOP_TIMEOUT_S)
        self.ttl_html.value = message_html(f"time to live over: {action}…", "busy")
        try:
            if self.is_aws:
                self.fleet.destroy(confirm=self.stack_name)
            else:
                self.fleet.close()
        except Exception as exc:
            self.ttl_html.value = message_html(f"time to live: {action} failed — {error_text(exc)}", "error")
            return
        why = f"the cockpit's time to live ({_clock_text(self.ttl_s or 0)}) {'destroyed the stack' if self.is_aws else 'closed the fleet'}"
        self.ttl_html.value = message_html(f"time to live over: {why}", "ok")
        self.scaling.refresh()  # sees the closed fleet: sliders and Apply disabled
        self.scaling.message.value = message_html(
            f"fleet closed: {why}; this panel no longer controls anything", "error"
        )
        self.load.sync_fleet_state()
        self.load.message.value = message_html(f"fleet closed: {why}; Start is disabled", "error")
        self.tabs.titles = tuple(f"{t} (closed)" for t in TAB_TITLES)
        self.scaling.close()
        if self._ticker is not None:
            self._ticker.stop(timeout=0)

    def cancel_ttl(self) -> None:
        """Cancel the countdown; the fleet stays up."""
        with self._lock:
            if self.expired or self.deadline is None:
                return
            self.deadline = None
            self.cancel_ttl_button.disabled = True
            self.ttl_html.value = message_html(
                "time to live cancelled: the fleet stays up until you close it", "ok"
            )
        log.info("time to live cancelled for %s", self.fleet.spec.name)

    def close(self) -> None:
        """Stop the timers and a running load; the fleet itself is left alone."""
        if self._ticker is not None:
            self._ticker.stop()
        self.scaling.close()
        self.load.close()

    def __repr__(self) -> str:
        return f"FleetCockpit({self.fleet.spec.name!r}, {self.meter.text()})"


def _clock_text(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
