"""ScalingPanel: sliders for the Auto Scaling group's bounds and the target-tracking value, and a live status table."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._common import (
    CLOSED_TEXT,
    PanelWorker,
    Ticker,
    error_text,
    fleet_closed,
    live_capacity,
    message_html,
    status_table_html,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..fleet import Fleet

__all__ = ["ScalingPanel"]

log = logging.getLogger(__name__)


class ScalingPanel:
    """Scale a fleet with sliders; Apply runs ``fleet.scale`` off the kernel's main thread.

    The sliders start at the fleet's *live* capacity and target (``fleet.capacity``, not the spec it was opened
    with) and follow it on every refresh until you move one; then the panel says which changes are not applied
    yet. They always keep ``min <= desired <= max``. Apply sends the bounds, and ``desired`` or the target only
    when you changed them, so changing the target alone never resets desired capacity; what the fleet then
    reports is shown, not the slider values. Errors (``SpecError``, ``ProvisionError``…) appear in
    ``panel.message`` instead of as a traceback. After ``fleet.close()`` the panel says so and disables itself.
    The status table (``panel.status_html``) is refreshed every ``refresh_s`` seconds by a daemon thread until
    :meth:`close`; ``refresh_s=None`` (or 0) refreshes only on demand.

    Example::

        panel = ml.widgets.ScalingPanel(fleet)
        panel                                   # the last line of a cell shows it
        panel.desired_slider.value = 2; panel.apply_button.click(); panel.wait()
        panel.close()                           # stops the periodic refresh
    """

    def __init__(
        self,
        fleet: Fleet | Any,
        *,
        refresh_s: float | None = 2.0,
        executor: Executor | None = None,
        max_limit: int | None = None,
    ) -> None:
        self.fleet = fleet
        spec = fleet.spec
        lo, want, hi = live_capacity(fleet)
        limit = max_limit if max_limit is not None else max(10, 2 * hi, 2 * spec.capacity.max)
        self._executor = PanelWorker(executor, name="scale")
        self._pending: Future[Any] | None = None
        self._adjusting = False  # guards the constraint observers against re-entering each other
        self._lock = threading.Lock()
        self.last_status: pd.DataFrame | None = None
        self._applied_target = float(spec.scaling.target_rps_per_target)
        # The live values last written into the sliders: a slider that differs from them is an unapplied change.
        self._synced: dict[str, float] = {}
        self._applied_live: dict[str, float] | None = None  # the live values right after the last Apply
        self._applied_text = ""
        self.closed = False

        style = {"description_width": "150px"}
        layout = w.Layout(width="420px")
        self.min_slider = w.IntSlider(
            value=lo, min=0, max=limit, description="min", style=style, layout=layout
        )
        self.desired_slider = w.IntSlider(
            value=want, min=0, max=limit, description="desired", style=style, layout=layout
        )
        self.max_slider = w.IntSlider(
            value=hi, min=1, max=limit, description="max", style=style, layout=layout
        )
        target = float(spec.scaling.target_rps_per_target)
        self.target_slider = w.FloatSlider(
            value=target,
            min=0.5,
            max=max(10.0, 4 * target),
            step=0.5,
            description="target rps / target",
            style=style,
            layout=layout,
        )
        self.apply_button = w.Button(
            description="Apply",
            button_style="primary",
            icon="check",
            tooltip="fleet.scale(min, desired, max, target_rps_per_target)",
        )
        self.refresh_button = w.Button(
            description="Refresh", icon="refresh", tooltip="read fleet.status() now"
        )
        self.message = w.HTML(message_html("move the sliders, then Apply"))
        self.pending_html = w.HTML("")
        self.status_html = w.HTML(message_html("status not read yet"))
        self._sync_from_fleet(force=True)

        self.min_slider.observe(self._on_min, names="value")
        self.desired_slider.observe(self._on_desired, names="value")
        self.max_slider.observe(self._on_max, names="value")
        for slider in (self.min_slider, self.desired_slider, self.max_slider, self.target_slider):
            slider.observe(lambda _c: self._show_pending(), names="value")
        self.apply_button.on_click(lambda _b: self.apply())
        self.refresh_button.on_click(lambda _b: self.refresh())

        self._widget = w.VBox(
            [
                w.HTML(f"<b>Scaling — {spec.name}</b>"),
                self.min_slider,
                self.desired_slider,
                self.max_slider,
                self.target_slider,
                w.HBox([self.apply_button, self.refresh_button]),
                self.pending_html,
                self.message,
                self.status_html,
            ]
        )
        self._ticker: Ticker | None = None
        self.refresh()
        if refresh_s and not self.closed:
            self._ticker = Ticker(refresh_s, self.refresh, name="scaling-status").start()

    # ------------------------------------------------------------------ display
    @property
    def widget(self) -> w.VBox:
        """The panel's root widget."""
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._widget)

    # ------------------------------------------------------------------ slider constraints
    def _on_min(self, change: dict[str, Any]) -> None:
        self._constrain(lo=change["new"])

    def _on_desired(self, change: dict[str, Any]) -> None:
        value = change["new"]
        self._constrain(lo=min(value, self.min_slider.value), hi=max(value, self.max_slider.value))

    def _on_max(self, change: dict[str, Any]) -> None:
        self._constrain(hi=change["new"])

    def _constrain(self, lo: int | None = None, hi: int | None = None) -> None:
        # The slider the user moved wins; the others follow so the form never shows min > desired > max.
        if self._adjusting:
            return
        self._adjusting = True
        try:
            if lo is not None:
                self.min_slider.value = lo
                if self.desired_slider.value < lo:
                    self.desired_slider.value = lo
                if self.max_slider.value < max(lo, 1):
                    self.max_slider.value = max(lo, 1)
            if hi is not None:
                self.max_slider.value = hi
                if self.desired_slider.value > hi:
                    self.desired_slider.value = hi
                if self.min_slider.value > hi:
                    self.min_slider.value = hi
        finally:
            self._adjusting = False

    # ------------------------------------------------------------------ live state
    def _live(self) -> dict[str, float]:
        lo, want, hi = live_capacity(self.fleet)
        return {
            "min": lo,
            "desired": want,
            "max": hi,
            "target_rps_per_target": float(self.fleet.spec.scaling.target_rps_per_target),
        }

    def _sliders(self) -> dict[str, float]:
        return {
            "min": self.min_slider.value,
            "desired": self.desired_slider.value,
            "max": self.max_slider.value,
            "target_rps_per_target": float(self.target_slider.value),
        }

    def unapplied(self) -> dict[str, tuple[float, float]]:
        """Sliders moved away from the fleet's live values: ``{name: (live, slider)}``."""
        return {
            k: (self._synced[k], v)
            for k, v in self._sliders().items()
            if k in self._synced and v != self._synced[k]
        }

    def _sync_from_fleet(self, force: bool = False) -> None:
        """Put the fleet's live values into the sliders the user has not moved (all of them with ``force``)."""
        try:
            live = self._live()
        except Exception as exc:  # a closed or unreachable fleet: keep the sliders, say why
            log.info("capacity read failed: %s", exc)
            return
        moved = set() if force else set(self.unapplied())
        synced: dict[str, float] = {}
        self._adjusting = True
        try:
            for name, slider in (
                ("min", self.min_slider),
                ("desired", self.desired_slider),
                ("max", self.max_slider),
                ("target_rps_per_target", self.target_slider),
            ):
                value = live[name]
                # A moved slider whose value the fleet has since reached (the autoscaler, another cell) is no
                # longer a change to apply: it read "not applied yet" forever. Compared within half a step.
                half_step = float(getattr(slider, "step", 1) or 1) / 2
                if name in moved and abs(float(slider.value) - value) > half_step:
                    synced[name] = self._synced[name]  # still the user's unapplied change
                    continue
                if name == "target_rps_per_target":
                    slider.max = max(slider.max, value)
                else:
                    slider.max = max(slider.max, int(value))
                if name not in moved:
                    slider.value = value
                synced[name] = slider.value  # moved to where the fleet now is: nothing left to apply
        finally:
            self._adjusting = False
        self._synced = synced
        self._show_pending()
        self._show_overtaken(live)

    def _show_overtaken(self, live: dict[str, float]) -> None:
        """An "applied" message the autoscaler has since overtaken says so (it would otherwise state stale values)."""
        applied = self._applied_live
        if applied is None:
            return
        changed = {k: v for k, v in live.items() if k in ("min", "desired", "max") and v != applied.get(k)}
        if not changed:
            return
        now = ", ".join(f"{k} {_g(v)}" for k, v in changed.items())
        self.message.value = message_html(
            f"{self._applied_text} — since then the fleet changed: now {now} (the autoscaler owns desired "
            "capacity between your changes)",
            "info",
        )

    def _show_pending(self) -> None:
        if self.closed:
            self.pending_html.value = ""
            return
        changes = self.unapplied()
        if not changes:
            self.pending_html.value = ""
            return
        text = ", ".join(
            f"{k.replace('_rps_per_target', ' rps/target')} {_g(a)} → {_g(b)}"
            for k, (a, b) in changes.items()
        )
        self.pending_html.value = message_html(f"not applied yet: {text} (press Apply)", "busy")

    # ------------------------------------------------------------------ actions
    def values(self) -> dict[str, Any]:
        """The keyword arguments Apply passes to ``fleet.scale``.

        The bounds always; ``desired`` and the target only when moved away from the fleet's live values: the
        autoscaler owns desired capacity between your changes, and on AWS a new target is a stack update.
        """
        changed = self.unapplied()
        kwargs: dict[str, Any] = {"min": self.min_slider.value}
        if "desired" in changed:
            kwargs["desired"] = self.desired_slider.value
        kwargs["max"] = self.max_slider.value
        if "target_rps_per_target" in changed and float(self.target_slider.value) != self._applied_target:
            kwargs["target_rps_per_target"] = float(self.target_slider.value)
        return kwargs

    def apply(self) -> Future[Any] | None:
        """Run ``fleet.scale(**values())`` on the executor; the outcome lands in ``message``. Returns the future."""
        if self._check_closed():
            return None
        kwargs = self.values()
        self.apply_button.disabled = True
        self.message.value = message_html("applying… " + _fmt(kwargs), "busy")
        try:
            future = self._executor.submit(self._apply, kwargs)
        except Exception as exc:  # the executor was shut down (panel closed): say so rather than hang
            self.apply_button.disabled = False
            self.message.value = message_html("not applied: " + error_text(exc), "error")
            return None
        self._pending = future
        future.add_done_callback(self._applied)
        return future

    def _apply(self, kwargs: dict[str, Any]) -> float:
        t0 = time.monotonic()
        log.info("scaling %s: %s", getattr(self.fleet.spec, "name", "?"), kwargs)
        if fleet_closed(self.fleet):
            from ..errors import ProvisionError

            raise ProvisionError("the fleet is closed: nothing was applied (open a new fleet to go on)")
        self.fleet.scale(**kwargs)
        if "target_rps_per_target" in kwargs:
            self._applied_target = kwargs["target_rps_per_target"]
        return time.monotonic() - t0

    def _applied(self, future: Future[Any]) -> None:
        try:
            exc = future.exception()
            if exc is not None:
                log.info("scale failed: %s", exc)
                self.message.value = message_html(error_text(exc), "error")
            else:
                took = future.result()
                self._applied_live = None
                self._sync_from_fleet(force=True)
                live = self._live()
                self._applied_live = live
                self._applied_text = (
                    f"applied in {took:.1f} s at {time.strftime('%H:%M:%S')} — the fleet now has min {_g(live['min'])}, desired "
                    f"{_g(live['desired'])}, max {_g(live['max'])}, target {_g(live['target_rps_per_target'])} "
                    "rps/target"
                )
                self.message.value = message_html(self._applied_text, "ok")
                self.refresh()
        except Exception as exc:  # never leave the button stuck with the error only in the kernel log
            log.exception("after apply")
            self.message.value = message_html(error_text(exc), "error")
        finally:
            self.apply_button.disabled = self.closed

    def wait(self, timeout: float | None = None) -> None:
        """Block until the last Apply has finished (its outcome is in ``message`` either way)."""
        if self._pending is not None:
            self._pending.exception(timeout)

    def _check_closed(self) -> bool:
        if not self.closed and fleet_closed(self.fleet):
            self.closed = True
            for ctl in (self.min_slider, self.desired_slider, self.max_slider, self.target_slider):
                ctl.disabled = True
            self.apply_button.disabled = True
            self.refresh_button.disabled = True
            self.pending_html.value = ""
            self.message.value = message_html(CLOSED_TEXT, "error")
            self.status_html.value = message_html("fleet closed — no targets are running", "error")
            if self._ticker is not None:
                self._ticker.stop(timeout=0)
        return self.closed

    def refresh(self) -> pd.DataFrame | None:
        """Read ``fleet.status()`` and the live capacity now; a failed read is shown, not raised."""
        with self._lock:  # the ticker and the button may both fire
            if self._check_closed():
                return None
            try:
                status = self.fleet.status()
            except Exception as exc:
                log.info("status read failed: %s", exc)
                self.status_html.value = message_html("status: " + error_text(exc), "error")
                return None
            self.last_status = status
            self._sync_from_fleet()
            lo, want, hi = live_capacity(self.fleet)
            self.status_html.value = message_html(
                f"fleet: min {lo}, desired {want}, max {hi}"
            ) + status_table_html(status)
            return status

    @property
    def refreshing(self) -> bool:
        """True while the periodic status refresh runs."""
        return self._ticker is not None and self._ticker.running

    def close(self) -> None:
        """Stop the periodic refresh and the panel's own executor; the widgets stay on screen."""
        if self._ticker is not None:
            self._ticker.stop()
        self._executor.close()

    def __repr__(self) -> str:
        return (
            f"ScalingPanel(min={self.min_slider.value}, desired={self.desired_slider.value}, "
            f"max={self.max_slider.value}, target={self.target_slider.value:g} rps/target)"
        )


def _fmt(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items())


def _g(v: float) -> str:
    return f"{v:g}"
