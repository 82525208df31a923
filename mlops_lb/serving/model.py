"""Models the server can load: the bundled demo model, or a user's own joblib/pickle/skops/ONNX file.

The demo model is a scikit-learn pipeline (StandardScaler + LogisticRegression) trained on the breast-cancer data set
that ships inside scikit-learn (no download). It is trained on first use and cached with joblib under
``$MLOPS_LB_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlops_lb``, else ``~/.cache/mlops_lb``, in a file keyed by the
scikit-learn version. Several workers may start at once on an empty cache: each writes a temporary file and renames
it into place (``os.replace`` is atomic), so a reader never sees a half-written model. Beside it goes a ``.npz``
with what serving needs (the pipeline folded into ``x @ w + b``, the data rows, the feature names; numbers and
strings only, read with ``allow_pickle=False``): a server starts from it without importing scikit-learn (about 3 s of
CPU per target start, most of a worker's start-up: ``load_model(..., for_serving=True)``).

A user's model file:

* ``.joblib`` / ``.pkl``: ``joblib.load``. **Loading a pickle runs any code the file holds**
  (https://docs.python.org/3/library/pickle.html: "It is possible to construct malicious pickle data which will
  execute arbitrary code during unpickling"), so a pickle is loaded only with an explicit opt-in:
  ``allow_pickle=True`` (spec ``model.allow_pickle: true``, ``mlops-lb serve --allow-pickle``). Without it the
  error names the opt-in and the safe formats (``.skops``, ``.onnx``). The package's own cached demo model is a
  joblib file this package wrote itself, and needs no opt-in.
* ``.skops``: ``skops.io.load(file, trusted=[...])``. skops builds only the types it trusts by default plus the ones
  passed as ``trusted`` (https://skops.readthedocs.io/en/stable/persistence.html: "will only construct those
  objects if they are trusted, either by default or by the user"; ``get_untrusted_types(file=...)`` lists the
  others without building anything). We add exactly the types this toolkit's models need, by rule
  (:func:`default_trusted`): *classes* defined in scikit-learn or ``scipy.stats`` (``sklearn.tree._tree.Tree``,
  ``sklearn.neighbors._kd_tree.KDTree``, a search CV's ``loguniform``...; skops itself already trusts numpy arrays,
  dtypes, ufuncs and scipy sparse matrices), never functions (a function reference is how a file names
  ``os.system`` or ``numpy.testing...runstring``), never test, build or ``__main__`` modules. Anything else must be
  named by the user (``trusted_types=[...]``, spec ``model.trusted_types``, ``serve --trust-type NAME``), and a file
  naming an untrusted type is refused before anything in it is built: the error lists the types and the fix.
* ``.onnx``: served with ONNX Runtime on CPU (``CPUExecutionProvider``): the graph's first input takes the rows
  (cast to its float type, its second dimension is ``n_features``), its first output is the prediction (a
  column vector is flattened). No pickle is involved, so nothing runs on load.
* ``demo.onnx`` (when no such file exists where you are): the demo model converted with skl2onnx and shipped in
  the package (``mlops_lb/data/demo-breast-cancer-logreg.onnx``, 1 kB; :func:`export_demo_onnx` rebuilds it). It is
  shipped, not generated like the demo pickle, so the server needs ONNX Runtime only, not the converter and its
  dependencies; a test checks it against the scikit-learn model.

:func:`check_model` checks a source before any process starts: a name or suffix it cannot serve, a missing file,
or an ``.onnx`` file ONNX Runtime cannot load is a :class:`~mlops_lb.errors.SpecError`.

``n_features`` comes from the estimator's ``n_features_in_``. Sample rows (the load generator's default payloads)
come from a sibling CSV with the same stem (``churn.skops`` -> ``churn.csv``: numeric rows, an optional header row
of feature names, exactly ``n_features`` columns); without one they are rows of zeros of the right width.

Example::

    handle = load_model("demo")
    handle.predict(handle.sample_rows(2))      # [0, 1]
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError

__all__ = [
    "ModelHandle",
    "cache_dir",
    "check_model",
    "default_trusted",
    "demo_payloads",
    "export_demo_onnx",
    "load_model",
]

log = logging.getLogger(__name__)

DEMO = "demo"
DEMO_ONNX = "demo.onnx"
_SUFFIXES = (".joblib", ".pkl", ".skops", ".onnx")
_PICKLES = (".joblib", ".pkl")
# Where the classes live that a .skops file may name without the user's say-so. scikit-learn: its estimators'
# constructors only store parameters (its developer rule), and its Cython types (Tree, KDTree...) take arrays.
# scipy.stats: the distributions a search CV keeps (loguniform...). Not the rest of numpy and scipy: skops already
# trusts what models hold from them (arrays, dtypes, ufuncs, sparse matrices), and their other classes include
# constructors that write files (numpy.memmap(path, mode="w+"), scipy.io.FortranFile(path, "w")).
_TRUSTED_PREFIXES = ("sklearn.", "scipy.stats.")
# Modules inside them that are not model code: tests and their helpers (numpy.testing runs strings), build tools
# (numpy.distutils, f2py run compilers and shells), and any dunder module (importing ``__main__`` runs a program).
_NOT_MODEL_CODE = re.compile(
    r"(?:^|\.)(?:tests?|testing|_testing|_testutils|conftest|distutils|f2py|_build_utils|__\w*)(?:\.|$)"
)
_BUNDLED_ONNX = Path(__file__).resolve().parent.parent / "data" / "demo-breast-cancer-logreg.onnx"


def cache_dir() -> Path:
    """Where trained demo models are cached (not created here: only when a model is written)."""
    if os.environ.get("MLOPS_LB_CACHE_DIR"):
        return Path(os.environ["MLOPS_LB_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "mlops_lb"
    return Path.home() / ".cache" / "mlops_lb"


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model plus what the server and the load generator need to know about it.

    Example::

        h = load_model("demo")
        h.name, h.n_features        # ('demo-breast-cancer-logreg', 30)
        h.predict([[0.0] * 30])     # [1]
    """

    name: str
    n_features: int
    feature_names: tuple[str, ...]
    estimator: Any = field(repr=False)
    source: str = DEMO
    trusted_types: tuple[str, ...] = ()
    _data: np.ndarray | None = field(default=None, repr=False)

    _fast: Any = field(default=None, repr=False)

    def predict(self, rows: Any) -> list[Any]:
        """Predictions for ``rows`` (a list of rows or a 2-D array) as JSON-able Python values."""
        x = rows if isinstance(rows, np.ndarray) else np.asarray(rows, dtype=np.float64)
        predict = self._fast or self.estimator.predict
        return np.asarray(predict(x)).tolist()  # type: ignore[no-any-return]

    def sample_rows(self, n: int, seed: int = 0) -> list[list[float]]:
        """``n`` rows drawn (with replacement, reproducibly) from the model's data, or zeros when it has none."""
        if n < 0:
            raise ValueError(f"n must be >= 0 (got {n})")
        if self._data is None or len(self._data) == 0:
            return [[0.0] * self.n_features for _ in range(n)]
        idx = np.random.default_rng(seed).integers(0, len(self._data), size=n)
        return self._data[idx].tolist()  # type: ignore[no-any-return]


