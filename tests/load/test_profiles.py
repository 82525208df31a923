"""Load profiles: schedules fixed in advance, validation that names the field, dict round-trip."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_lb.errors import SpecError
from mlops_lb.load import (
    RateProfile,
    constant,
    make_profile,
    piecewise,
    profile_from_dict,
    profile_kinds,
    ramp,
    spike,
    step,
    sweep,
    trace,
)

anything = st.one_of(
    st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.floats(), max_size=3),
)  # fmt: skip


class TestSchedules:
    def test_constant_uniform(self):
        """constant(100, 10) sends 1000 requests 10 ms apart starting at 0."""
        s = constant(100, 10).schedule()
        assert len(s) == 1000 and s[0] == 0 and np.allclose(np.diff(s), 0.01)

    def test_poisson_is_seeded_and_sorted(self):
        """Poisson arrivals are repeatable for a seed, sorted, inside the duration, with about rps × duration."""
        a = constant(1000, 5, arrival="poisson", seed=3).schedule()
        b = constant(1000, 5, arrival="poisson", seed=3).schedule()
        assert np.array_equal(a, b) and (np.diff(a) >= 0).all() and a.max() < 5
        assert 4700 < len(a) < 5300

    def test_ramp_rate_rises(self):
        """A ramp from 0 to 100 rps over 10 s schedules 500 requests, denser at the end."""
        s = ramp(0, 100, 10).schedule()
        assert len(s) == 500 and s[0] == 0
        assert (s > 5).sum() > 3 * (s < 5).sum() - 10

    def test_step_spike_sweep(self):
        """step, spike and sweep schedule the area under their rate curves."""
        assert len(step([10, 20], 2).schedule()) == 60
        sp = spike(10, 100, 10, spike_at_s=2, spike_s=1)
        assert len(sp.schedule()) == 190 and sp.rate_at(2.5) == 100 and sp.rate_at(5) == 10
        sw = sweep(10, 10, 2, 50)
        assert sw.rates == [10, 20, 30, 40, 50] and sw.duration_s == 10 and len(sw.schedule()) == 300

    def test_trace_list_and_csv(self, tmp_path):
        """trace() shifts timestamps to start at 0, from a list or a CSV column; an unordered file is refused with
        its line (issue 28) unless sort=True asks for it to be sorted."""
        assert list(trace([5, 6, 7.5]).schedule()) == [0, 1, 2.5]
        f = tmp_path / "t.csv"
        f.write_text("id,timestamp\n1,100.5\n2,100.0\n3,101\n")
        with pytest.raises(SpecError, match=r"t.csv line 3: timestamp 100 s is earlier .*sort=True"):
            trace(f)
        p = trace(f, sort=True)
        assert list(p.schedule()) == [0, 0.5, 1.0] and p.duration_s == 1.0

    @pytest.mark.parametrize(
        "p",
        [
            constant(5, 2),
            ramp(1, 9, 3),
            step([1, 2], 1),
            spike(1, 5, 4, 1, 1),
            sweep(1, 1, 1, 3),
            trace([0, 1]),
        ],
    )
    def test_round_trip(self, p):
        """to_dict / profile_from_dict round-trip, and describe() is one line."""
        assert profile_from_dict(p.to_dict()) == p
        assert "\n" not in p.describe()


class TestValidation:
    @settings(max_examples=150, deadline=None)
    @given(rps=anything, duration=anything)
    def test_constant_only_specerror(self, rps, duration):
        """Any invalid rps/duration raises SpecError (never another exception), naming the field."""
        try:
            constant(rps, duration)
        except SpecError as exc:
            assert exc.field in ("rps", "duration_s")

    @settings(max_examples=150, deadline=None)
    @given(a=anything, b=anything, c=anything, d=anything, e=anything)
    def test_other_profiles_only_specerror(self, a, b, c, d, e):
        """ramp, step, spike, sweep and trace raise SpecError only, for any junk input."""
        for make in (
            lambda: ramp(a, b, c), lambda: step(a, b), lambda: spike(a, b, c, d, e), lambda: sweep(a, b, c, d),
            lambda: trace(a), lambda: constant(1, 1, arrival=a), lambda: constant(1, 1, seed=a),
        ):  # fmt: skip
            with contextlib.suppress(SpecError):
                make()

    def test_unreadable_trace_paths_are_spec_errors(self, tmp_path):
        """A path with a NUL byte or a binary file is a SpecError naming the trace, not a ValueError."""
        binary = tmp_path / "x.csv"
        binary.write_bytes(b"\xff\xfe\x00\x81")
        for bad in ("a\x00b.csv", binary):
            with pytest.raises(SpecError, match="trace"):
                trace(bad)

    def test_messages_name_field_and_range(self):
        """Messages read like 'spike_s must be > 0 and <= 1 (got 5)'."""
        with pytest.raises(SpecError, match=r"spike_s must be > 0 and <= 1 \(got 5\)"):
            spike(1, 2, 10, 9, 5)
        with pytest.raises(SpecError, match="arrival must be one of uniform, poisson"):
            constant(1, 1, arrival="bursty")
        with pytest.raises(SpecError, match="at most"):
            constant(1e6, 600_000)


# --------------------------------------------------------------------------- shapes register themselves
LAX = {"progress": False, "max_lag_p99_s": 1.0}


@dataclass(frozen=True)
class Sawtooth(RateProfile, kind="test_sawtooth"):
    """What a user writes in a notebook: a new shape is a subclass with a kind and its segments."""

    low: float = 10.0
    high: float = 40.0
    period_s: float = 0.5
    periods: int = 2

    def segments(self) -> list[tuple[float, float, float]]:
        return [(self.period_s, self.low, self.high)] * self.periods


@dataclass(frozen=True)
class StopAfter(RateProfile, kind="test_stop_after"):
    """A shape with its own stop rule: steps of rising rate, stopped when the ok count of a step reaches a bound."""

    rates: tuple[float, ...] = (20.0, 40.0, 80.0, 160.0)
    step_s: float = 0.5
    max_ok: int = 15

    def segments(self) -> list[tuple[float, float, float]]:
        return [(self.step_s, r, r) for r in self.rates]

    def stop_rule(self, step_summary):
        return (
            f"step {step_summary['step']} had {step_summary['ok']} ok"
            if step_summary["ok"] >= self.max_ok
            else False
        )


class TestRegistry:
    def test_a_subclass_is_known_by_its_kind(self):
        """Defining the class registers it: make_profile and from_dict build it, nothing else to edit."""
        assert "test_sawtooth" in profile_kinds()
        p = make_profile("test_sawtooth", high=80.0)
        assert isinstance(p, Sawtooth) and p.kind == "test_sawtooth"
        assert profile_from_dict(p.to_dict()) == p
        assert len(p.schedule()) == round(2 * 0.5 * (10 + 80) / 2)

    def test_unknown_kind_and_field_say_what_is_allowed(self):
        """An unknown kind gets a did-you-mean; an unknown field names the shape's fields."""
        with pytest.raises(SpecError, match="did you mean 'ramp'"):
            make_profile("rmap", rps=1, duration_s=1)
        with pytest.raises(SpecError, match="is not a known field"):
            make_profile("ramp", end_rps=5, durration_s=3)
        with pytest.raises(SpecError, match="'trace' cannot be built from rps/start_rps/duration_s"):
            make_profile("trace", rps=1, duration_s=1)

    def test_validation_runs_for_user_shapes(self):
        """A user shape is checked like the built-in ones (the size bound, the arrival and seed fields)."""
        with pytest.raises(SpecError, match="arrival must be one of uniform, poisson"):
            Sawtooth(arrival="bursty")
        with pytest.raises(SpecError, match="at most"):
            Sawtooth(high=1e6, period_s=1e5)

    def test_the_widget_and_the_cli_build_the_same_step(self):
        """'step' is four equal steps from the start rate to the rate, for the widget and for `mlops-lb load`."""
        import argparse

        from mlops_lb.widgets import build_profile

        p = make_profile("step", rps=40, start_rps=10, duration_s=8)
        assert p == step([10, 20, 30, 40], 2)
        assert build_profile("step", 10, 40, 8) == p
        assert build_profile("constant", 10, 40, 8) == constant(10, 8)
        assert build_profile("spike", 10, 40, 9) == spike(10, 40, 9, 3, 1.5)
        ns = argparse.Namespace(profile="step", rps=40.0, start_rps=10.0, duration_s=8.0)
        assert make_profile(ns.profile, rps=ns.rps, start_rps=ns.start_rps, duration_s=ns.duration_s) == p

    def test_piecewise_corners(self):
        """piecewise draws a rate through corners; it round-trips through JSON-like lists."""
        p = piecewise([(0, 0), (10, 100), (20, 100)])
        assert p.rate_at(5) == 50 and p.rate_at(15) == 100 and len(p.schedule()) == 500 + 1000
        assert profile_from_dict({"kind": "piecewise", "points": [[0, 0], [10, 100], [20, 100]]}) == p
        with pytest.raises(SpecError, match=r"points\[1\]\[0\] must be after points\[0\]\[0\]"):
            piecewise([(0, 1), (0, 2)])


