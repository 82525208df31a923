"""Loading models: the cached demo model, users' joblib/skops files, sample rows and demo payloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlops_lb.cli import build_parser
from mlops_lb.errors import SpecError
from mlops_lb.serving import ModelHandle, demo_payloads, load_model, worker_command
from mlops_lb.serving.model import cache_dir, check_model


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("MLOPS_LB_CACHE_DIR", str(path))
    return path


def cache_file(root):
    return root / f"demo-breast-cancer-logreg-sklearn-{sklearn.__version__}.joblib"


class TestDemoModel:
    def test_shape_and_names(self):
        """The demo model takes the 30 breast-cancer features and predicts 0 or 1."""
        h = load_model("demo")
        assert isinstance(h, ModelHandle)
        assert (h.name, h.n_features, h.source) == ("demo-breast-cancer-logreg", 30, "demo")
        assert h.feature_names[0] == "mean radius" and len(h.feature_names) == 30
        assert set(h.predict(h.sample_rows(50))) == {0, 1}

    def test_fast_path_agrees_with_the_pipeline(self):
        """The folded affine predict equals scikit-learn's Pipeline.predict on the whole data set and on noise."""
        h = load_model("demo")
        x = load_breast_cancer().data
        noise = np.random.default_rng(0).normal(x.mean(0), x.std(0) * 3, size=(2000, 30))
        for data in (x, noise):
            assert h.predict(data) == h.estimator.predict(data).tolist()

    def test_sample_rows_are_reproducible_data_rows(self):
        """Sample rows come from the data set, the same for the same seed."""
        h = load_model("demo")
        rows = h.sample_rows(5, seed=3)
        assert rows == h.sample_rows(5, seed=3) and rows != h.sample_rows(5, seed=4)
        data = load_breast_cancer().data.tolist()
        assert all(r in data for r in rows)
        assert h.sample_rows(0) == []

    def test_trained_once_then_read_from_the_cache(self, empty_cache):
        """The first load writes a cache file keyed by the scikit-learn version; the next load reads it."""
        assert cache_dir() == empty_cache
        load_model("demo")
        path = cache_file(empty_cache)
        assert path.is_file()
        stamp = path.stat().st_mtime_ns
        load_model("demo")
        assert path.stat().st_mtime_ns == stamp
        assert sorted(p.name for p in empty_cache.iterdir()) == [path.name, path.with_suffix(".npz").name]

    def test_damaged_cache_is_replaced(self, empty_cache):
        """An unreadable cache file is retrained and overwritten, not fatal."""
        empty_cache.mkdir()
        cache_file(empty_cache).write_bytes(b"not a joblib file")
        h = load_model("demo")
        assert h.predict(h.sample_rows(1))[0] in (0, 1)
        assert joblib.load(cache_file(empty_cache)) is not None

    def test_concurrent_first_starts_share_one_good_cache(self, empty_cache):
        """Three processes training at once on an empty cache all succeed and leave one whole file."""
        code = "from mlops_lb.serving import load_model; h = load_model(); print(h.predict(h.sample_rows(3)))"
        procs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outs
        assert len({o[0] for o in outs}) == 1
        names = sorted(p.name for p in empty_cache.iterdir())  # no temp files left
        assert names == [cache_file(empty_cache).name, cache_file(empty_cache).with_suffix(".npz").name]
        assert joblib.load(cache_file(empty_cache)).predict(load_breast_cancer().data[:2]) is not None

    def test_a_cached_start_serves_without_importing_scikit_learn(self, empty_cache):
        """Once cached, loading the demo imports no scikit-learn (seconds of CPU per target start) and predicts the
        same as the pipeline, which still loads on ``handle.estimator`` use."""
        load_model("demo")  # trains and writes the joblib file and its folded .npz
        code = (
            "import json, sys; from mlops_lb.serving import load_model; h = load_model('demo', for_serving=True);"
            "x = h.sample_rows(400, seed=1);"
            "print(json.dumps([int('sklearn' in sys.modules), h.n_features, h.feature_names[0], x, h.predict(x)]))"
        )
        env = {**os.environ, "MLOPS_LB_CACHE_DIR": str(empty_cache)}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        imported, n, first_name, rows, predicted = json.loads(out.stdout)
        assert (imported, n, first_name) == (0, 30, "mean radius")
        assert predicted == load_model("demo").estimator.predict(rows).tolist() and len(set(predicted)) == 2
        lazy = load_model(
            "demo", for_serving=True
        )  # here scikit-learn is loaded: the stand-in reaches the pipeline
        assert type(lazy.estimator).__name__ == "_CachedPipeline"
        assert lazy.estimator.predict(rows).tolist() == predicted

    @pytest.mark.parametrize("damage", ["garbage", "wrong shape", "no joblib beside it"])
    def test_a_damaged_folded_cache_is_rebuilt_from_the_pipeline(self, empty_cache, damage):
        """A .npz that is unreadable, of another shape, or without its joblib pipeline is not served from."""
        load_model("demo")
        npz = cache_file(empty_cache).with_suffix(".npz")
        if damage == "garbage":
            npz.write_bytes(b"not an npz")
        elif damage == "wrong shape":
            np.savez(npz, w=np.ones(3), b=np.float64(0), classes=np.array([0, 1]), data=np.ones((2, 30)),
                     feature_names=np.array(["a"] * 30))  # fmt: skip
        else:
            cache_file(empty_cache).unlink()
        h = load_model("demo", for_serving=True)
        x = load_breast_cancer().data
        assert h.predict(x) == h.estimator.predict(x).tolist() and h.n_features == 30
        assert cache_file(empty_cache).is_file()
        with np.load(npz, allow_pickle=False) as z:  # rewritten whole
            assert z["w"].shape == (30,) and z["data"].shape == x.shape

    def test_cache_location_follows_xdg(self, monkeypatch, tmp_path):
        """Without MLOPS_LB_CACHE_DIR the cache lives under $XDG_CACHE_HOME/mlops_lb, else ~/.cache/mlops_lb."""
        monkeypatch.delenv("MLOPS_LB_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert cache_dir() == tmp_path / "mlops_lb"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert cache_dir() == tmp_path / ".cache" / "mlops_lb"


def _fit_small(n_features=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, n_features))
    return x, LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