def _resolve(source: str) -> Path:
    """The file behind a model source (``demo.onnx`` falls back to the bundled file); SpecError if unusable."""
    if not isinstance(source, str) or not source.strip():
        raise SpecError("model.source", f"must be 'demo' or a model file path (got {source!r})")
    path = Path(source).expanduser()
    if path.suffix not in _SUFFIXES:
        raise SpecError(
            "model.source",
            f"must be 'demo', 'demo.onnx' or a path ending in .joblib, .pkl, .skops or .onnx (got {source!r})",
        )
    if source == DEMO_ONNX and not path.is_file():
        return _BUNDLED_ONNX
    if not path.is_file():
        raise SpecError("model.source", f"file {str(path)!r} does not exist")
    return path


def default_trusted(name: str) -> bool:
    """True when a type a ``.skops`` file names is trusted without the user naming it (see the module docstring).

    Only a *class* defined in scikit-learn or ``scipy.stats``, outside test, build and dunder modules, qualifies;
    the module is imported to tell a class from a function, which runs only that library's own code.

    Example::

        default_trusted("sklearn.tree._tree.Tree"), default_trusted("os.system")       # (True, False)
        default_trusted("numpy.testing._private.utils.runstring")                       # False
    """
    prefix = next((p for p in _TRUSTED_PREFIXES if isinstance(name, str) and name.startswith(p)), None)
    if prefix is None:
        return False
    module, _, attr = name.rpartition(".")
    if _NOT_MODEL_CODE.search(module) or not attr.isidentifier():
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except Exception:  # not importable here: not a type this toolkit knows
        return False
    # Defined there too, not merely re-exported (a module may import numpy.memmap under another name).
    return isinstance(obj, type) and f"{getattr(obj, '__module__', '')}.".startswith(prefix)


