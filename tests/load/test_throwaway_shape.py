from mlops_lb.load.profiles import make_profile, profile_from_dict


def test_sawtooth_is_registered_round_trips_and_ramps():
    p = make_profile("sawtooth", low_rps=10, high_rps=30, period_s=10, duration_s=30)
    assert p.rate_at(5) == 20.0
    assert profile_from_dict(p.to_dict()) == p
