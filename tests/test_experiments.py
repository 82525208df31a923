"""Experiments: the capacity-search runner, sweeps' up-front validation and AWS cost gate, the compare CLI.

Most tests drive the runner through its seams (a fake fleet and a fake ``run``) so they are fast; one test runs the
search against real LLM-emulator targets behind real HAProxy (marked fleet + slow).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb import experiments
from mlops_lb.errors import SpecError


class FakeFleet:
    """Enough of the Fleet protocol for the runner: scale, status, url, a context manager."""

    url = "http://127.0.0.1:9"

    def __init__(self, spec: Any = None, backend: str = "local") -> None:
        self.n = 1
        self.scales: list[dict[str, int]] = []
        self.launched = False

    def launch(self, on_output: Any = None) -> None:
        self.launched = True

    def scale(self, **kw: int) -> None:
        self.scales.append(kw)
        self.n = kw["desired"]

    def status(self) -> pd.DataFrame:
        return pd.DataFrame({"state": ["in_service"] * self.n, "health": ["healthy"] * self.n})

    def __enter__(self) -> FakeFleet:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class FakeResult:
    def __init__(self, rate: float, capacity: float, duration: float, valid: bool = True) -> None:
        n = int(rate * duration)
        good = n if rate <= capacity else int(n * capacity / rate)
        self._req = pd.DataFrame(
            {
                "intended_at": pd.Timestamp("2026-12-06", tz="UTC")
                + pd.to_timedelta(np.arange(n) / rate, unit="s"),
                "error": "",
                "ttft_s": [0.1] * good + [5.0] * (n - good),
                "tpot_s": 0.01,
                "latency_s": 0.5,
                "output_tokens": 20,
            }
        )
        self._s = {"valid": valid, "invalid_reasons": [] if valid else ["late"], "offered_rps": rate,
                   "goodput_rps": good / duration, "requests": n, "requests_meeting_slo": good,
                   "output_tokens": 20 * n, "duration_s": duration, "ttft_p99_s": 0.1 if good == n else 5.0,
                   "tpot_p50_s": 0.01, "output_tokens_per_s": 20 * n / duration}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return dict(self._s)

    def requests(self) -> pd.DataFrame:
        return self._req


def fake_run(capacity: float, calls: list[float], *, saturate_rows: int = 0):  # type: ignore[no-untyped-def]
    def run(
        url: str, profile: Any, bodies: Any, *, slo: Any, on_interval: Any, stop: Any, **kw: Any
    ) -> FakeResult:
        calls.append(profile.rps)
        if on_interval is not None and profile.rps > capacity:
            for _ in range(saturate_rows):  # intervals whose TTFT p99 is far above the SLO
                on_interval({"ttft_p99_s": 10.0})
        return FakeResult(profile.rps, capacity, profile.duration_s)

    return run


class TestCapacitySearch:
    def test_pins_capacity_and_reports_every_trial(self) -> None:
        """min=desired=max is pinned first; trials climb 4, 8, 16 then bisect; every trial has a cost."""
        fleet, calls = FakeFleet(), []
        r = ml.capacity_search(fleet, slo={"ttft_s": 0.5}, instances=2, start_rps=4, duration_s=10, idle_s=0,
                               resolution=0.1, price_as="g6.xlarge", run=fake_run(13, calls))  # fmt: skip
        assert fleet.scales[0] == {"min": 2, "desired": 2, "max": 2}
        assert calls[:3] == [4, 8, 16] and 13 / 1.1 <= r.capacity_rps <= 13
        frame = r.trials_frame()
        assert len(frame) == len(calls) and frame["usd_per_million_good_tokens"].notna().all()
        # two g6.xlarge for 10 s at 8 rps: 2 x 10 / 3600 x 0.8048 $ over 80 x 20 good tokens
        row = frame.set_index("rate_rps").loc[8.0]
        assert row["usd_per_million_good_tokens"] == pytest.approx(2 * 10 / 3600 * 0.8048 / 1600 * 1e6)

    def test_over_saturation_stops_early(self) -> None:
        """Three intervals far above the SLO stop the trial; it is a fail that says why."""
        trials = []
        ml.capacity_search(FakeFleet(), slo={"ttft_s": 0.5}, start_rps=4, duration_s=10, idle_s=0, max_trials=3,
                           run=fake_run(5, [], saturate_rows=6), on_trial=trials.append)  # fmt: skip
        failed = [t for t in trials if t.verdict == "fail"]
        assert failed and failed[0].stopped_early and "stopped early" in failed[0].reason
        # without the saturated intervals the same trial is a plain fail, not stopped early
        trials2 = []
        ml.capacity_search(FakeFleet(), slo={"ttft_s": 0.5}, start_rps=4, duration_s=10, idle_s=0, max_trials=3,
                           run=fake_run(5, []), on_trial=trials2.append)  # fmt: skip
        assert not any(t.stopped_early for t in trials2)

    def test_bad_input_before_any_run(self) -> None:
        """No SLO, bad instances, an unpriced type: SpecError before a single request."""
        calls: list[float] = []
        for kw in ({"slo": {}}, {"slo": {"ttft_s": 1}, "instances": 0},
                   {"slo": {"ttft_s": 1}, "price_as": "p4de.24xlarge"}):  # fmt: skip
            with pytest.raises(SpecError):
                ml.capacity_search(FakeFleet(), run=fake_run(5, calls), **kw)  # type: ignore[arg-type]
        assert calls == []


def _spec() -> ml.FleetSpec:
    return ml.FleetSpec.from_dict({"name": "sweep", "server": {"kind": "llm-emulator"}})


class TestSweepValidation:
    def test_gpu_type_on_local_refused_naming_variant(self) -> None:
        """A local sweep with an instance type fails before any fleet opens, naming the variant and the fix."""
        opened: list[Any] = []
        with pytest.raises(SpecError) as e:
            ml.sweep_configs(_spec(), variants=[{"name": "a"}, {"name": "gpu", "instance_type": "g5.xlarge"}],
                             profile=ml.load.constant(4, 5), slo={"ttft_s": 1}, price_as="g6.xlarge",
                             open_fleet=lambda *a, **k: opened.append(a))  # fmt: skip
        assert "variants['gpu'].instance_type" in str(e.value) and "backend='aws'" in str(e.value)
        assert opened == []

    def test_bad_override_names_variant(self) -> None:
        """An override the spec rejects names the variant."""
        with pytest.raises(SpecError, match=r"variants\['x'\]"):
            ml.sweep_configs(_spec(), variants=[{"name": "x", "max_num_seqs": 0}], profile=ml.load.constant(4, 5),
                             slo={"ttft_s": 1}, price_as="g6.xlarge")  # fmt: skip

    def test_aws_over_budget_refused_before_launch(self) -> None:
        """The AWS estimate (instances x price x (run + 10 min) + ALB) above budget_usd refuses the sweep."""
        opened: list[Any] = []
        variants = [{"name": "g5", "instance_type": "g5.xlarge", "replicas": 2},
                    {"name": "g6e", "instance_type": "g6e.xlarge", "replicas": 2}]  # fmt: skip
        est = experiments.estimate_sweep_cost(_spec(), variants, seconds_per_variant=600)
        # g5: 2 x 1.006 x 20 min + ALB 0.0225 x 1/3 h
        assert est.set_index("variant").loc["g5", "usd"] == pytest.approx(2 * 1.006 / 3 + 0.0225 / 3)
        with pytest.raises(SpecError, match="above the budget") as e:
            ml.sweep_configs(_spec(), variants=variants, backend="aws", profile=ml.load.constant(4, 600),
                             slo={"ttft_s": 1}, budget_usd=1.0, confirm=lambda est: True,
                             open_fleet=lambda *a, **k: opened.append(a))  # fmt: skip
        assert "'g6e'" in str(e.value) and opened == []

    def test_aws_needs_confirmation_and_a_price(self) -> None:
        """Without confirm (or when it says no) nothing launches; an unpriced type names the variant."""
        opened: list[Any] = []
        kw = dict(backend="aws", profile=ml.load.constant(4, 10), slo={"ttft_s": 1},
                  open_fleet=lambda *a, **k: opened.append(a))  # fmt: skip
        with pytest.raises(SpecError, match="not confirmed"):
            ml.sweep_configs(_spec(), variants=[{"instance_type": "g5.xlarge"}], **kw)  # type: ignore[arg-type]
        seen: list[Any] = []
        with pytest.raises(SpecError, match="not confirmed"):
            ml.sweep_configs(
                _spec(), variants=[{"instance_type": "g5.xlarge"}], confirm=lambda e: seen.append(e), **kw
            )  # type: ignore[arg-type]
        assert len(seen) == 1 and seen[0]["usd"].iloc[0] > 0
        with pytest.raises(SpecError, match=r"variants\['p4de'\].instance_type"):
            ml.sweep_configs(
                _spec(),
                variants=[{"name": "p4de", "instance_type": "p4de.24xlarge"}],
                confirm=lambda e: True,
                **kw,
            )  # type: ignore[arg-type]
        assert opened == []


class TestSweepRun:
    def test_frame_pareto_and_recommendation(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each variant runs the same profile; the cheapest per good token that met the SLO is recommended,
        the reasoning names the runner-up and the exclusions and says 'as if priced at'."""
        caps = {1: 5.0, 2: 10.0, 3: 15.0}

        def run(url: str, profile: Any, bodies: Any, **kw: Any) -> FakeResult:
            return FakeResult(profile.rps, caps[FakeFleet.current], profile.duration_s)

        class Fleet(FakeFleet):
            current = 1

            def __init__(self, spec: Any, backend: str = "local") -> None:
                super().__init__()
                Fleet.current = FakeFleet.current = spec.capacity.desired

        monkeypatch.setattr(experiments, "time", type("T", (), {"sleep": staticmethod(lambda s: None),
                                                                 "monotonic": staticmethod(lambda: 0.0)}))  # fmt: skip
        s = ml.sweep_configs(_spec(), variants=[{"name": f"{n}x", "replicas": n} for n in (1, 2, 3)],
                             profile=ml.load.constant(8, 10), slo={"ttft_s": 0.5}, price_as="g6.xlarge",
                             open_fleet=Fleet, run=run)  # fmt: skip
        f = s.frame.set_index("variant")
        assert list(f["met_slo"]) == [False, True, True]
        assert (
            s.recommended == "2x" and "Runner-up: 3x" in s.recommendation and "Excluded" in s.recommendation
        )
        assert (
            "as if priced at g6.xlarge" in s.recommendation
            and "never recommends an instance type" in s.recommendation
        )
        assert f.loc["2x", "usd_per_million_good_tokens"] < f.loc["3x", "usd_per_million_good_tokens"]
        assert bool(f.loc["2x", "pareto_cost_ttft"]) and s.pareto_plot() is not None