def _untrusted(path: Path, trusted_types: Sequence[str]) -> tuple[list[str], list[str]]:
    """(types to pass to skops as trusted, types nobody trusted) for a .skops file; builds nothing."""
    import skops.io as sio

    try:
        named = list(sio.get_untrusted_types(file=path))
    except Exception as exc:  # not a zip, no schema, ...: skops raises its own types
        raise SpecError(
            "model.source", f"{str(path)!r} is not a skops file ({type(exc).__name__}: {exc})"
        ) from exc
    user = set(trusted_types)
    ok = [t for t in named if t in user or default_trusted(t)]
    return ok, [t for t in named if t not in ok]


def _check_trust(path: Path, trusted_types: Sequence[str], allow_pickle: bool) -> list[str]:
    """Refuse a pickle without the opt-in and a .skops file naming untrusted types; the skops types to trust."""
    if path.suffix in _PICKLES and not allow_pickle:
        raise SpecError(
            "model.allow_pickle",
            f"must be true to load {str(path)!r}: a {path.suffix} file is a pickle, and loading a pickle runs any "
            "code it holds. Set model.allow_pickle: true (mlops-lb serve --allow-pickle) only for a file you made "
            "or trust, or save the model with skops (.skops) or as ONNX (.onnx), which run nothing on load",
        )
    if path.suffix != ".skops":
        return []
    ok, refused = _untrusted(path, trusted_types)
    if refused:
        raise SpecError(
            "model.trusted_types",
            f"{str(path)!r} names types that are not trusted: {', '.join(refused)}. Nothing was loaded. If you "
            "made this file and these types are yours, name them: model.trusted_types: "
            f"[{', '.join(refused)}] (mlops-lb serve --trust-type NAME); a function such as os.system in a model "
            "file is a sign it was crafted to run code",
        )
    return ok


def _trust_args(trusted_types: Sequence[str] | None, allow_pickle: object) -> tuple[str, ...]:
    if isinstance(trusted_types, str) or not all(isinstance(t, str) for t in trusted_types or ()):
        raise SpecError(
            "model.trusted_types",
            f"must be a list of type names such as ['mypkg.MyModel'] (got {trusted_types!r})",
        )
    if not isinstance(allow_pickle, bool):
        raise SpecError("model.allow_pickle", f"must be true or false (got {allow_pickle!r})")
    return tuple(trusted_types or ())


def check_model(source: str, *, trusted_types: Sequence[str] | None = (), allow_pickle: bool = False) -> None:
    """Fail fast, before any server starts, on a model source the server could not or would not serve.

    Checks the name or suffix and that the file exists; an ``.onnx`` file is also loaded with ONNX Runtime (cheap,
    and nothing in it runs), so a damaged or unsupported graph is caught here. A pickle without ``allow_pickle``
    and a ``.skops`` file naming types nobody trusted are refused (skops lists them without building anything).
    Pickles are never loaded here: that would run their code in the caller's process.

    Example::

        check_model("models/churn.onnx")      # SpecError: model.source 'models/churn.onnx' is not a model ONNX ...
        check_model("models/rf.pkl")          # SpecError: model.allow_pickle must be true to load ...
    """
    trusted = _trust_args(trusted_types, allow_pickle)
    if source == DEMO:
        return
    path = _resolve(source)
    _check_trust(path, trusted, allow_pickle)
    if path.suffix == ".onnx":
        _OnnxModel(path)


