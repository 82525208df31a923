"""Models the server can load: the bundled demo model, or a user's own joblib/pickle/skops/ONNX file.

The demo model is a scikit-learn pipeline (StandardScaler + LogisticRegression) trained on the breast-cancer data set
that ships inside scikit-learn (no download). It is trained on first use and cached with joblib under
``$MLOPS_LB_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlops_lb``, else ``~/.cache/mlops_lb``, in a file keyed by the
scikit-learn version. Several workers may start at once on an empty cache: each writes a temporary file and renames
it into place (``os.replace`` is atomic), so a reader never sees a half-written model.

A user's model file:

* ``.joblib`` / ``.pkl``: ``joblib.load`` (a pickle: only load files you trust).
* ``.skops``: ``skops.io.load``. The types skops does not trust by default are listed in the log and kept on
  ``ModelHandle.trusted_types``; naming the file is taken as trusting it, as for joblib.
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
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError

__all__ = ["ModelHandle", "cache_dir", "check_model", "demo_payloads", "export_demo_onnx", "load_model"]

log = logging.getLogger(__name__)

DEMO = "demo"
DEMO_ONNX = "demo.onnx"
_SUFFIXES = (".joblib", ".pkl", ".skops", ".onnx")
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


def check_model(source: str) -> None:
    """Fail fast, before any server starts, on a model source the server could not serve.

    Checks the name or suffix and that the file exists; an ``.onnx`` file is also loaded with ONNX Runtime (cheap,
    and nothing in it runs), so a damaged or unsupported graph is caught here. Pickles are not loaded here: that
    would run their code in the caller's process.

    Example::

        check_model("models/churn.onnx")      # SpecError: model.source 'models/churn.onnx' is not a model ONNX ...
    """
    if source == DEMO:
        return
    path = _resolve(source)
    if path.suffix == ".onnx":
        _OnnxModel(path)


def load_model(source: str = DEMO) -> ModelHandle:
    """Load ``"demo"`` (trained once, then cached), ``"demo.onnx"``, or a ``.joblib``/``.pkl``/``.skops``/``.onnx``
    model file."""
    if source == DEMO:
        return _load_demo()
    path = _resolve(source)
    if path.suffix == ".onnx":
        return _load_onnx(path, demo=path == _BUNDLED_ONNX)
    trusted: tuple[str, ...] = ()
    if path.suffix == ".skops":
        import skops.io as sio

        trusted = tuple(sio.get_untrusted_types(file=path))
        if trusted:
            log.warning(
                "trusting these types from %s (skops does not trust them by default): %s",
                path,
                ", ".join(trusted),
            )
        estimator = sio.load(path, trusted=list(trusted))
    else:
        import joblib

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
    n: int = 256, *, rows_per_request: int = 1, seed: int = 0, model: str = DEMO
) -> list[bytes]:
    """``n`` JSON bodies for ``POST /predict``, each with ``rows_per_request`` rows sampled from the model's data.

    Example::

        demo_payloads(2)[0]       # b'{"rows":[[13.08,15.71,85.63,...]]}'
    """
    if n < 0 or rows_per_request < 1:
        raise ValueError(
            f"n must be >= 0 and rows_per_request >= 1 (got n={n}, rows_per_request={rows_per_request})"
        )
    rows = load_model(model).sample_rows(n * rows_per_request, seed=seed)
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
def _load_demo() -> ModelHandle:
    import sklearn
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    path = cache_dir() / f"demo-breast-cancer-logreg-sklearn-{sklearn.__version__}.joblib"
    estimator = _read_cache(path)
    if estimator is None:
        estimator = _train_demo(data.data, data.target)
        _write_cache(path, estimator)
    return ModelHandle(
        name="demo-breast-cancer-logreg",
        n_features=int(data.data.shape[1]),
        feature_names=tuple(str(s) for s in data.feature_names),
        estimator=estimator,
        source=DEMO,
        _data=np.asarray(data.data, dtype=np.float64),
        _fast=_LinearFastPath.of(estimator),
    )


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
