"""LoadSettings: run_load's knobs in one frozen value; the old keywords still work; disagreement is an error."""

from __future__ import annotations

import json

import pytest

from mlops_lb.bundle import RunBundle
from mlops_lb.errors import SpecError
from mlops_lb.load import LoadSettings, constant, run_load


class TestValue:
    def test_defaults_are_run_loads(self):
        """The defaults equal run_load's keyword defaults, and to_dict/from_dict round-trip."""
        import inspect

        params = inspect.signature(run_load).parameters
        s = LoadSettings()
        for name, value in s.to_dict().items():
            default = params[name].default
            assert value == ({} if name == "headers" else default), name
        assert LoadSettings.from_dict(s.to_dict()) == s

    @pytest.mark.parametrize(
        ("kw", "text"),
        [
            ({"connections": 0}, r"connections must be between 1 and 100000 \(got 0\)"),
            ({"workers": 4, "connections": 2}, r"workers must be <= connections \(2\) \(got 4\)"),
            ({"method": "post"}, "method must be an HTTP method"),
            ({"progress": "yes"}, "progress must be true or false"),
            ({"headers": ["x"]}, "headers must be a mapping"),
        ],
    )
    def test_bad_values_name_the_field(self, kw, text):
        """Each bad setting is a SpecError naming it, raised where the settings are written."""
        with pytest.raises(SpecError, match=text):
            LoadSettings(**kw)

    def test_replace_revalidates(self):
        """replace() makes a checked copy; an unknown name gets a did-you-mean."""
        s = LoadSettings(connections=4).replace(workers=2)
        assert (s.connections, s.workers) == (4, 2)
        with pytest.raises(SpecError, match="did you mean 'timeout_s'"):
            s.replace(timeout=1)

    def test_ray_shards_are_settings_too(self):
        """cluster/shards/placement validate where the settings are written (no Ray import needed)."""
        s = LoadSettings(connections=64, cluster="ray://10.0.1.9:10001", shards="auto", placement="pack")
        assert LoadSettings.from_dict(s.to_dict()) == s
        with pytest.raises(SpecError, match="shards needs cluster='ray'"):
            LoadSettings(shards=2)
        with pytest.raises(SpecError, match="placement"):
            LoadSettings(cluster="ray", placement="scatter")

    def test_headers_are_copied(self):
        """The settings keep their own copy of the headers (frozen means frozen)."""
        h = {"X-A": "1"}
        s = LoadSettings(headers=h)
        h["X-A"] = "2"
        assert s.headers == {"X-A": "1"}


class TestRunLoad:
    def test_settings_drive_a_run_and_match_load_json(self, target, tmp_path):
        """run_load(settings=...) uses them; load.json records the same values."""
        s = LoadSettings(connections=3, interval_s=0.5, progress=False, max_lag_p99_s=1.0)
        bundle = RunBundle.create(root=tmp_path, name="settings")
        r = run_load(f"{target.base}/ok", constant(20, 1), [b"{}"], settings=s, bundle=bundle)
        assert r.summary()["responses"] == 20
        recorded = json.loads((bundle.path / "load.json").read_text())
        for key in ("connections", "interval_s", "timeout_s", "workers", "max_lag_p99_s"):
            assert recorded[key] == s.to_dict()[key]
        # load.json records what the run used: the SLO as {} and the connect timeout resolved (min(timeout_s, 3)).
        back = LoadSettings.from_dict({**recorded, "progress": False})
        assert back.replace(slo=None, connect_timeout_s=None) == s
        assert back.connect_timeout_s == 3.0 and back.slo == {}

    def test_load_json_keeps_header_names_not_values(self, target, tmp_path):
        """Header values are often credentials: load.json names the headers a run sent, never their values."""
        bundle = RunBundle.create(root=tmp_path, name="secret")
        s = LoadSettings(progress=False, max_lag_p99_s=1.0, headers={"Authorization": "Bearer sk-123"})
        run_load(f"{target.base}/ok", constant(5, 1), [b"{}"], settings=s, bundle=bundle)
        text = (bundle.path / "load.json").read_text()
        assert json.loads(text)["headers"] == {"Authorization": "***"} and "sk-123" not in text

    def test_start_load_takes_exactly_run_loads_parameters(self, target):
        """start_load is run_load in the background: one parameter list (help() shows it), checked the same way."""
        import inspect

        from mlops_lb.load import start_load

        assert inspect.signature(start_load).parameters == inspect.signature(run_load).parameters
        with pytest.raises(TypeError, match="conections"):
            start_load(f"{target.base}/ok", constant(5, 1), conections=5)
        with pytest.raises(SpecError, match=r"settings\.connections is 3"):
            start_load(
                f"{target.base}/ok", constant(5, 1), settings=LoadSettings(connections=3), connections=5
            )
        assert target.count() == 0

    def test_a_keyword_that_disagrees_is_an_error(self, target):
        """settings=LoadSettings(connections=3) with connections=5 is refused before anything is sent."""
        with pytest.raises(
            SpecError, match=r"settings\.connections is 3 but the connections= keyword says 5"
        ):
            run_load(
                f"{target.base}/ok",
                constant(5, 1),
                [b"{}"],
                settings=LoadSettings(connections=3),
                connections=5,
            )
        assert target.count() == 0
