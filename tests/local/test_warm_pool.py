"""The local warm pool: pre-booted workers held out of the target group, taken first on scale-out, returned on
scale-in when asked, and refilled; every transition is an event."""

from __future__ import annotations

import dataclasses

import psutil
import pytest
from _localfleet import fast_spec, run_load, wait_for

import mlops_lb as ml
from mlops_lb.analysis.waterfall import scale_out_waterfall
from mlops_lb.frames import check_events_frame, check_status_frame
from mlops_lb.local import LocalFleet
from mlops_lb.spec import WarmPoolSpec

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
# serial: times a warm start against a cold one (scripts/test.sh runs serial tests one at a time)
pytestmark = [pytest.mark.fleet, pytest.mark.serial]


def _spec(**pool: object) -> ml.FleetSpec:
    base = fast_spec("warm", min=1, desired=1, max=2, scale_in=False)
    wp = WarmPoolSpec(**{"min_size": 1, "state": "stopped", **pool})  # type: ignore[arg-type]
    return base.replace(capacity=dataclasses.replace(base.capacity, warm_pool=wp))


def _kinds(fleet: LocalFleet, kind: str) -> list[str]:
    ev = fleet.events()
    return list(ev.loc[ev["kind"] == kind, "target"])


def test_warm_pool_serves_nothing_then_joins_on_scale_out_and_returns_on_scale_in() -> None:
    """A prepared pool worker is stopped and outside the group (no traffic, not in status()); scale-out takes it
    (same id, `launch` from the warm pool, healthy after one check) and the pool is refilled; scale-in with
    reuse_on_scale_in puts a drained target back in the pool instead of terminating it."""
    with LocalFleet(_spec(reuse_on_scale_in=True)) as fleet:
        fleet.launch()
        wait_for(lambda: len(_kinds(fleet, "warm_pool_ready")) == 1, 60, "a prepared warm-pool worker")
        pooled = _kinds(fleet, "warm_pool_ready")[0]
        st = fleet.status()
        check_status_frame(st)
        assert pooled not in set(st["target"]) and st.attrs["warm_pool"] == {pooled: "ready"}
        pid = fleet._asg.pooled()[0].worker.pid  # type: ignore[union-attr]
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
        stats = run_load(fleet.url, requests=20)
        assert stats.statuses == {200: 20} and set(stats.targets) == set(st["target"])
        assert "warm pool 1" in repr(fleet)

        fleet.scale(desired=2)
        wait_for(lambda: (fleet.status()["health"] == "healthy").sum() == 2, 30, "the pool worker in service")
        assert (
            pooled in set(fleet.status()["target"]) and psutil.Process(pid).status() != psutil.STATUS_STOPPED
        )
        launch = fleet.events().query("kind == 'launch' and target == @pooled")["detail"].iloc[-1]
        assert "from the warm pool (prepared)" in launch
        wait_for(lambda: len(_kinds(fleet, "warm_pool_launch")) == 2, 10, "the pool refilled to min_size 1")
        stats = run_load(fleet.url, requests=20)
        assert pooled in stats.targets
        # The scale-out waterfall reads the same stages as for a cold launch: decision -> launch -> healthy.
        wf = scale_out_waterfall(fleet.events())
        row = wf[wf["target"] == pooled].iloc[0]
        assert row["decision_to_launch_s"] >= 0 and row["launch_to_healthy_s"] >= 0

        fleet.scale(desired=1)
        wait_for(
            lambda: len(_kinds(fleet, "warm_pool_return")) == 1, 30, "a scaled-in target back in the pool"
        )
        returned = _kinds(fleet, "warm_pool_return")[0]
        ret = next(i for i in fleet._asg.instances if i.id == returned)  # type: ignore[union-attr]
        assert ret.worker.exit_code() is None  # kept, not terminated (it may be trimmed later, newest first)
        ev = fleet.events()
        check_events_frame(ev)
        assert not ((ev["kind"] == "terminate") & (ev["target"] == returned)).any()