def load_model(
    source: str = DEMO,
    *,
    trusted_types: Sequence[str] | None = (),
    allow_pickle: bool = False,
    for_serving: bool = False,
) -> ModelHandle:
    """Load ``"demo"`` (trained once, then cached), ``"demo.onnx"``, or a ``.joblib``/``.pkl``/``.skops``/``.onnx``
    model file.

    A pickle (``.joblib``/``.pkl``) needs ``allow_pickle=True`` (it runs code on load); a ``.skops`` file loads
    only when every type it names is trusted (:func:`default_trusted`, or named in ``trusted_types``).

    ``for_serving=True`` (the model server, sample rows): once cached, ``"demo"`` loads from its folded ``.npz``
    without importing scikit-learn, and ``estimator`` is a stand-in that loads the pipeline on first attribute use;
    by default ``estimator`` is the scikit-learn pipeline itself.

    Example::

        load_model("models/churn.skops", trusted_types=["mypkg.ChurnModel"])
        load_model("models/rf.joblib", allow_pickle=True)      # only for a file you made or trust
    """
    trusted_arg = _trust_args(trusted_types, allow_pickle)
    if source == DEMO:
        return _load_demo(lazy=for_serving)
    path = _resolve(source)
    skops_trusted = _check_trust(path, trusted_arg, allow_pickle)
    if path.suffix == ".onnx":
        return _load_onnx(path, demo=path == _BUNDLED_ONNX)
    trusted: tuple[str, ...] = ()
    if path.suffix == ".skops":
        import skops.io as sio

        trusted = tuple(skops_trusted)
        if trusted:
            log.info("trusting these types from %s (scikit-learn/scipy.stats classes, or named by you): %s",
                     path, ", ".join(trusted))  # fmt: skip
        estimator = sio.load(path, trusted=list(trusted))
    else:
        import joblib

        log.warning("loading the pickle %s (allow_pickle): it can run any code it holds", path)
        estimator = joblib.load(path)
    n = getattr(estimator, "n_features_in_", None)
    if not isinstance(n, (int, np.integer)) or not hasattr(estimator, "predict"):
        raise SpecError(
            "model.source",
            f"{str(path)!r} must hold a fitted estimator with predict() and n_features_in_ "
            f"(got {type(estimator).__name__})",
        )
    names = getattr(estimator, "feature_names_in_", None)
    feature_names = (
        tuple(str(s) for s in names) if names is not None else tuple(f"x{i}" for i in range(int(n)))
    )
    return ModelHandle(
        name=path.stem,
        n_features=int(n),
        feature_names=feature_names,
        estimator=estimator,
        source=str(path),
        trusted_types=trusted,
        _data=_sibling_csv(path, int(n)),
    )


def demo_payloads(
    n: int = 256,
    *,
    rows_per_request: int = 1,
    seed: int = 0,
    model: str = DEMO,
    trusted_types: Sequence[str] = (),
    allow_pickle: bool = False,
) -> list[bytes]:
    """``n`` JSON bodies for ``POST /predict``, each with ``rows_per_request`` rows sampled from the model's data.

    Example::

        demo_payloads(2)[0]       # b'{"rows":[[13.08,15.71,85.63,...]]}'
    """
    if n < 0 or rows_per_request < 1:
        raise ValueError(
            f"n must be >= 0 and rows_per_request >= 1 (got n={n}, rows_per_request={rows_per_request})"
        )
    handle = load_model(model, trusted_types=trusted_types, allow_pickle=allow_pickle, for_serving=True)
    rows = handle.sample_rows(n * rows_per_request, seed=seed)
    return [
        json.dumps(
            {"rows": rows[i * rows_per_request : (i + 1) * rows_per_request]}, separators=(",", ":")
        ).encode()
        for i in range(n)
    ]


