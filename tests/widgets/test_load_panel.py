"""LoadTestPanel: inputs build the profile, Start/Stop drive the load, live plots, progress, report path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from widget_fakes import FakeBundle, FakeFleet, FakeStartLoad

from mlops_lb.errors import LoadTestError, SpecError
from mlops_lb.widgets import LoadTestPanel, build_profile


def _panel(
    target: Any, start: FakeStartLoad, tmp_path: Path, **kw: Any
) -> tuple[LoadTestPanel, list[FakeBundle]]:
    bundles: list[FakeBundle] = []

    def make_bundle(name: str, spec: Any) -> FakeBundle:
        bundles.append(FakeBundle(tmp_path / name))
        return bundles[-1]

    def write_report(path: Any) -> Path:
        out = Path(path) / "report.html"
        return out

    p = LoadTestPanel(
        target, start_load=start, make_bundle=make_bundle, write_report=write_report, plot="static", **kw
    )
    return p, bundles


class TestProfiles:
    @pytest.mark.parametrize("kind", ["constant", "ramp", "step", "spike", "sine"])
    def test_each_profile_lasts_the_duration(self, kind: str) -> None:
        """Every dropdown choice builds an ml.load profile as long as the duration input."""
        prof = build_profile(kind, 10.0, 40.0, 8.0)
        assert prof.duration_s == pytest.approx(8.0)

    def test_unknown_profile_is_a_spec_error(self) -> None:
        """An unknown kind names the allowed ones."""
        with pytest.raises(SpecError, match="constant, step, ramp, spike, sine"):
            build_profile("sawtooth", 1, 2, 3)

    def test_inputs_follow_the_profile(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """constant disables the second rate; spike relabels it as the burst rate."""
        p, _ = _panel(fleet, FakeStartLoad(), tmp_path)
        p.profile_dropdown.value = "constant"
        assert p.end_rate_input.disabled
        p.profile_dropdown.value = "spike"
        assert not p.end_rate_input.disabled and p.end_rate_input.description == "spike rps"

    def test_panel_profile_uses_the_inputs(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """rate, end rate and duration inputs go into the profile Start sends."""
        start = FakeStartLoad()
        p, _ = _panel(fleet, start, tmp_path)
        p.profile_dropdown.value = "ramp"
        p.rate_input.value, p.end_rate_input.value, p.duration_input.value = 5, 50, 12
        p.start_button.click()
        p.wait(5)
        prof = start.calls[0][1]
        assert (prof.start_rps, prof.end_rps, prof.duration_s) == (5, 50, 12)


class TestRun:
    def test_start_targets_the_fleet_predict_url(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A fleet's load goes to fleet.url + /predict, with on_interval and the bundle."""
        start = FakeStartLoad()
        p, bundles = _panel(fleet, start, tmp_path)
        p.start_button.click()
        p.wait(5)
        url, _, kwargs = start.calls[0]
        assert url == "http://127.0.0.1:9/predict"
        assert kwargs["bundle"] is bundles[0] and kwargs["progress"] is False

    def test_a_url_is_used_as_is(self, tmp_path: Path) -> None:
        """Given a URL string the panel loads exactly that URL."""
        start = FakeStartLoad()
        p, _ = _panel("http://127.0.0.1:1/x", start, tmp_path)
        p.start_button.click()
        p.wait(5)
        assert start.calls[0][0] == "http://127.0.0.1:1/x"

    def test_intervals_update_plot_and_progress(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """Each interval redraws the live plot (a PNG in the Output widget); the bar ends full."""
        p, _ = _panel(fleet, FakeStartLoad(intervals=3), tmp_path)
        p.start_button.click()
        p.wait(5)
        assert len(p.intervals) == 3 and p.live_plot.redraws == 3
        (out,) = p.plot.outputs
        assert out["data"]["image/png"]
        assert p.progress.value == 1.0
        assert list(p.live_plot.lines["p99"].get_ydata()) == pytest.approx([30.0, 40.0, 50.0])

    def test_done_shows_summary_and_report_path(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """At the end the summary table and the report path appear; the bundle gets summary, metrics, events."""
        p, bundles = _panel(fleet, FakeStartLoad(), tmp_path)
        p.start_button.click()
        report = p.wait(5)
        assert report == (tmp_path / "mlops-lb-demo" / "report.html").resolve()
        assert str(report) in p.report_html.value and f'href="{report.as_uri()}"' in p.report_html.value
        assert "requests" in p.summary_html.value and "done" in p.message.value
        # the session saved the fleet's data (run_load itself writes summary.json) and finalized the bundle
        assert bundles[0].captured == [fleet] and set(bundles[0].written) == {"metrics", "events"}
        assert bundles[0].finalized
        assert not p.start_button.disabled and p.stop_button.disabled

    def test_stop_is_honoured(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """Stop calls run.stop(); the run ends, what was measured is reported."""
        start = FakeStartLoad(block=True)
        p, _ = _panel(fleet, start, tmp_path)
        p.start_button.click()
        assert p.running and not p.stop_button.disabled and p.start_button.disabled
        p.stop_button.click()
        p.wait(5)
        assert start.runs[0].stop_calls == 1
        assert "stopped" in p.message.value and p.report_path is not None
        assert not p.running

    def test_second_start_while_running_is_refused(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """Start during a run shows a message and starts nothing."""
        start = FakeStartLoad(block=True)
        p, _ = _panel(fleet, start, tmp_path)
        p.start_button.click()
        p.start()
        assert len(start.calls) == 1 and "already" in p.message.value
        p.stop_button.click()
        p.wait(5)

    def test_start_error_is_shown(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A LoadTestError at start lands in the message; the panel stays usable."""
        p, _ = _panel(fleet, FakeStartLoad(start_error=LoadTestError("no payloads")), tmp_path)
        p.start_button.click()
        assert "LoadTestError" in p.message.value and not p.running
        assert not p.start_button.disabled

    def test_bad_input_is_shown(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A profile the load module rejects (too many requests) shows its SpecError; nothing starts."""
        start = FakeStartLoad()
        p, _ = _panel(fleet, start, tmp_path)
        p.profile_dropdown.value = "constant"
        p.rate_input.value, p.duration_input.value = 1e6, 86_400
        p.start_button.click()
        assert "SpecError" in p.message.value and not start.calls and not p.running

    def test_failure_during_run_is_shown(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """A load that fails mid-way shows the error and still writes what it has."""
        p, bundles = _panel(fleet, FakeStartLoad(fail=LoadTestError("worker crashed")), tmp_path)
        p.start_button.click()
        p.wait(5)
        assert "worker crashed" in p.message.value
        assert bundles[0].finalized and p.report_path is not None

    def test_root_none_writes_no_bundle(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """root=None runs without a bundle or report."""
        start = FakeStartLoad()
        p = LoadTestPanel(fleet, root=None, start_load=start, plot="static")
        p.start_button.click()
        p.wait(5)
        assert start.calls[0][2]["bundle"] is None and p.report_path is None

    def test_close_stops_a_running_load(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """close() stops a running load."""
        start = FakeStartLoad(block=True)
        p, _ = _panel(fleet, start, tmp_path)
        p.start_button.click()
        p.close()
        assert start.runs[0].stop_calls == 1
        p.wait(5)

    def test_widget_holds_every_control(self, fleet: FakeFleet, tmp_path: Path) -> None:
        """The root VBox contains every control exposed as an attribute."""
        p, _ = _panel(fleet, FakeStartLoad(), tmp_path)
        kids = set(_walk(p.widget))
        for ctl in (
            p.profile_dropdown,
            p.rate_input,
            p.end_rate_input,
            p.duration_input,
            p.start_button,
            p.stop_button,
            p.progress,
            p.message,
            p.plot,
            p.summary_html,
            p.report_html,
        ):
            assert ctl in kids


def _walk(widget: object) -> list[object]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out.extend(_walk(child))
    return out