class TestUserModels:
    def test_joblib_file(self, tmp_path):
        """A .joblib estimator loads; its width comes from n_features_in_; sample rows are zeros of that width."""
        x, est = _fit_small()
        path = tmp_path / "churn.joblib"
        joblib.dump(est, path)
        h = load_model(str(path), allow_pickle=True)
        assert (h.name, h.n_features, h.source) == ("churn", 4, str(path))
        assert h.feature_names == ("x0", "x1", "x2", "x3")
        assert h.predict(x[:5]) == est.predict(x[:5]).tolist()
        assert h.sample_rows(2) == [[0.0] * 4, [0.0] * 4]

    def test_sibling_csv_gives_sample_rows(self, tmp_path):
        """A CSV with the model's stem (header optional) supplies sample rows."""
        _, est = _fit_small()
        joblib.dump(est, tmp_path / "m.pkl")
        (tmp_path / "m.csv").write_text("a,b,c,d\n1,2,3,4\n5,6,7,8\n")
        rows = load_model(str(tmp_path / "m.pkl"), allow_pickle=True).sample_rows(20)
        assert {tuple(r) for r in rows} == {(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)}

    def test_csv_of_the_wrong_width_is_ignored(self, tmp_path):
        """A sibling CSV that does not fit the model falls back to zeros instead of breaking the server."""
        _, est = _fit_small()
        joblib.dump(est, tmp_path / "m.joblib")
        (tmp_path / "m.csv").write_text("1,2,3\n")
        assert load_model(str(tmp_path / "m.joblib"), allow_pickle=True).sample_rows(1) == [[0.0] * 4]

    def test_skops_file(self, tmp_path):
        """A .skops file loads with skops.io; the types it had to trust (none here) are reported on the handle."""
        import skops.io as sio

        x, est = _fit_small(3)
        path = tmp_path / "m.skops"
        sio.dump(est, path)
        h = load_model(str(path))
        assert h.n_features == 3 and h.predict(x[:4]) == est.predict(x[:4]).tolist()
        assert list(h.trusted_types) == sio.get_untrusted_types(file=path)

    def test_regressor_predictions_are_floats(self, tmp_path):
        """A regressor works too: predictions are plain floats."""
        x = np.arange(20.0).reshape(10, 2)
        joblib.dump(LinearRegression().fit(x, x.sum(1)), tmp_path / "r.joblib")
        got = load_model(str(tmp_path / "r.joblib"), allow_pickle=True).predict([[1.0, 2.0]])
        assert got == pytest.approx([3.0]) and isinstance(got[0], float)

    @pytest.mark.parametrize(
        ("name", "content", "message"),
        [
            (
                "model.h5",
                None,
                "must be 'demo', 'demo.onnx' or a path ending in .joblib, .pkl, .skops or .onnx",
            ),
            ("missing.onnx", None, "does not exist"),
            ("missing.joblib", None, "does not exist"),
            ("dict.joblib", {"a": 1}, "must hold a fitted estimator"),
            ("unfitted.joblib", LogisticRegression(), "must hold a fitted estimator"),
        ],
    )
    def test_bad_sources_are_spec_errors(self, tmp_path, name, content, message):
        """Unknown suffixes, missing files and non-estimators raise SpecError on model.source."""
        path = tmp_path / name
        if content is not None:
            joblib.dump(content, path)
        with pytest.raises(SpecError, match=message) as err:
            load_model(str(path), allow_pickle=True)
        assert err.value.field == "model.source"


