"""The sine shape (mlops_lb.load.shapes.SineProfile): a diurnal load in minutes, registered by its class alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_lb.errors import SpecError
from mlops_lb.load import make_profile, profile_from_dict, profile_kinds
from mlops_lb.load.shapes import SineProfile


def test_rate_follows_the_sine_at_its_corners_and_between() -> None:
    """Mean at 0 and half a period, peak at a quarter, trough at three quarters; between corners within 0.12 %."""
    p = SineProfile(mean_rps=100, amplitude_rps=80, period_s=40, duration_s=80)
    assert p.rate_at(0) == pytest.approx(100) and p.rate_at(20) == pytest.approx(100)
    assert p.rate_at(10) == pytest.approx(180) and p.rate_at(30) == pytest.approx(20)
    for t in np.linspace(0, 79.9, 97):
        assert p.rate_at(t) == pytest.approx(100 + 80 * math.sin(2 * math.pi * t / 40), abs=0.0012 * 80)
    assert p.duration_s == pytest.approx(80)


def test_whole_periods_schedule_the_mean_and_the_first_half_is_denser() -> None:
    """Two periods at mean 50 rps for 60 s: 3000 requests; the rising half period holds mean·P/2 + amp·P/π."""
    p = SineProfile(mean_rps=50, amplitude_rps=40, period_s=30, duration_s=60)
    s = p.schedule()
    assert len(s) == 3000 and (np.diff(s) >= 0).all() and s[-1] < 60
    first_half = int((s < 15).sum())
    assert first_half == pytest.approx(50 * 15 + 40 * 30 / math.pi, abs=2)  # about 1132, against 618 after
    assert int(((s >= 15) & (s < 30)).sum()) == pytest.approx(50 * 15 - 40 * 30 / math.pi, abs=2)


def test_a_partial_period_ends_at_duration() -> None:
    """duration_s need not be whole periods: the last segment stops at duration_s."""
    p = SineProfile(mean_rps=10, amplitude_rps=5, period_s=8, duration_s=3)
    assert p.segments()[-1][0] > 0 and p.duration_s == pytest.approx(3)
    assert p.expected_requests() == pytest.approx(
        10 * 3 + 5 * 8 / (2 * math.pi) * (1 - math.cos(2 * math.pi * 3 / 8)), rel=1e-3
    )


def test_registered_by_its_class_round_trips_and_builds_from_rates() -> None:
    """The kind is known to make_profile and from_dict with no list edited; rps/start_rps/duration_s (the CLI's
    and the widget's inputs) give one period from the trough start_rps to the peak rps."""
    assert "sine" in profile_kinds()
    p = make_profile(
        "sine", mean_rps=50, amplitude_rps=20, period_s=30, duration_s=90, arrival="poisson", seed=2
    )
    assert profile_from_dict(p.to_dict()) == p and p.to_dict()["kind"] == "sine"
    assert "sine 50 ± 20 rps, period 30 s" in p.describe()
    r = make_profile("sine", rps=100, start_rps=20, duration_s=60)
    assert (r.mean_rps, r.amplitude_rps, r.period_s, r.duration_s) == (60, 40, 60, 60)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mean_rps": 10, "amplitude_rps": 11}, "amplitude_rps"),  # would go below 0 rps
        ({"mean_rps": 0}, "mean_rps"),
        ({"period_s": 0}, "period_s"),
        ({"period_s": 1, "duration_s": 1000}, "period_s"),  # 64000 segments
        ({"duration_s": -1}, "duration_s"),
    ],
)
def test_invalid_values_name_the_field(params: dict[str, float], field: str) -> None:
    """Each bound is a SpecError on the field that breaks it."""
    with pytest.raises(SpecError) as err:
        SineProfile(**{"mean_rps": 10, **params})
    assert err.value.field == field
