"""ScalingPanel: sliders, Apply off the main thread, errors in the panel, a stoppable status refresh."""

from __future__ import annotations

import threading
import time

import pytest
from widget_fakes import FakeFleet, InlineExecutor

from mlops_lb.errors import ProvisionError
from mlops_lb.widgets import ScalingPanel


def _panel(fleet: FakeFleet, inline: InlineExecutor) -> ScalingPanel:
    return ScalingPanel(fleet, refresh_s=None, executor=inline)


class TestSliders:
    def test_start_from_the_spec(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """The sliders open at the spec's min/desired/max and target rps per target."""
        p = _panel(fleet, inline)
        cap = fleet.spec.capacity
        assert (p.min_slider.value, p.desired_slider.value, p.max_slider.value) == (
            cap.min,
            cap.desired,
            cap.max,
        )
        assert p.target_slider.value == fleet.spec.scaling.target_rps_per_target

    def test_raising_min_pushes_desired_and_max_up(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """min above desired and max drags both up with it."""
        p = _panel(fleet, inline)
        p.min_slider.value = 7
        assert (p.min_slider.value, p.desired_slider.value, p.max_slider.value) == (7, 7, 7)

    def test_lowering_max_pulls_desired_and_min_down(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """max below desired and min drags both down with it."""
        p = _panel(fleet, inline)
        p.min_slider.value = 3
        p.max_slider.value = 2
        assert (p.min_slider.value, p.desired_slider.value, p.max_slider.value) == (2, 2, 2)

    def test_desired_moves_the_bound_it_crosses(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """desired above max raises max; desired below min lowers min."""
        p = _panel(fleet, inline)
        p.desired_slider.value = 9
        assert p.max_slider.value == 9
        p.min_slider.value = 4
        p.desired_slider.value = 2
        assert (p.min_slider.value, p.desired_slider.value, p.max_slider.value) == (2, 2, 9)

    def test_inside_the_bounds_nothing_else_moves(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """Moving desired between min and max leaves min and max alone."""
        p = _panel(fleet, inline)
        p.desired_slider.value = 3
        assert (p.min_slider.value, p.max_slider.value) == (1, 5)


class TestApply:
    def test_apply_calls_scale_with_the_bounds(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """Apply sends min/desired/max; the unchanged target is left out (an AWS stack update)."""
        p = _panel(fleet, inline)
        p.desired_slider.value = 2
        p.apply_button.click()
        assert fleet.scale_calls == [{"min": 1, "desired": 2, "max": 5}]
        assert "applied" in p.message.value
        assert not p.apply_button.disabled

    def test_changed_target_is_sent_once(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """A moved target slider adds target_rps_per_target, and only until it has been applied."""
        p = _panel(fleet, inline)
        p.target_slider.value = 25.0
        p.apply_button.click()
        p.apply_button.click()
        assert fleet.scale_calls[0]["target_rps_per_target"] == 25.0
        assert "target_rps_per_target" not in fleet.scale_calls[1]

    def test_apply_refreshes_the_status_table(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """After a successful Apply the table shows the new number of targets."""
        p = _panel(fleet, inline)
        assert "1 target (1 healthy" in p.status_html.value
        p.desired_slider.value = 3
        p.apply_button.click()
        assert "3 targets (3 healthy" in p.status_html.value

    def test_spec_error_is_shown_not_raised(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """A SpecError from scale() lands in the message widget, naming the error class."""
        from mlops_lb.errors import SpecError

        fleet.scale_error = SpecError("capacity.max", "must be <= 4 for this account (got 5)")
        p = _panel(fleet, inline)
        p.apply_button.click()
        assert "SpecError" in p.message.value and "capacity.max" in p.message.value
        assert not p.apply_button.disabled

    def test_provision_error_is_shown_escaped(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """A ProvisionError's text is shown HTML-escaped."""
        fleet.scale_error = ProvisionError("pulumi up failed", stderr="<AccessDenied>")
        p = _panel(fleet, inline)
        p.apply_button.click()
        assert "ProvisionError" in p.message.value and "&lt;AccessDenied&gt;" in p.message.value

    def test_apply_runs_off_the_calling_thread(self, fleet: FakeFleet) -> None:
        """With the default executor, scale() runs on another thread and the click returns while it works."""
        release = threading.Event()
        threads: list[str] = []

        def slow_scale(**kwargs: object) -> None:
            threads.append(threading.current_thread().name)
            assert release.wait(5)

        fleet.scale = slow_scale  # type: ignore[method-assign]
        p = ScalingPanel(fleet, refresh_s=None)
        try:
            p.apply_button.click()
            assert "applying" in p.message.value
            assert p.apply_button.disabled
            release.set()
            p.wait(5)
            assert threads and threads[0] != threading.current_thread().name
            deadline = time.monotonic() + 5
            while "applied" not in p.message.value and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "applied" in p.message.value
        finally:
            release.set()
            p.close()


class TestStatus:
    def test_table_lists_live_targets_only(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """Terminated targets are left out of the table; health and state columns are shown."""
        p = _panel(fleet, inline)
        html = p.status_html.value
        assert "t0" in html and "old" not in html and "healthy" in html and "in_service" in html

    def test_refresh_button_reads_status(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """Refresh reads fleet.status() again and shows what changed."""
        p = _panel(fleet, inline)
        fleet.desired = 2
        p.refresh_button.click()
        assert "2 targets" in p.status_html.value

    def test_status_error_is_shown(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """A failing status read shows the error in the table instead of raising."""
        p = _panel(fleet, inline)
        fleet.status_error = RuntimeError("haproxy socket gone")
        p.refresh_button.click()
        assert "haproxy socket gone" in p.status_html.value

    def test_periodic_refresh_runs_and_stops(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """The background refresh reads status repeatedly, and close() stops it for good."""
        p = ScalingPanel(fleet, refresh_s=0.02, executor=inline)
        deadline = time.monotonic() + 5
        while fleet.status_calls < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fleet.status_calls >= 4 and p.refreshing
        p.close()
        assert not p.refreshing
        calls = fleet.status_calls
        time.sleep(0.1)
        assert fleet.status_calls == calls

    def test_no_refresh_s_means_no_thread(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """refresh_s=None refreshes only on demand."""
        p = _panel(fleet, inline)
        assert not p.refreshing


class TestDisplay:
    def test_widget_holds_every_control(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """The root VBox contains every control exposed as an attribute."""
        p = _panel(fleet, inline)
        kids = set(_walk(p.widget))
        for ctl in (
            p.min_slider,
            p.desired_slider,
            p.max_slider,
            p.target_slider,
            p.apply_button,
            p.refresh_button,
            p.message,
            p.status_html,
        ):
            assert ctl in kids
        assert "desired=1" in repr(p)


def _walk(widget: object) -> list[object]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out.extend(_walk(child))
    return out


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> object:
    before = {t for t in threading.enumerate() if t.name.startswith("mlops-lb-")}
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = {t for t in threading.enumerate() if t.name.startswith("mlops-lb-scaling")} - before
        if not left:
            break
        time.sleep(0.01)
    assert not left, f"refresh threads left running: {left}"