class TestLazySchedule:
    @pytest.mark.parametrize(
        "p",
        [
            constant(1000, 3, arrival="poisson", seed=2),
            ramp(0, 500, 4),
            step([5, 0, 50], 1),
            trace([0, 0.5, 0.7]),
        ],
    )
    def test_chunks_concatenate_to_the_schedule(self, p):
        """iter_schedule's chunks, sorted and at most `chunk` long, are exactly schedule()."""
        chunks = list(p.iter_schedule(chunk=64))
        assert all(len(c) <= 64 for c in chunks)
        joined = np.concatenate(chunks)
        assert np.array_equal(joined, p.schedule()) and (np.diff(joined) >= 0).all()

    def test_a_50_million_request_profile_is_not_materialised(self):
        """The first chunk of a 50 M-request profile comes without building the other 49.9 M."""
        p = constant(100_000, 500)
        it = p.iter_schedule()
        first = next(it)
        assert len(first) == 65536 and first[1] == pytest.approx(1e-5)
        assert p.expected_requests() == 50_000_000

    def test_an_hour_at_20k_rps_is_allowed_a_week_at_1m_is_not(self):
        """The engine's memory no longer grows with the run, so the request cap only bounds disk (records) use."""
        assert constant(20_000, 3600).expected_requests() == 72_000_000
        with pytest.raises(SpecError, match=r"at most 500,000,000 requests \(got 600,000,000\)"):
            constant(1_000_000, 600)


