"""Hostile input (issue 25): model files that would run code, secrets that would leak, idle sockets that would
starve the health check, emulator fields that would crash or amplify. Each test failed before its fix.

Rules these tests encode, with their sources:

| rule | source |
|---|---|
| unpickling runs code: "It is possible to construct malicious pickle data which will execute arbitrary code" | https://docs.python.org/3/library/pickle.html |
| skops builds only types it trusts by default or that are passed as ``trusted``; ``get_untrusted_types`` lists the others without building | https://skops.readthedocs.io/en/stable/persistence.html (and ``skops.io.load``'s docstring, skops 0.16) |
| a field value must not contain CR, LF or NUL | RFC 9110 §5.5, https://www.rfc-editor.org/rfc/rfc9110#section-5.5 |
| Authorization / Proxy-Authorization carry credentials; Cookie carries session state | RFC 9110 §11.6.2, §11.7.2; RFC 6265 §4.2 |
| userinfo in an http URI is deprecated ("user:password" format), and is sent as a Basic credential | RFC 9110 §4.2.4; RFC 7617 §2 |
| POSIX env var names: letters, digits, underscore, not starting with a digit; a NUL cannot be in an env value or argv | POSIX.1-2017 XBD §8.1; execve(2) |
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mlops_lb as ml
from mlops_lb.errors import SpecError
from mlops_lb.serving.model import check_model, default_trusted, load_model


# --------------------------------------------------------------------------- model files
def _crafted_skops(path: Path, canary: Path) -> Path:
    """A real .skops file whose one node calls ``os.system("touch CANARY")`` when built.

    skops' ConstructorFromReduceNode builds ``module.class(*content)``: with ``os``/``system`` that is a call. The
    file is a real skops dump of a ZoneInfo (built with that node) with the names swapped, so skops parses it.
    """
    from zoneinfo import ZoneInfo

    import skops.io as sio

    schema = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps({"a": ZoneInfo("UTC")}))).read("schema.json"))
    node = schema["content"]["a"]
    node["__module__"], node["__class__"] = "os", "system"
    node["content"]["content"][0]["content"] = json.dumps(f"touch {canary}")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return path


class TestModelFiles:
    def test_skops_file_naming_os_system_does_not_run(self, tmp_path: Path) -> None:
        """A .skops file naming os.system is refused before anything is built: no canary file, and the error names
        the type and the fix (model.trusted_types). Before the fix load_model trusted get_untrusted_types()."""
        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        import skops.io as sio

        assert sio.get_untrusted_types(file=evil) == ["os.system"]  # the file really names it
        for call in (load_model, check_model):
            with pytest.raises(SpecError) as err:
                call(str(evil))
            assert err.value.field == "model.trusted_types"
            assert "os.system" in str(err.value) and "trusted_types" in str(err.value)
        assert not canary.exists()

    def test_the_crafted_file_is_a_real_exploit(self, tmp_path: Path) -> None:
        """The other direction: handed to skops with everything it names trusted (the old behaviour), the same
        file creates the canary, so the refusal above is what stops it."""
        import skops.io as sio

        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        sio.load(evil, trusted=sio.get_untrusted_types(file=evil))
        assert canary.exists()

    def test_local_fleet_refuses_it_before_any_process(self, tmp_path: Path) -> None:
        """A spec serving the crafted file fails when the fleet is made, naming the type; nothing runs."""
        from mlops_lb.local import LocalFleet

        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        with pytest.raises(SpecError, match=r"os\.system"):
            LocalFleet(ml.FleetSpec(name="evil", model={"source": str(evil)}))
        assert not canary.exists()

    def test_classes_of_scikit_learn_numpy_scipy_load_without_naming_them(self, tmp_path: Path) -> None:
        """Models whose skops files name sklearn classes skops does not trust by default (a forest's Tree, a KD
        tree) load as they are; the types trusted are reported on the handle."""
        import skops.io as sio
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.neighbors import KNeighborsClassifier

        x = np.random.default_rng(0).normal(size=(40, 3))
        y = (x[:, 0] > 0).astype(int)
        for est in (RandomForestClassifier(n_estimators=2, random_state=0), KNeighborsClassifier(3)):
            path = tmp_path / f"{type(est).__name__}.skops"
            sio.dump(est.fit(x, y), path)
            assert sio.get_untrusted_types(file=path)  # skops alone would refuse it
            h = load_model(str(path))
            assert h.predict(x[:3]) == est.predict(x[:3]).tolist()
            assert set(h.trusted_types) == set(sio.get_untrusted_types(file=path))

    @pytest.mark.parametrize(
        ("name", "trusted"),
        [
            ("sklearn.tree._tree.Tree", True),
            ("sklearn.neighbors._kd_tree.KDTree", True),
            ("scipy.sparse.csr_matrix", True),
            ("os.system", False),
            ("builtins.eval", False),
            ("numpy.testing._private.utils.runstring", False),  # a function that exec()s a string
            ("sklearn.utils._testing.assert_run_python_script_without_output", False),
            ("numpy.f2py.__main__.main", False),  # importing a __main__ module runs it
            ("numpy.load", False),  # a function, not a class
            ("sklearn.NoSuchThing", False),
            ("sklearnx.Evil", False),
        ],
    )
    def test_default_trust_rule(self, name: str, trusted: bool) -> None:
        """Classes of sklearn/numpy/scipy outside test/build/dunder modules are trusted; functions never."""
        assert default_trusted(name) is trusted

    def test_user_named_types_are_trusted(self, tmp_path: Path) -> None:
        """A type the user names (model.trusted_types / --trust-type) is passed on to skops."""
        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        check_model(str(evil), trusted_types=["os.system"])  # the user said so: no refusal
        assert not canary.exists()  # check_model builds nothing

    def test_pickle_needs_the_opt_in(self, tmp_path: Path) -> None:
        """A .joblib/.pkl is refused without allow_pickle (spec, load_model, check_model), naming the opt-in and
        the safe formats; with it, it loads. Before the fix it was unpickled silently."""
        import joblib
        from sklearn.linear_model import LogisticRegression

        x = np.random.default_rng(0).normal(size=(30, 2))
        path = tmp_path / "m.joblib"
        joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), path)
        for call in (
            lambda: load_model(str(path)),
            lambda: check_model(str(path)),
            lambda: ml.ModelSpec(source=str(path)),
        ):
            with pytest.raises(SpecError) as err:
                call()
            assert err.value.field == "model.allow_pickle"
            assert "runs any code" in str(err.value) and ".skops" in str(err.value)
        assert load_model(str(path), allow_pickle=True).n_features == 2
        assert ml.ModelSpec(source=str(path), allow_pickle=True).allow_pickle is True

    def test_pickle_opt_in_reaches_the_worker_and_the_instance(self, tmp_path: Path) -> None:
        """model.allow_pickle / trusted_types become serve flags locally and in the AWS user data."""
        from mlops_lb.aws._parts import server_run
        from mlops_lb.local.workers import worker_argv

        spec = ml.FleetSpec(
            name="p", model={"source": "m.pkl", "allow_pickle": True, "trusted_types": ["mypkg.M"]}
        )
        argv = worker_argv(spec, port=9001, target_id="i-1")
        assert argv[-3:] == ["--trust-type", "mypkg.M", "--allow-pickle"]
        assert server_run(spec, {}, "us-east-1").model_flags == ("--trust-type", "mypkg.M", "--allow-pickle")
        assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec

    def test_serve_help_says_pickle_runs_code(self) -> None:
        """`mlops-lb serve --help` warns that a pickle runs code."""
        from mlops_lb.cli import build_parser

        serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
        assert "RUNS ANY CODE" in " ".join(serve.format_help().split())