class TestOnnx:
    def test_bundled_demo_onnx_equals_the_scikit_learn_model(self):
        """demo.onnx (ONNX Runtime, float32) predicts the scikit-learn demo model's labels on every data row.

        Probabilities agree to float32 rounding: the max abs diff measured here is about 4e-7.
        """
        from sklearn.datasets import load_breast_cancer

        x = load_breast_cancer().data
        sk, ox = load_model("demo"), load_model("demo.onnx")
        assert ox.name == "demo-breast-cancer-logreg-onnx" and ox.n_features == sk.n_features == 30
        assert ox.predict(x) == sk.estimator.predict(x).tolist()
        diff = np.abs(ox.estimator.predict_proba(x) - sk.estimator.predict_proba(x)).max()
        print(f"ONNX vs scikit-learn: max abs diff of probabilities {diff:.2e} on {len(x)} rows")
        assert diff < 1e-5
        assert ox.sample_rows(2, seed=1) == sk.sample_rows(2, seed=1)

    def test_exported_file_matches_the_shipped_one(self, tmp_path):
        """export_demo_onnx rebuilds a graph that predicts like the shipped file (the converter is reproducible)."""
        pytest.importorskip("skl2onnx")
        from mlops_lb.serving.model import export_demo_onnx

        rebuilt = load_model(str(export_demo_onnx(tmp_path / "demo.onnx")))
        rows = np.asarray(load_model("demo").sample_rows(50, seed=3))
        assert rebuilt.predict(rows) == load_model("demo.onnx").predict(rows)

    def test_user_onnx_regressor_and_sibling_csv(self, tmp_path):
        """A user's .onnx: width from the input shape, a column output flattened to floats, rows from its CSV."""
        skl2onnx = pytest.importorskip("skl2onnx")
        x = np.arange(20.0).reshape(10, 2)
        est = LinearRegression().fit(x, x.sum(1))
        path = tmp_path / "r.onnx"
        path.write_bytes(skl2onnx.to_onnx(est, x[:1].astype(np.float32)).SerializeToString())
        (tmp_path / "r.csv").write_text("a,b\n1,2\n")
        h = load_model(str(path))
        assert (h.name, h.n_features) == ("r", 2)
        got = h.predict([[1.0, 2.0], [3.0, 4.0]])
        assert got == pytest.approx([3.0, 7.0], abs=1e-4) and isinstance(got[0], float)
        assert h.sample_rows(1) == [[1.0, 2.0]]

    def test_broken_onnx_is_refused_before_any_process(self, tmp_path):
        """check_model loads an .onnx with ONNX Runtime: garbage is a SpecError on model.source."""
        path = tmp_path / "broken.onnx"
        path.write_bytes(b"this is not a protobuf")
        with pytest.raises(SpecError, match="is not a model ONNX Runtime can load") as err:
            check_model(str(path))
        assert err.value.field == "model.source"
        check_model("demo")
        check_model("demo.onnx")
        with pytest.raises(SpecError, match="does not exist"):
            check_model(str(tmp_path / "none.skops"))

    def test_local_fleet_refuses_a_broken_onnx_before_starting(self, tmp_path):
        """A local fleet whose model is an .onnx that does not load is a SpecError from the check, no process."""
        from mlops_lb.local.fleet import check_runs_locally
        from mlops_lb.spec import FleetSpec, ModelSpec

        path = tmp_path / "broken.onnx"
        path.write_bytes(b"\x00garbage")
        with pytest.raises(SpecError, match="is not a model ONNX Runtime can load"):
            check_runs_locally(FleetSpec(name="onnx", model=ModelSpec(source=str(path))))
        check_runs_locally(FleetSpec(name="onnx", model=ModelSpec(source="demo.onnx")))

    def test_server_serves_demo_onnx(self, server_factory):
        """`mlops-lb serve --model demo.onnx` works out of the box and predicts like the scikit-learn model."""
        s = server_factory(model="demo.onnx")
        rows = load_model("demo").sample_rows(8, seed=2)
        r = s.predict(rows)
        assert r.status == 200, r.body
        assert r.json()["model"] == "demo-breast-cancer-logreg-onnx"
        assert r.json()["predictions"] == load_model("demo").estimator.predict(rows).tolist()