class TestUserShapesRun:
    def test_a_notebook_shape_runs_through_run_load(self, target_factory):
        """A shape defined in the test, as in a notebook, drives a real run: every scheduled request is sent."""
        from mlops_lb.load import run_load

        t = target_factory()
        p = Sawtooth(low=20, high=60, period_s=0.5, periods=2)
        r = run_load(f"{t.base}/ok", p, [b"{}"], connections=2, interval_s=0.25, **LAX)
        assert r.summary()["requests"] == len(p.schedule()) == 40
        assert t.count() == 40 and not r.stopped

    @pytest.mark.serial  # each step's ok count must land inside its 0.5 s window
    def test_the_runner_asks_the_shape_stop_rule(self, target_factory):
        """The runner consults a user shape's stop_rule per step and stops with its reason (no class named)."""
        from mlops_lb.load import run_load

        t = target_factory()
        p = StopAfter()
        r = run_load(f"{t.base}/ok", p, [b"{}"], connections=2, interval_s=0.25, **LAX)
        assert r.stopped and r.stop_reason.startswith("step 1 had")
        steps = r.steps()
        assert list(steps["rate"]) == [20.0, 40.0] and list(steps["passed"]) == [True, False]
        assert r.summary()["requests"] < len(p.schedule())


class TestRateKinds:
    def test_a_shape_with_from_rates_is_offered_by_the_cli_and_the_widget(self):
        """A shape registered in a notebook with a from_rates joins rate_kinds(): the CLI's --profile choices and
        the load panel's dropdown come from it, with nothing else to edit."""
        from dataclasses import dataclass

        from mlops_lb.cli import build_parser
        from mlops_lb.load import RateProfile, rate_kinds
        from mlops_lb.widgets import build_profile

        assert rate_kinds() == ("constant", "step", "ramp", "spike", "sine")
        assert "sweep" not in rate_kinds() and "trace" not in rate_kinds()  # they need their own fields

        @dataclass(frozen=True)
        class Plateau(RateProfile, kind="testplateau"):
            rps: float = 10.0
            duration_s: float = 4.0  # type: ignore[assignment]

            def segments(self):
                half = self.duration_s / 2
                return [(half, 0.0, self.rps), (half, self.rps, self.rps)]

            @classmethod
            def from_rates(cls, *, rps, duration_s, start_rps=0.0):
                return cls(rps=rps, duration_s=duration_s)

        try:
            assert rate_kinds()[-1] == "testplateau"
            args = build_parser().parse_args(["load", "http://127.0.0.1:1/", "--profile", "testplateau"])
            assert args.profile == "testplateau"
            assert build_profile("testplateau", 1, 20, 6) == Plateau(rps=20, duration_s=6)
        finally:
            from mlops_lb.load import profiles

            del profiles._REGISTRY["testplateau"]
