"""Rollouts on the local fleet under steady open-loop load: a good variant completes, a slow one is rolled back
within two guard intervals, the slow variant's traffic after the breach is bounded, and the shift itself costs the
client no error. One fleet and one load run for the whole module (each new slot boots real workers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _localfleet import fast_spec, payload

from mlops_lb.errors import ProvisionError, SpecError
from mlops_lb.load import constant, start_load
from mlops_lb.local import LocalFleet
from mlops_lb.rollouts import Canary, ClientFeed, Guard

pytestmark = [pytest.mark.fleet, pytest.mark.serial]

RATE = 80.0  # rps, open loop
INTERVAL_S = 1.0
# The slow variant's floor (150 ms per request) is 10x the guard's p99 bound's margin over the good one's
# (4-5 ms service, p99 tens of ms on a busy two-core box): the verdict cannot flip on scheduling noise.
GUARD = Guard(p99_s=0.12, max_error_share=0.01, min_requests=5, breach_intervals=2, interval_s=INTERVAL_S)


@pytest.fixture(scope="module")
def loaded() -> Iterator[dict[str, Any]]:
    """A one-target fleet under RATE rps of open-loop load whose records feed the guard."""
    spec = fast_spec("ro", min=1, desired=1, max=1, scale_in=False, min_service_ms=5, target_rps=1000)
    fleet = LocalFleet(spec)
    stop = threading.Event()
    try:
        fleet.launch()
        feed = ClientFeed()
        run = start_load(
            fleet.url + "/predict",
            constant(RATE, 240),
            payloads=[payload()],
            progress=False,
            stop=stop,
            on_records=feed,
        )
        yield {"fleet": fleet, "feed": feed, "run": run, "stop": stop, "results": {}}
    finally:
        stop.set()
        fleet.close()


def test_bad_input_changes_nothing(loaded):
    """Out-of-range steps and a guard on a metric the model server cannot produce fail before any slot starts."""
    fleet: LocalFleet = loaded["fleet"]
    with pytest.raises(SpecError, match=r"strategy\.percent must be"):
        fleet.rollout({"local": {"min_service_ms": 4}}, strategy={"kind": "canary", "percent": 80})
    with pytest.raises(SpecError, match=r"guard\.ttft_p99_s needs a streaming server"):
        fleet.rollout({"local": {"min_service_ms": 4}}, guard={"ttft_p99_s": 0.5}, feed=loaded["feed"])
    with pytest.raises(SpecError, match=r"new\.network cannot change"):
        fleet.rollout({"network": {"idle_timeout_s": 30}})
    with pytest.raises(SpecError, match=r"resume needs an interrupted rollout"):
        fleet.rollout(resume=True)
    assert fleet._slots == [] and len(fleet.status()) == 1
    assert fleet.status().attrs["rollout"]["state"] == "idle"
    closed = LocalFleet(fast_spec("closed"))
    closed.close()
    with pytest.raises(ProvisionError, match="closed"):
        closed.rollout({"local": {"min_service_ms": 4}})


def test_good_canary_completes(loaded):
    """A variant as fast as the old one passes both bakes; the new slot serves everything, the old one retires."""
    fleet: LocalFleet = loaded["fleet"]
    old_ids = set(fleet.status()["target"])
    refused: list[str] = []

    def second_rollout(ev: dict[str, Any]) -> None:  # a second rollout while this one runs is refused
        if ev["kind"] == "shift" and not refused:
            try:
                fleet.rollout({"local": {"min_service_ms": 3}})
            except SpecError as exc:
                refused.append(str(exc))

    res = fleet.rollout(
        {"local": {"min_service_ms": 4}},
        strategy=Canary(percent=20, bake_s=3),
        guard=GUARD,
        feed=loaded["feed"],
        on_event=second_rollout,
    )
    loaded["results"]["good"] = res
    assert refused and "another rollout is running" in refused[0]
    assert res.state == "completed", res
    assert [row["percent"] for row in res.timeline] == [20.0, 100.0]
    assert res.served.get("new", 0) > 0 and res.client_errors.get("new", 0) == 0
    assert fleet.spec.local.min_service_ms == 4
    st = fleet.status()
    serving = st[st["slot"] == "serving"]
    assert set(serving["target"]).isdisjoint(old_ids) and (serving["weight"] == 1).all()


def test_slow_variant_rolled_back_within_two_intervals(loaded):
    """A 150 ms variant breaches p99 in its canary; after a Ctrl-C the rollout is named ``interrupted`` and both
    slots serve; resumed, the guard sends the new slot to 0 % within two intervals of the breach's start, and no
    request is sent to it afterwards."""
    fleet: LocalFleet = loaded["fleet"]

    def interrupt_once(ev: dict[str, Any]) -> None:
        if ev["kind"] == "shift" and not loaded.get("interrupted"):
            loaded["interrupted"] = True
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fleet.rollout(
            {"local": {"min_service_ms": 150}},
            strategy=Canary(percent=20, bake_s=8),
            guard=GUARD,
            feed=loaded["feed"],
            on_event=interrupt_once,
        )
    status = fleet.status()
    assert status.attrs["rollout"]["state"] == "interrupted"
    assert set(status["slot"]) == {"serving", "new"}
    with pytest.raises(SpecError, match="another rollout is interrupted"):
        fleet.rollout({"local": {"min_service_ms": 4}})
    res = fleet.rollout(resume=True, feed=loaded["feed"])
    loaded["results"]["slow"] = res
    assert res.state == "rolled_back", res
    assert "p99" in res.reason and res.evidence
    assert res.breach_to_zero_s <= 2 * INTERVAL_S + 0.5, res.breach_to_zero_s
    assert fleet.rollout_status()["percent"] == 0.0


def test_traffic_after_the_breach_is_bounded_and_no_client_errors(loaded):
    """The slow variant gets no request sent after its weight went to 0; between the start of the first breaching
    interval and then it gets at most its share of two intervals' requests (plus slack); the whole run -- two
    shifts, a rollback, two slots retired -- shows the client no error."""
    if "slow" not in loaded["results"] or "good" not in loaded["results"]:
        pytest.skip("needs the two rollouts above")
    loaded["stop"].set()
    result = loaded["run"].result()
    slow = loaded["results"]["slow"]
    reqs = result.requests()
    slow_ids = {t for t in reqs["target"].unique() if "-r2-" in t}  # the second rollout's slot
    assert slow_ids, "the slow slot served nothing"
    on_slow = reqs[reqs["target"].isin(slow_ids)]
    after_zero = on_slow[on_slow["sent_at"] > slow.zero_at]
    assert len(after_zero) == 0, after_zero[["sent_at", "done_at"]]
    import pandas as pd

    first = slow.evidence[0]["interval"]
    breach_start = pd.Timestamp(slow.zero_at) - pd.Timedelta(seconds=slow.breach_to_zero_s)
    in_breach = on_slow[on_slow["sent_at"] >= breach_start]
    bound = RATE * 0.2 * (2 * INTERVAL_S + 0.5) * 1.5
    assert len(in_breach) <= bound, (len(in_breach), bound, first)
    failed = reqs[~reqs["error"].isin(["", "cancelled"])]
    assert len(failed) == 0, failed["error"].value_counts()


def test_interrupted_while_preparing_is_named_and_rolls_back(loaded):
    """A Ctrl-C while the new slot boots leaves ``interrupted`` (in ``preparing``, 0 % on the new slot, the old slot
    serving), refuses a different rollout naming the fix, and ``rollback=True`` retires the new slot."""
    fleet: LocalFleet = loaded["fleet"]

    def interrupt_at_start(ev: dict[str, Any]) -> None:
        if ev["kind"] == "start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fleet.rollout(
            {"local": {"min_service_ms": 6}},
            strategy=Canary(percent=20, bake_s=3),
            on_event=interrupt_at_start,
        )
    st = fleet.rollout_status()
    assert (st["state"], st["interrupted_in"], st["percent"]) == ("interrupted", "preparing", 0.0), st
    deadline = time.monotonic() + 20  # the new slot keeps booting (at weight 0) after the interruption
    while "new" not in set(fleet.status()["slot"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "new" in set(fleet.status()["slot"])
    with pytest.raises(SpecError, match=r"another rollout is interrupted.*resume=True.*rollback=True"):
        fleet.rollout({"local": {"min_service_ms": 7}})
    res = fleet.rollout(rollback=True)
    assert res.state == "rolled_back" and fleet.rollout_status()["percent"] == 0.0
    assert "new" not in set(fleet.status()["slot"])
