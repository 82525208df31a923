"""Issue 18: the panels show the fleet's live state, mark unapplied changes, say when the fleet is closed, refuse a
second load on one fleet, reject bad inputs visibly and name why a run is invalid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from widget_fakes import FakeBundle, FakeFleet, FakeResult, FakeStartLoad, InlineExecutor

from mlops_lb.widgets import FleetCockpit, LoadTestPanel, ScalingPanel


def _three_target_fleet() -> FakeFleet:
    fleet = FakeFleet()
    fleet.scale(desired=3)  # the autoscaler (or an earlier cell) moved it away from the spec's desired=1
    fleet.scale_calls.clear()
    fleet.spec = fleet.spec.replace(capacity=fleet.spec.capacity.__class__(min=1, desired=1, max=5))
    return fleet


class TestScalingPanelReadsTheFleet:
    def test_opens_at_the_live_desired_not_the_spec(self, inline: InlineExecutor) -> None:
        """Opened on a 3-target fleet whose spec still says 1, the desired slider reads 3."""
        fleet = _three_target_fleet()
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        assert p.desired_slider.value == 3 and "desired 3" in p.status_html.value

    def test_apply_after_changing_only_the_target_keeps_desired(self, inline: InlineExecutor) -> None:
        """Apply with only the target moved sends no desired, so the fleet keeps its 3 targets."""
        fleet = _three_target_fleet()
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        p.target_slider.value = 30.0
        p.apply_button.click()
        assert "desired" not in fleet.scale_calls[0] and fleet.scale_calls[0]["target_rps_per_target"] == 30.0
        assert fleet.desired == 3 and p.desired_slider.value == 3

    def test_moved_slider_is_marked_until_applied(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """A moved slider shows 'not applied yet'; after Apply the message reports the fleet's own values."""
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        p.desired_slider.value = 2
        assert "not applied yet: desired 1 → 2" in p.pending_html.value
        p.apply_button.click()
        assert p.pending_html.value == ""
        assert "the fleet now has min 1, desired 2, max 5" in p.message.value

    def test_refresh_follows_the_autoscaler_but_keeps_a_users_edit(
        self, fleet: FakeFleet, inline: InlineExecutor
    ) -> None:
        """Untouched sliders follow the live capacity on refresh; a slider the user moved stays where it is."""
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        fleet.desired = 4
        p.refresh()
        assert p.desired_slider.value == 4
        p.max_slider.value = 6
        fleet.desired = 2
        p.refresh()
        assert p.desired_slider.value == 2 and p.max_slider.value == 6
        assert "max 5 → 6" in p.pending_html.value


