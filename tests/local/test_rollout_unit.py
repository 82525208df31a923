"""The local rollout's arithmetic without processes: weights for a share, and the fleet-side evidence from two
``show stat`` snapshots (the guard's input when no load run is attached)."""

from __future__ import annotations

import pytest

from mlops_lb.haproxy_runtime import _parse_stat
from mlops_lb.local.rollout import MAX_WEIGHT, fleet_variant_stats, split_weights
from mlops_lb.rollouts import Guard, guard_decision

HEAD = "# pxname,svname,status,weight,scur,stot,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,eresp,econ,rtime\n"


def _snap(rows: list[tuple[str, int, int, int]]) -> dict:
    """server, 2xx, 5xx, rtime ms -> {server: StatRow} as local.rollout reads them."""
    text = HEAD + "".join(f"tg,{s},UP,1,0,0,0,{ok},0,0,{bad},0,0,0,{rt}\n" for s, ok, bad, rt in rows)
    return {r.server: r for r in _parse_stat(text)}


class TestSplitWeights:
    @pytest.mark.parametrize(
        ("pct", "n_old", "n_new"), [(10, 2, 2), (20, 1, 1), (50, 3, 1), (90, 1, 4), (1, 4, 1)]
    )
    def test_share_within_rounding(self, pct, n_old, n_new):
        """Integer weights of at most 256 give the asked share within one weight step."""
        w_old, w_new, got = split_weights(pct, n_old, n_new)
        assert 0 < w_old <= MAX_WEIGHT and 0 < w_new <= MAX_WEIGHT
        assert got == pytest.approx(100 * n_new * w_new / (n_new * w_new + n_old * w_old))
        assert abs(got - pct) < 1.0

    def test_ends(self):
        """0 % keeps the old slot at weight 1 and the new at 0; 100 % the reverse."""
        assert split_weights(0, 2, 2) == (1, 0, 0.0)
        assert split_weights(100, 2, 2) == (0, 1, 100.0)


class TestFleetSideEvidence:
    def test_deltas_per_variant_and_rtime_as_mean(self):
        """Responses and 5xx are the counters' differences per slot; rtime (ms) becomes mean_s."""
        before = _snap([("a1", 100, 0, 5), ("b1", 10, 0, 5)])
        after = _snap([("a1", 180, 0, 6), ("b1", 25, 5, 300)])
        stats = fleet_variant_stats(before, after, {"a1": "old", "b1": "new"})
        assert (stats["old"].requests, stats["old"].errors) == (80, 0)
        assert (stats["new"].requests, stats["new"].errors) == (20, 5)
        assert stats["new"].mean_s == pytest.approx(0.3)

    def test_fleet_side_guard_both_ways(self):
        """From balancer counters alone: a slow new slot (mean above the p99 bound) and one with 5xx roll back; a
        healthy one does not."""
        g = Guard(p99_s=0.1, min_requests=5, breach_intervals=1)
        before = _snap([("a1", 0, 0, 5), ("b1", 0, 0, 5)])
        v = {"a1": "old", "b1": "new"}
        slow = fleet_variant_stats(before, _snap([("a1", 50, 0, 5), ("b1", 20, 0, 250)]), v)
        failing = fleet_variant_stats(before, _snap([("a1", 50, 0, 5), ("b1", 18, 2, 5)]), v)
        fine = fleet_variant_stats(before, _snap([("a1", 50, 0, 5), ("b1", 20, 0, 8)]), v)
        assert guard_decision(g, [slow]).action == "rollback"
        assert "mean 0.250 s" in guard_decision(g, [slow]).reason
        assert guard_decision(g, [failing]).action == "rollback"
        assert guard_decision(g, [fine]).action == "continue"

    def test_every_backend_of_a_server_counts(self):
        """A server sits in several backends (tg, tg_sticky, tg_open...); the traffic-carrying one is not the last
        listed, so the snapshot keeps each backend's row and the counters add up (a server-keyed dict kept only
        the last backend's zeros: the guard saw no requests and rolled every feed-less rollout back)."""
        from types import SimpleNamespace

        from mlops_lb.local.rollout import _stat_rows

        def fleet(ok: int) -> SimpleNamespace:
            text = HEAD + "".join(
                f"{px},{s},UP,1,0,0,0,{ok if px == 'tg' else 0},0,0,0,0,0,0,5\n"
                for s in ("a1", "b1")
                for px in ("tg", "tg_open", "tg_sticky")
            )
            return SimpleNamespace(_api=SimpleNamespace(show_stat=lambda: _parse_stat(text)))

        stats = fleet_variant_stats(_stat_rows(fleet(0)), _stat_rows(fleet(30)), {"a1": "old", "b1": "new"})
        assert stats["new"].requests == 30 and stats["old"].requests == 30


class TestNewSlotCapacity:
    def test_new_slot_follows_the_serving_slots_size_at_each_shift(self):
        """The autoscaler grew the serving slot from 1 to 3 during the canary: the shift to 100 % first sizes the
        new slot to 3 (it would otherwise take all traffic on 1 target); 0 % (a rollback) never resizes it."""
        import threading
        from types import SimpleNamespace

        from mlops_lb.local.rollout import RolloutResult, _Run, _set_percent

        class Slot:
            def __init__(self, n: int) -> None:
                self.instances = [SimpleNamespace(state="in_service") for _ in range(n)]
                self.desired = self.max = n
                self.weight = -1

            def set_traffic_weight(self, w: int) -> None:
                self.weight = w

        old, new = Slot(3), Slot(1)
        fleet = SimpleNamespace(_lock=threading.Lock(), _asg=old, _capacity=(1, 3, 4))
        res = RolloutResult(state="baking", reason="", strategy={}, guard={}, source="fleet")
        run = _Run(spec=None, steps=((20.0, 1.0), (100.0, 1.0)), guard=None, result=res, slot=new)  # type: ignore[arg-type]
        _set_percent(fleet, run, 0.0)
        assert new.desired == 1
        _set_percent(fleet, run, 100.0)
        assert (new.desired, new.max) == (3, 3) and (old.weight, new.weight) == (0, 1)
