"""Issue 24 parts 2 and 4: the verdict's knobs on the panels, no false "not applied yet", an overtaken "applied"
that says so, and a time to live that stops the load before closing the fleet and marks every tab closed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from widget_fakes import FakeFleet, FakeStartLoad, InlineExecutor

from mlops_lb.load.settings import LoadSettings
from mlops_lb.widgets import FleetCockpit, LoadTestPanel, ScalingPanel
from mlops_lb.widgets._load import report_href

HAS_LATE = "late_after_s" in {f.name for f in dataclasses.fields(LoadSettings)}
TOLERANCE = "late_after_s" if HAS_LATE else "max_lag_p99_s"


def _panel(fleet: FakeFleet, start: FakeStartLoad, **kw: object) -> LoadTestPanel:
    return LoadTestPanel(fleet, root=None, start_load=start, plot="static", watch_s=None, **kw)  # type: ignore[arg-type]


class TestLoadPanelKnobs:
    def test_old_tolerance_keyword_is_accepted_and_reaches_the_run(self, fleet: FakeFleet) -> None:
        """LoadTestPanel(fleet, max_lag_p99_s=0.01) raised TypeError; now it is the run's lateness tolerance."""
        start = FakeStartLoad()
        p = _panel(fleet, start, max_lag_p99_s=0.01)
        assert p.late_after_input.value == 0.01
        p.start()
        p.wait(10)
        assert start.calls[0][2][TOLERANCE] == 0.01

    def test_workers_connections_and_shares_reach_the_run_only_when_set(self, fleet: FakeFleet) -> None:
        """Defaults pass nothing but connections (the library's defaults stay its own); set values are passed."""
        start = FakeStartLoad()
        p = _panel(fleet, start)
        assert p.load_options() == {"connections": 32}
        p.workers_input.value = 2
        p.connections_input.value = 8
        p.late_after_input.value = 0.02
        assert p.load_options() == {"connections": 8, "workers": 2, TOLERANCE: 0.02}
        if HAS_LATE:  # the shares exist once the verdict rule of issue 24 part 1 has landed
            p.max_error_share_input.value = 0.05
            assert p.load_options()["max_error_share"] == 0.05
        p.start()
        p.wait(10)
        assert {k: start.calls[0][2][k] for k in ("connections", "workers", TOLERANCE)} == {
            "connections": 8,
            "workers": 2,
            TOLERANCE: 0.02,
        }

    @pytest.mark.parametrize(
        ("field", "value", "says"),
        [
            ("workers_input", 0, "workers must be between 1 and 256"),
            ("late_after_input", -1.0, "late after s must be 0 (automatic) or a positive number"),
            ("max_late_share_input", 2.0, "max late must be a fraction between 0 and 1"),
        ],
    )
    def test_bad_knob_is_named_and_nothing_starts(
        self, fleet: FakeFleet, field: str, value: float, says: str
    ) -> None:
        start = FakeStartLoad()
        p = _panel(fleet, start)
        getattr(p, field).value = value
        p.start()
        assert says in p.message.value and start.calls == []


class TestReportLink:
    def test_voila_link_is_served_by_voila_not_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under Voila (VOILA_BASE_URL set for its kernels) the link is {base}voila/files/<path from the notebook>."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("VOILA_BASE_URL", "/")
        report = tmp_path / "runs" / "r1" / "report.html"
        assert report_href(report) == "/voila/files/runs/r1/report.html"

    def test_jupyter_link_is_served_by_the_server(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In JupyterLab/Notebook the link is {base_url}files/<path from the server's root>."""
        monkeypatch.delenv("VOILA_BASE_URL", raising=False)
        servers = [{"root_dir": str(tmp_path), "base_url": "/user/me/", "pid": 1}]
        monkeypatch.setattr("mlops_lb.widgets._load._jupyter_servers", lambda: servers)
        report = tmp_path / "nb" / "runs" / "r1" / "report.html"
        assert report_href(report) == "/user/me/files/nb/runs/r1/report.html"

    def test_outside_any_server_falls_back_to_a_file_uri(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("VOILA_BASE_URL", raising=False)
        monkeypatch.setattr("mlops_lb.widgets._load._jupyter_servers", lambda: [])
        assert report_href(tmp_path / "report.html").startswith("file://")


class TestScalingPanelTruth:
    def test_moved_slider_the_fleet_then_reaches_is_no_longer_pending(
        self, fleet: FakeFleet, inline: InlineExecutor
    ) -> None:
        """Desired moved to 3 and the autoscaler took the fleet to 3: nothing is left to apply."""
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        p.desired_slider.value = 3
        assert "not applied yet" in p.pending_html.value
        fleet.desired = 3
        p.refresh()
        assert p.pending_html.value == ""

    def test_applied_message_overtaken_by_the_autoscaler_says_so(
        self, fleet: FakeFleet, inline: InlineExecutor
    ) -> None:
        p = ScalingPanel(fleet, refresh_s=None, executor=inline)
        p.desired_slider.value = 3
        p.apply_button.click()
        assert "the fleet now has min 1, desired 3" in p.message.value
        fleet.desired = 2  # the autoscaler scaled in since
        p.refresh()
        assert "since then the fleet changed: now desired 2" in p.message.value


class TestCockpitTimeToLive:
    def test_stops_the_load_before_closing_and_marks_every_tab(self, fleet: FakeFleet) -> None:
        t = [1000.0]
        start = FakeStartLoad(block=True)
        c = FleetCockpit(
            fleet, refresh_s=None, executor=InlineExecutor(), start_load=start, clock=lambda: t[0], root=None,
            plot="static", ttl_s=60,
        )  # fmt: skip
        closed_with: list[int] = []
        close = fleet.close

        def record_close() -> None:
            closed_with.append(start.runs[0].stop_calls)
            close()

        fleet.close = record_close  # type: ignore[method-assign]
        c.load.duration_input.value = 600.0
        c.load.start()
        assert c.load.running
        t[0] += 60
        c.tick()
        assert closed_with == [1] and not c.load.running  # stopped (and reported) before the fleet closed
        assert c.tabs.titles == ("Scaling (closed)", "Load test (closed)")
        for html in (c.ttl_html.value, c.scaling.message.value, c.load.message.value):
            assert "time to live (01:00) closed the fleet" in html
        assert c.load.start_button.disabled and c.scaling.apply_button.disabled
        c.close()
