"""Load profiles: schedules fixed in advance, validation that names the field, dict round-trip."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_lb.errors import SpecError
from mlops_lb.load import constant, ramp, spike, step, sweep, trace
from mlops_lb.load.profiles import profile_from_dict

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
        """trace() shifts timestamps to start at 0, from a list or a CSV column."""
        assert list(trace([5, 6, 7.5]).schedule()) == [0, 1, 2.5]
        f = tmp_path / "t.csv"
        f.write_text("id,timestamp\n1,100.5\n2,100.0\n3,101\n")
        p = trace(f)
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

    def test_messages_name_field_and_range(self):
        """Messages read like 'spike_s must be > 0 and <= 1 (got 5)'."""
        with pytest.raises(SpecError, match=r"spike_s must be > 0 and <= 1 \(got 5\)"):
            spike(1, 2, 10, 9, 5)
        with pytest.raises(SpecError, match="arrival must be one of uniform, poisson"):
            constant(1, 1, arrival="bursty")
        with pytest.raises(SpecError, match="at most"):
            constant(1e6, 600_000)