class TestCompareCli:
    def _bundle(self, root: Any, name: str, scale: float, seed: int) -> str:
        rng = np.random.default_rng(seed)
        n = 1200
        b = ml.RunBundle.create(root, name)
        b.append_requests(pd.DataFrame({
            "intended_at": pd.Timestamp("2026-12-06", tz="UTC") + pd.to_timedelta(np.arange(n) / 20, unit="s"),
            "error": "", "ttft_s": 0.1 * scale * rng.lognormal(0, 0.2, n), "tpot_s": 0.01,
            "latency_s": 0.5, "output_tokens": 20,
        }))  # fmt: skip
        b.finalize()
        return str(b.path)

    def test_compare_two_bundles(self, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 0; a clearly slower run is 'significant' with TTFT 'worse'; the HTML file is written."""
        from mlops_lb.cli import main

        a = self._bundle(tmp_path, "a", 1.0, 1)
        b = self._bundle(tmp_path, "b", 2.0, 2)
        html = tmp_path / "c.html"
        assert main(["compare", a, b, "--slo", "ttft_s=1.0", "--html", str(html)]) == 0
        out = capsys.readouterr().out
        assert "significant difference" in out and "worse" in out and html.exists()

    def test_bad_input_exit_2(self, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """A folder that is not a bundle, or a malformed --slo: one error line, exit 2."""
        from mlops_lb.cli import main

        a = self._bundle(tmp_path, "a", 1.0, 1)
        assert main(["compare", a, str(tmp_path / "missing")]) == 2
        assert main(["compare", a, a, "--slo", "ttft_s"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all(line.startswith("mlops-lb: error:") for line in err)


@pytest.mark.fleet
@pytest.mark.slow
def test_search_on_real_emulator_targets() -> None:
    """Real HAProxy + one LLM-emulator target: 4 and 8 rps pass a loose SLO; the search says capacity >= 8."""
    spec = ml.FleetSpec.from_dict({
        "name": "econ-search",
        "capacity": {"min": 1, "desired": 1, "max": 1},
        "health_check": {"path": "/health", "interval_s": 5, "timeout_s": 2, "healthy_threshold": 2,
                         "unhealthy_threshold": 2, "grace_period_s": 60},
        "server": {"kind": "llm-emulator", "llm": {"max_num_seqs": 8, "decode_ms_per_token": 5, "seed": 1}},
        "local": {"period_s": 1.0},
    })  # fmt: skip
    with ml.open_fleet(spec) as fleet:
        fleet.launch(on_output=None)
        r = ml.capacity_search(fleet, slo={"ttft_s": 2.0}, start_rps=4, max_rps=8, duration_s=5, idle_s=1,
                               price_as="g6.xlarge")  # fmt: skip
    assert [t.verdict for t in r.trials] == ["pass", "pass"], r
    assert r.capacity_rps == 8 and "at least" in r.stop_reason
    assert math.isfinite(r.trials_frame()["usd_per_million_good_tokens"].iloc[-1])


class TestSweepCli:
    def test_bad_variants_exit_2_before_launch(
        self, tmp_path: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing variants file, or a local variant with a GPU type: one error line, exit 2, nothing launched."""
        from mlops_lb.cli import main

        spec = tmp_path / "fleet.yaml"
        spec.write_text(_spec().to_yaml())
        base = ["sweep", str(spec), "--rps", "4", "--slo", "ttft_s=0.5", "--price-as", "g6.xlarge"]
        assert main([*base, "--variants", str(tmp_path / "none.yaml")]) == 2
        v = tmp_path / "v.yaml"
        v.write_text("- {name: a, replicas: 1}\n- {name: gpu, instance_type: g5.xlarge}\n")
        assert main([*base, "--variants", str(v)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and "variants['gpu'].instance_type" in err[1]