# --------------------------------------------------------------------------- ONNX
class _OnnxModel:
    """An ONNX graph behind an estimator-like ``predict`` (CPU only; one intra-op thread per server process)."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise SpecError(
                "model.source", "needs onnxruntime for .onnx models: pip install onnxruntime"
            ) from exc
        opts = ort.SessionOptions()
        # Each worker is one process of a fleet on a few cores: one thread each, like the scikit-learn path.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise SpecError(
                "model.source",
                f"{str(path)!r} is not a model ONNX Runtime can load ({type(exc).__name__}: {exc})",
            ) from exc
        inputs = self.session.get_inputs()
        shape = list(inputs[0].shape) if inputs else []
        width = shape[1] if len(shape) == 2 else None
        if len(inputs) != 1 or not isinstance(width, int) or width < 1:
            raise SpecError(
                "model.source",
                f"{str(path)!r} must take one input of shape [batch, n_features] with n_features fixed "
                f"(got inputs {[(i.name, i.shape) for i in inputs]})",
            )
        kinds = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        if inputs[0].type not in kinds:
            raise SpecError(
                "model.source", f"{str(path)!r} input must be float or double (got {inputs[0].type})"
            )
        self.input_name = inputs[0].name
        self.dtype = kinds[inputs[0].type]
        self.output_name = self.session.get_outputs()[0].name
        self.n_features_in_ = width

    def predict(self, x: Any) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: np.asarray(x, dtype=self.dtype)})[0]
        out = np.asarray(out)
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, x: Any) -> np.ndarray:
        """The second output (skl2onnx classifiers converted with ``zipmap=False``: class probabilities)."""
        outs = self.session.get_outputs()
        if len(outs) < 2:
            raise AttributeError("this ONNX model has no probability output")
        return np.asarray(
            self.session.run([outs[1].name], {self.input_name: np.asarray(x, dtype=self.dtype)})[0]
        )


def _load_onnx(path: Path, *, demo: bool) -> ModelHandle:
    model = _OnnxModel(path)
    n = model.n_features_in_
    if demo:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        return ModelHandle(
            name="demo-breast-cancer-logreg-onnx",
            n_features=n,
            feature_names=tuple(str(s) for s in data.feature_names),
            estimator=model,
            source=str(path),
            _data=np.asarray(data.data, dtype=np.float64),
        )
    return ModelHandle(
        name=path.stem,
        n_features=n,
        feature_names=tuple(f"x{i}" for i in range(n)),
        estimator=model,
        source=str(path),
        _data=_sibling_csv(path, n),
    )


def export_demo_onnx(path: str | os.PathLike[str] = _BUNDLED_ONNX) -> Path:
    """Convert the demo model with skl2onnx (float32 input, probabilities as a tensor) and write it to ``path``.

    What built ``mlops_lb/data/demo-breast-cancer-logreg.onnx``; needs ``skl2onnx`` (the dev extra).

    Example::

        export_demo_onnx("/tmp/demo.onnx")
    """
    from skl2onnx import to_onnx

    handle = _load_demo()
    clf = handle.estimator.steps[-1][1]
    onx = to_onnx(
        handle.estimator,
        np.zeros((1, handle.n_features), dtype=np.float32),
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    out = Path(path)
    out.write_bytes(onx.SerializeToString())
    return out


# --------------------------------------------------------------------------- the demo model
def _load_demo(*, lazy: bool = False) -> ModelHandle:
    from importlib.metadata import version

    # The distribution's version is sklearn.__version__ without importing scikit-learn (seconds of CPU).
    path = cache_dir() / f"demo-breast-cancer-logreg-sklearn-{version('scikit-learn')}.joblib"
    folded = _read_folded(path) if lazy else None
    if folded is not None:
        fast, data, names = folded
        return ModelHandle(
            name="demo-breast-cancer-logreg",
            n_features=int(data.shape[1]),
            feature_names=names,
            estimator=_CachedPipeline(path),
            source=DEMO,
            _data=data,
            _fast=fast,
        )
    from sklearn.datasets import load_breast_cancer

    data_set = load_breast_cancer()
    estimator = _read_cache(path)
    if estimator is None:
        estimator = _train_demo(data_set.data, data_set.target)
        _write_cache(path, estimator)
    handle = ModelHandle(
        name="demo-breast-cancer-logreg",
        n_features=int(data_set.data.shape[1]),
        feature_names=tuple(str(s) for s in data_set.feature_names),
        estimator=estimator,
        source=DEMO,
        _data=np.asarray(data_set.data, dtype=np.float64),
        _fast=_LinearFastPath.of(estimator),
    )
    if not path.with_suffix(".npz").is_file() or lazy:  # lazy: the one read was refused, so write it whole
        _write_folded(path, handle)
    return handle


class _CachedPipeline:
    """The demo's scikit-learn pipeline, loaded from its joblib cache (or retrained) on first attribute use.

    A server answers from the folded map and never touches it; ``handle.estimator.predict(x)`` still works, at the
    price of importing scikit-learn then. Example::

        load_model("demo", for_serving=True).estimator.predict([[0.0] * 30])     # loads the pipeline, array([1])
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pipeline: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_path", "_pipeline"):  # copy/pickle probing (__getstate__...)
            raise AttributeError(name)
        if self._pipeline is None:
            pipeline = _read_cache(self._path)
            if pipeline is None:
                from sklearn.datasets import load_breast_cancer

                data_set = load_breast_cancer()
                pipeline = _train_demo(data_set.data, data_set.target)
                _write_cache(self._path, pipeline)
            self._pipeline = pipeline
        return getattr(self._pipeline, name)

    def __repr__(self) -> str:
        return f"<demo pipeline, loaded on use from {self._path.name}>"