class TestClosedFleet:
    def test_refresh_says_closed_and_disables_the_panel(
        self, fleet: FakeFleet, inline: InlineExecutor
    ) -> None:
        """After fleet.close() the panel says so and every control is disabled."""
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        fleet.close()
        p.refresh()
        assert "fleet closed" in p.message.value and "fleet closed" in p.status_html.value
        assert p.apply_button.disabled and p.desired_slider.disabled

    def test_apply_on_a_closed_fleet_does_not_hang(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """Apply after close() ends with a message, never a stuck 'applying…'."""
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        fleet.close()
        p.apply()
        assert "applying" not in p.message.value and "fleet closed" in p.message.value
        assert fleet.scale_calls == []

    def test_apply_after_the_executor_is_gone_is_reported(self, fleet: FakeFleet) -> None:
        """A panel whose executor was shut down says 'not applied' instead of hanging."""
        p = ScalingPanel(fleet, refresh_s=None)
        p.close()
        p.apply()
        assert "not applied" in p.message.value and not p.apply_button.disabled

    def test_cockpit_load_tab_is_disabled_after_close(self, fleet: FakeFleet, inline: InlineExecutor) -> None:
        """The cockpit's tick disables Start with the closed message."""
        c = FleetCockpit(fleet, refresh_s=None, executor=inline, start_load=FakeStartLoad(), root=None)
        fleet.close()
        c.tick()
        assert c.load.start_button.disabled and "fleet closed" in c.load.message.value
        assert "fleet closed" in c.scaling.message.value
        c.close()


def _load_panel(fleet: Any, start: FakeStartLoad, tmp_path: Path, **kw: Any) -> LoadTestPanel:
    return LoadTestPanel(
        fleet,
        start_load=start,
        make_bundle=lambda name, spec: FakeBundle(tmp_path / name),
        write_report=lambda path: Path(path) / "report.html",
        plot="static",
        **kw,
    )


class TestLoadPanel:
    @pytest.mark.parametrize(
        "field,value", [("rate_input", -5.0), ("rate_input", 0.0), ("duration_input", 0.0)]
    )
    def test_bad_inputs_are_rejected_by_name(
        self, fleet: FakeFleet, tmp_path: Path, field: str, value: float
    ) -> None:
        """-5 or 0 is not replaced by a minimum: Start refuses and names the input."""
        start = FakeStartLoad()
        p = _load_panel(fleet, start, tmp_path)
        getattr(p, field).value = value
        p.start_button.click()
        assert "must be greater than 0" in p.message.value and not start.calls
        assert getattr(p, field).value == value

    def test_connections_field_goes_to_the_load(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """The connections input is passed as connections= to the load."""
        start = FakeStartLoad()
        p = _load_panel(fleet, start, tmp_path)
        p.connections_input.value = 300
        p.start_button.click()
        p.wait(5)
        assert start.calls[0][2]["connections"] == 300

    def test_one_load_at_a_time_per_fleet(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A second panel on the same fleet is refused while the first runs, and says why."""
        start = FakeStartLoad(block=True)
        first, second = _load_panel(fleet, start, tmp_path), _load_panel(fleet, start, tmp_path)
        first.start_button.click()
        second.start_button.click()
        assert len(start.calls) == 1 and "already running against this fleet" in second.message.value
        first.stop_button.click()
        first.wait(5)
        start.block = False
        second.start_button.click()
        second.wait(5)
        assert len(start.calls) == 2

    def test_saturated_run_is_named_with_its_fix(
        self, fleet: FakeFleet, tmp_path: Path, monkeypatch: Any
    ) -> None:
        """An invalid run classified connections_exhausted reads 'fleet saturated' and shows the engine's fix."""
        reason = (
            "every one of 32 connections was waiting on the fleet: raise connections= (the panel's field)"
        )

        def summary(self: FakeResult) -> dict[str, Any]:
            return {"requests": 30, "errors": 0, "valid": False, "invalid_kinds": ["connections_exhausted"],
                    "invalid_reasons": [reason]}  # fmt: skip

        monkeypatch.setattr(FakeResult, "summary", summary)
        p = _load_panel(fleet, FakeStartLoad(), tmp_path)
        p.start_button.click()
        p.wait(5)
        assert "INVALID: fleet saturated" in p.message.value and "generator lag" not in p.message.value
        assert "raise connections=" in p.summary_html.value

    def test_start_stays_disabled_until_the_report_is_written(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """While the report is written (the last phase) Start is still disabled; it comes back after."""
        seen: list[bool] = []
        p: LoadTestPanel

        def write_report(path: Any) -> Path:
            seen.append(p.start_button.disabled)
            return Path(path) / "report.html"

        p = LoadTestPanel(
            fleet,
            start_load=FakeStartLoad(),
            make_bundle=lambda name, spec: FakeBundle(tmp_path / name),
            write_report=write_report,
            plot="static",
        )
        p.start_button.click()
        p.wait(5)
        assert seen == [True] and not p.start_button.disabled

    def test_one_interval_draws_a_point(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A run of one interval shows markers (a line through one point draws nothing)."""
        p = _load_panel(fleet, FakeStartLoad(intervals=1), tmp_path)
        p.start_button.click()
        p.wait(5)
        line = p.live_plot.lines["p99"]
        assert len(line.get_xdata()) == 1 and line.get_marker() == "o"
        assert p.live_plot.lat_ax.get_xlabel() == "time since start (s)"


def test_a_standalone_load_panel_notices_the_fleet_closing(fleet: FakeFleet, tmp_path: Path) -> None:
    """Without a cockpit, the load panel's own watch disables Start after fleet.close()."""
    import time

    p = _load_panel(fleet, FakeStartLoad(), tmp_path, watch_s=0.02)
    fleet.close()
    deadline = time.monotonic() + 5
    while not p.start_button.disabled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.start_button.disabled and "fleet closed" in p.message.value
    p.close()
