"""Target tracking on concurrency (scaling.metric: concurrency_per_target) against a slow user server: HAProxy's
in-flight count per server drives the same pure decide() out and back in, and the replay reproduces it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _localfleet import USER_SERVER, fast_spec, run_load, wait_for

import mlops_lb as ml
from mlops_lb.analysis.replay import replay, reproduce
from mlops_lb.local import LocalFleet

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
# serial: waits for scale-out and scale-in on the compressed clock (scripts/test.sh runs serial tests one at a time)
pytestmark = [pytest.mark.fleet, pytest.mark.serial]


def test_scales_out_on_in_flight_requests_and_back_in() -> None:
    """8 closed-loop clients on a 0.4 s server keep ~8 requests in flight (120 requests, at least 6 s: scale-out needs 1.5 s of it); with a target of 2 per target that is
    4x the target for 3 periods: scale out to max 3 (ceil(8 / 2) = 4, clamped). Quiet afterwards: scale in to 1.
    The request rate (~20 rps) stays far below target_rps_per_target (1000): only concurrency can scale it."""
    base = fast_spec("conc", period_s=0.5, min=1, desired=1, max=3, target_rps=1000)
    spec = base.replace(
        scaling=ml.ScalingPolicySpec(
            metric="concurrency_per_target", target_concurrency_per_target=2, warmup_s=60
        ),
        server=ml.ServerSpec(
            command=["python", str(USER_SERVER), "--port", "{port}"], env={"SLEEP_S": "0.4"}
        ),
    )
    with LocalFleet(spec) as fleet:
        fleet.launch()
        load = threading.Thread(
            target=run_load, args=(fleet.url,), kwargs={"requests": 120, "concurrency": 8, "max_s": 25}
        )
        load.start()
        # Generous bounds: on a loaded machine (six test runs at once) periods slip; the load lasts >= 6 s.
        wait_for(lambda: (fleet.events()["kind"] == "scale_out").any(), 25, "a scale_out event")
        load.join(30)
        wait_for(lambda: (fleet.events()["kind"] == "scale_in").any(), 40, "a scale_in event")
        wait_for(lambda: len(fleet.status()) == 1, 20, "one target left")

        d = fleet.decisions()
        out = d[d["action"] == "scale_out"].iloc[0]
        print(d[d["action"] != "none"][["concurrency", "request_count", "ready", "desired_before",
                                         "desired_after", "reason"]].to_string())  # fmt: skip
        assert "ConcurrencyPerTarget" in out["reason"] and "for 3 periods" in out["reason"]
        assert out["desired_after"] == 3 and out["concurrency"] / out["ready"] > 2
        assert (d["target_value"] == 2.0).all()  # an average: no period conversion
        assert "target 2 in-flight requests per target (ConcurrencyPerTarget)" in fleet.clock_mapping()
        assert "ConcurrencyPerTarget" in d[d["action"] == "scale_in"]["reason"].iloc[0]

        # The replay contract: decide() on the recorded concurrency gives the recorded answers.
        again = reproduce(d, spec.scaling, period_s=spec.local.period_s)
        assert again["matches"].all(), again[~again["matches"]]

        m = fleet.metrics()
        conc = m[m["metric"] == "ConcurrencyPerTarget"]
        assert set(conc["stat"]) == {"Average"}
        assert conc["value"].max() > 2 and (conc["target"] != "").any()
        # What-if from the same MetricFrame: the concurrency trace under this policy scales out too.
        r: Any = replay(m, policy=spec.scaling, period_s=spec.local.period_s, min=1, max=3)
        assert (r.capacity["action"] == "scale_out").any() and "concurrency" in r.capacity.columns
