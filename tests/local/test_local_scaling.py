"""Target tracking on the local clock: load above target scales out, quiet scales back in, with reasons."""

from __future__ import annotations

import pytest
from _localfleet import fast_spec, run_load, wait_for

from mlops_lb.autoscaling import CapacityState, PeriodSample, TargetTrackingPolicy, decide
from mlops_lb.local import LocalFleet

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
# serial: waits for scale-out and scale-in on the compressed clock (scripts/test.sh runs serial tests one at a time)
pytestmark = [pytest.mark.fleet, pytest.mark.serial]


def test_scale_out_under_load_then_in_when_quiet() -> None:
    """20 rps against a 5 rps/target target scales out to max; after the load stops it scales in to min, and
    events() and decisions() say why."""
    spec = fast_spec("scl", period_s=0.5, min=1, desired=1, max=3, target_rps=5.0)
    with LocalFleet(spec) as fleet:
        fleet.launch()
        stats = run_load(fleet.url, requests=100, concurrency=2, rps=20, max_s=8)
        assert stats.statuses[200] >= 90
        wait_for(lambda: (fleet.events()["kind"] == "scale_out").any(), 5, "a scale_out event")
        wait_for(lambda: len(fleet.status().query("health == 'healthy'")) == 3, 20, "three healthy targets")
        wait_for(lambda: (fleet.events()["kind"] == "scale_in").any(), 25, "a scale_in event")
        wait_for(lambda: len(fleet.status()) == 1, 10, "one target left")
        ev = fleet.events()
        out = ev[ev["kind"] == "scale_out"]["detail"].iloc[0]
        assert "target tracking" in out and "for 3 periods" in out
        assert "90% of target" in ev[ev["kind"] == "scale_in"]["detail"].iloc[0]
        assert {"draining", "deregistered", "terminate"} <= set(ev["kind"])

        d = fleet.decisions()
        assert {"none", "scale_out", "scale_in"} <= set(d["action"])
        assert (d["target_value"] == 2.5).all()  # 5 rps x 0.5 s period
        # The replay contract: decide() on the recorded inputs gives the recorded answers.
        policy = TargetTrackingPolicy.from_spec(spec.scaling, period_s=spec.local.period_s)
        samples = [PeriodSample(r.request_count, int(r.ready)) for r in d.itertuples()]
        for i, r in enumerate(d.itertuples()):
            state = CapacityState(
                desired=int(r.desired_before),
                ready=int(r.ready),
                min=int(r.min),
                max=int(r.max),
                warming=int(r.warming),
                periods_since_action=int(r.periods_since_action),
            )
            got = decide(policy, samples[: i + 1], state)
            assert (got.action, got.desired) == (r.action, r.desired_after), i
