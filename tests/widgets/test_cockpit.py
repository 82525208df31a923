"""FleetCockpit: both panels, the cost meter's arithmetic, and a time to live that closes/destroys or is cancelled."""

from __future__ import annotations

import time

import pytest
from widget_fakes import FakeAwsFleet, FakeFleet, FakeStartLoad, InlineExecutor

from mlops_lb.widgets import CostMeter, FleetCockpit


def _ticking(fleet: FakeFleet, ttl_s: float) -> FleetCockpit:
    """A cockpit whose own background ticker (refresh_s=0.02) runs its time-to-live countdown."""
    return FleetCockpit(
        fleet,
        refresh_s=0.02,
        executor=InlineExecutor(),
        start_load=FakeStartLoad(),
        root=None,
        ttl_s=ttl_s,
        plot="static",
    )


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _cockpit(fleet: FakeFleet, clock: Clock, **kw: object) -> FleetCockpit:
    return FleetCockpit(
        fleet,
        refresh_s=None,
        executor=InlineExecutor(),
        start_load=FakeStartLoad(),
        clock=clock,
        root=None,
        plot="static",
        **kw,
    )  # type: ignore[arg-type]


class TestCostMeter:
    def test_integrates_instances_over_time(self) -> None:
        """Each reading's count is billed until the next reading."""
        m = CostMeter(usd_per_hour=0.5)
        m.update(0.0, 2)
        m.update(1800.0, 4)
        m.update(2700.0, 0)
        assert m.instance_hours == pytest.approx(2 * 0.5 + 4 * 0.25)
        assert m.cost_usd == pytest.approx(2.0 * 0.5)
        assert "$1.0000" in m.text()

    def test_without_price_counts_hours_only(self) -> None:
        """No price: cost is None and the text says so."""
        m = CostMeter(None)
        m.update(0.0, 1)
        m.update(3600.0, 1)
        assert m.instance_hours == pytest.approx(1.0) and m.cost_usd is None
        assert "price unknown" in m.text()

    def test_clock_going_backwards_bills_nothing(self) -> None:
        """A non-increasing reading adds no time."""
        m = CostMeter(1.0)
        m.update(10.0, 3)
        m.update(5.0, 3)
        assert m.instance_seconds == 0.0


class TestCockpit:
    def test_holds_both_panels(self, fleet: FakeFleet) -> None:
        """The cockpit shows the scaling and load panels, and the scaling panel drives the fleet."""
        c = _cockpit(fleet, Clock())
        tab = c.widget.children[-1]
        assert list(tab.children) == [c.scaling.widget, c.load.widget]
        c.scaling.desired_slider.value = 2
        c.scaling.apply_button.click()
        assert fleet.scale_calls[-1]["desired"] == 2

    def test_cost_meter_bills_live_targets(self, fleet: FakeFleet) -> None:
        """Ticks bill the live targets (terminated ones are free) at the given price."""
        clock = Clock()
        c = _cockpit(fleet, clock, price_per_hour=3.6)
        fleet.desired = 3
        clock.t += 10
        c.tick()  # bills 1 target for 10 s, then 3 from now on
        clock.t += 20
        c.tick()
        assert c.meter.instance_seconds == pytest.approx(1 * 10 + 3 * 20)
        assert c.meter.cost_usd == pytest.approx(70 / 3600 * 3.6)
        assert "3 instances" in c.cost_html.value

    def test_default_price_comes_from_the_price_table(self, fleet: FakeFleet) -> None:
        """Without price_per_hour the spec's instance type is priced from mlops_lb.analysis."""
        from mlops_lb.analysis import hourly_price

        c = _cockpit(fleet, Clock())
        assert c.meter.usd_per_hour == hourly_price(fleet.spec.instance.type, "us-east-1")

    def test_no_ttl_by_default(self, fleet: FakeFleet) -> None:
        """Without ttl_s there is no countdown and Cancel is disabled."""
        c = _cockpit(fleet, Clock())
        assert c.remaining_s() is None and c.cancel_ttl_button.disabled
        assert "no time to live" in c.ttl_html.value


class TestTimeToLive:
    def test_countdown_is_visible_then_closes_a_local_fleet(self, fleet: FakeFleet) -> None:
        """The countdown shows the time left; at zero a local fleet is closed."""
        clock = Clock()
        c = _cockpit(fleet, clock, ttl_s=90)
        assert "01:30 left" in c.ttl_html.value and "close the fleet" in c.ttl_html.value
        clock.t += 89
        c.tick()
        assert "00:01 left" in c.ttl_html.value and not fleet.closed
        clock.t += 1
        c.tick()
        assert fleet.closed and c.expired and "closed" in c.ttl_html.value

    def test_aws_fleet_is_destroyed_with_its_stack_name(self) -> None:
        """At zero an AWS fleet is destroyed, confirming with its stack name."""
        fleet = FakeAwsFleet()
        clock = Clock()
        c = _cockpit(fleet, clock, ttl_s=5)
        assert "destroy the stack mlops-lb-demo-dev" in c.ttl_html.value
        clock.t += 5
        c.tick()
        assert fleet.destroyed_with == "mlops-lb-demo-dev" and not fleet.closed

    def test_cancel_keeps_the_fleet(self, fleet: FakeFleet) -> None:
        """Cancel stops the countdown; the fleet survives past the deadline."""
        clock = Clock()
        c = _cockpit(fleet, clock, ttl_s=5)
        c.cancel_ttl_button.click()
        clock.t += 60
        c.tick()
        assert not fleet.closed and c.remaining_s() is None and "cancelled" in c.ttl_html.value

    def test_failed_destroy_is_shown(self) -> None:
        """A destroy that fails shows the error in the panel instead of raising."""
        fleet = FakeAwsFleet()

        def boom(*, confirm: str) -> None:
            raise RuntimeError("stack busy")

        fleet.destroy = boom  # type: ignore[method-assign]
        clock = Clock()
        c = _cockpit(fleet, clock, ttl_s=1)
        clock.t += 1
        c.tick()
        assert "stack busy" in c.ttl_html.value

    def test_a_deadline_passed_during_set_up_closes_the_fleet_without_an_error(
        self, fleet: FakeFleet
    ) -> None:
        """ttl_s=0: the first tick, inside the constructor, expires the fleet (on a busy machine a short time to
        live does the same); the cockpit is built, the fleet closed, and no ticker is left running."""
        c = _ticking(fleet, ttl_s=0)
        try:
            assert fleet.closed and c.expired and c._ticker is None
        finally:
            c.close()

    def test_ticker_runs_the_countdown_in_the_background(self, fleet: FakeFleet) -> None:
        """With refresh_s the background ticker reaches the deadline by itself and closes the fleet."""
        c = _ticking(fleet, ttl_s=0.05)
        try:
            deadline = time.monotonic() + 5
            while not fleet.closed and time.monotonic() < deadline:
                time.sleep(0.01)
            assert fleet.closed
        finally:
            c.close()