class TestDemoPayloads:
    def test_bodies_are_predict_requests(self):
        """Each payload is a JSON body of rows_per_request rows of 30 numbers."""
        bodies = demo_payloads(10, rows_per_request=3, seed=1)
        assert len(bodies) == 10 and all(isinstance(b, bytes) for b in bodies)
        for b in bodies:
            rows = json.loads(b)["rows"]
            assert len(rows) == 3 and all(len(r) == 30 for r in rows)

    def test_reproducible_by_seed(self):
        """The same seed gives the same payloads, another seed others."""
        assert demo_payloads(5, seed=2) == demo_payloads(5, seed=2) != demo_payloads(5, seed=3)

    def test_bad_arguments(self):
        """Negative counts and zero rows per request are refused."""
        with pytest.raises(ValueError):
            demo_payloads(-1)
        with pytest.raises(ValueError):
            demo_payloads(1, rows_per_request=0)


class TestWorkerCommand:
    def test_argv_round_trips_through_the_cli(self):
        """worker_command's argv is `python -m mlops_lb serve ...` and parses back to the same options."""
        argv = worker_command(
            port=8123, target_id="w-1", model="m.skops", slots=3, min_service_ms=12.5, host="0.0.0.0"
        )
        assert argv[:4] == [sys.executable, "-m", "mlops_lb", "serve"]
        args = build_parser().parse_args(argv[3:])
        assert (args.port, args.target_id, args.model, args.slots, args.min_service_ms, args.host) == (
            8123,
            "w-1",
            "m.skops",
            3,
            12.5,
            "0.0.0.0",
        )

    def test_serve_rejects_bad_options_before_starting(self):
        """Bad ports, slots or service times are SpecErrors, raised before uvicorn starts."""
        from mlops_lb.serving import serve

        for kwargs, field in (
            ({"port": 70000}, "port"),
            ({"port": 1, "slots": -1}, "slots"),
            ({"port": 1, "min_service_ms": float("nan")}, "min_service_ms"),
        ):
            with pytest.raises(SpecError) as err:
                serve(**kwargs)
            assert err.value.field == field


def test_import_is_light():
    """Importing mlops_lb.serving loads neither FastAPI, uvicorn nor scikit-learn."""
    code = "import sys, mlops_lb.serving; print(sorted(m for m in ('fastapi', 'uvicorn', 'sklearn') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.stdout.strip() == "[]"