def _read_folded(path: Path) -> tuple[_LinearFastPath, np.ndarray, tuple[str, ...]] | None:
    """(fast path, data rows, feature names) from the ``.npz`` beside the joblib cache ``path``; None if absent or
    not the shape this module writes (then the caller rebuilds it from the pipeline)."""
    folded = path.with_suffix(".npz")
    if not folded.is_file() or not path.is_file():  # the pair, or neither: a lone .npz is not trusted
        return None
    try:
        with np.load(folded, allow_pickle=False) as z:
            w, b, classes = z["w"], z["b"], z["classes"]
            data, names = z["data"], z["feature_names"]
    except Exception as exc:  # damaged or foreign: rebuilt from the pipeline
        log.warning("ignoring unreadable model cache %s (%s)", folded, exc)
        return None
    n = w.shape[0] if w.ndim == 1 else -1
    if not (n > 0 and b.shape == () and classes.shape == (2,) and data.ndim == 2 and data.shape[1] == n
            and names.shape == (n,)):  # fmt: skip
        log.warning("ignoring model cache %s of unexpected shape; rebuilding it", folded)
        return None
    fast = _LinearFastPath(w.astype(np.float64), float(b), classes)
    return fast, data.astype(np.float64), tuple(str(s) for s in names)


def _write_folded(path: Path, handle: ModelHandle) -> None:
    """Write the ``.npz`` :func:`_read_folded` reads, atomically like the joblib file (best effort)."""
    fast = handle._fast
    if fast is None or handle._data is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, w=fast.w, b=np.float64(fast.b), classes=np.asarray(fast.classes), data=handle._data,
                         feature_names=np.asarray(handle.feature_names, dtype=str))  # fmt: skip
            os.replace(tmp, path.with_suffix(".npz"))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a read-only home: the next start imports scikit-learn again, nothing worse
        log.warning("could not cache the folded demo model beside %s (%s)", path, exc)


def _train_demo(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x, y)
    log.info("trained the demo model in %.2f s", time.perf_counter() - t0)
    return model


class _LinearFastPath:
    """The demo pipeline's predict folded into one affine map: ``x @ w + b > 0``.

    scikit-learn's ``Pipeline.predict`` spends about 300 µs per call on input validation and dispatch, which caps a
    worker near 3k rps on one core; the folded map takes a few µs. It is the same model:
    ``((x - mean) / scale) @ coef + intercept == x @ (coef / scale) + (intercept - (mean / scale) @ coef)``;
    a test checks it agrees with the pipeline on the whole data set.
    """

    def __init__(self, w: np.ndarray, b: float, classes: np.ndarray) -> None:
        self.w, self.b, self.classes = w, b, classes

    @classmethod
    def of(cls, pipeline: Any) -> _LinearFastPath | None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        steps = [s for _, s in getattr(pipeline, "steps", [])]
        if (
            len(steps) != 2
            or type(steps[0]) is not StandardScaler
            or type(steps[1]) is not LogisticRegression
        ):
            return None
        scaler, clf = steps
        if clf.coef_.shape[0] != 1 or len(clf.classes_) != 2:  # binary only
            return None
        mean = scaler.mean_ if scaler.with_mean else np.zeros_like(clf.coef_[0])
        scale = scaler.scale_ if scaler.with_std else np.ones_like(clf.coef_[0])
        w = clf.coef_[0] / scale
        return cls(w, float(clf.intercept_[0] - mean @ w), clf.classes_)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # huge inputs overflow to +-inf, which still classifies
            return self.classes[(x @ self.w + self.b > 0).astype(np.intp)]  # type: ignore[no-any-return]


def _read_cache(path: Path) -> Any | None:
    if not path.is_file():
        return None
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:  # a damaged or foreign file: retrain and overwrite it
        log.warning("ignoring unreadable model cache %s (%s); retraining", path, exc)
        return None


def _write_cache(path: Path, estimator: Any) -> None:
    import joblib

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                joblib.dump(estimator, fh)
            os.replace(tmp, path)  # atomic: concurrent starts each replace a whole file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("cached the demo model at %s", path)
    except OSError as exc:  # a read-only home must not stop the server: it just retrains next time
        log.warning("could not cache the demo model at %s (%s)", path, exc)


def _sibling_csv(path: Path, n_features: int) -> np.ndarray | None:
    csv_path = path.with_suffix(".csv")
    if not csv_path.is_file():
        return None
    rows: list[list[float]] = []
    with csv_path.open(newline="") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            if not rec:
                continue
            try:
                row = [float(v) for v in rec]
            except ValueError:
                if i == 0:
                    continue  # a header row
                log.warning("ignoring %s: row %d is not numeric", csv_path, i)
                return None
            if len(row) != n_features:
                log.warning(
                    "ignoring %s: row %d has %d columns, the model expects %d",
                    csv_path,
                    i,
                    len(row),
                    n_features,
                )
                return None
            rows.append(row)
    return np.asarray(rows, dtype=np.float64) if rows else None
