"""The predictors: validated records → classes and probabilities.

A logged pipeline is engineer (`features.add_engineered`) → encode (a ColumnTransformer) →
[kernel] → model. On a one-row DataFrame the first two steps cost ten times what the
trees do. `FastPredictor` reads the fitted encoder once (`encoder.Encoder`) and afterwards
turns records into the very matrix the pipeline would hand its next step; the later steps
run as they are, except the models: LightGBM's one row through its single-row C API
(`lightgbm_single_row`), several rows through ONNX Runtime's trees (`onnx_trees`) or else
its booster with one thread; a forest's trees without joblib's per-call pool; an RBF
Nystroem kernel and a linear SVM in NumPy, without sklearn's checks (5× cheaper a row).
`PipelinePredictor` is the logged pipeline itself; `predictor_choice` picks and checks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from covertype import features, schema
from covertype.serve.encoder import Encoder, Record, Unsupported
from covertype.serve.lightgbm_single_row import SingleRow

N_CLASSES = len(schema.COVER_TYPE_NAMES)


class Predictor(Protocol):
    @property
    def kind(self) -> str: ...  # "pipeline", "fast" or "onnx"

    def classify_one(self, record: Record) -> tuple[int, np.ndarray | None]: ...

    def classify_many(self, records: Sequence[Record]) -> tuple[list[int], np.ndarray | None]: ...


def by_label(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """n × (the model's classes) probabilities → n × N_CLASSES, column k for class k."""
    if proba.shape[1] == N_CLASSES and np.array_equal(classes, np.arange(N_CLASSES)):
        return proba
    out = np.zeros((len(proba), N_CLASSES))
    out[:, np.asarray(classes, dtype=int)] = proba
    return out


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """Records as the DataFrame the pipeline was trained on (ints, and strings)."""
    columns: dict[str, object] = {
        name: np.array([r[name] for r in records], dtype=np.int64) for name in schema.NUMERIC
    }
    for name in schema.CATEGORICAL:
        columns[name] = pd.Series([r[name] for r in records], dtype=str)
    return pd.DataFrame(columns)


class _Labels:
    """predict_one / predict_many: the classes alone (a mixin of Predictors)."""

    def predict_one(self: Predictor, record: Record) -> int:
        return self.classify_one(record)[0]

    def predict_many(self: Predictor, records: Sequence[Record]) -> list[int]:
        return self.classify_many(records)[0]


class PipelinePredictor(_Labels):
    """The logged pipeline itself, on a DataFrame: always right, slow for one row."""

    kind = "pipeline"

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.proba = hasattr(pipeline, "predict_proba")  # not a LinearSVC's

    def classify_one(self, record: Record) -> tuple[int, np.ndarray | None]:
        labels, proba = self.classify_many([record])
        return labels[0], None if proba is None else proba[0]

    def classify_many(self, records: Sequence[Record]) -> tuple[list[int], np.ndarray | None]:
        frame = records_frame(records)
        labels = [int(v) for v in self.pipeline.predict(frame)]
        if not self.proba:
            return labels, None
        return labels, by_label(self.pipeline.predict_proba(frame), self.pipeline.classes_)


# ---------------------------------------------------------------- the model on NumPy


class LightGBMModel:
    """LGBMClassifier.predict_proba without the sklearn wrapper: a single row through
    LightGBM's single-row C API (see SingleRow), several through ONNX Runtime's trees when
    attached (`trees`), else the booster with one thread."""

    def __init__(self, model):
        if callable(getattr(model, "_objective", None)):
            raise Unsupported("LightGBM model has a custom objective")
        self.model = model
        self.booster = model.booster_
        self.classes = np.asarray(model.classes_)
        self.n_features = int(model.n_features_in_)
        self.single = SingleRow.create(self.booster, self.n_features)
        self.trees = None  # onnx_trees.OnnxTrees, attached once it passed its check

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        # Measured on the 3,500-tree champion: one row is cheapest through the C API (ONNX
        # Runtime's one row costs more), many rows through ONNX Runtime (3× the booster).
        if len(matrix) == 1 and self.single is not None:
            result = self.single.predict(matrix)
        elif self.trees is not None:
            return self.trees.predict_proba(matrix)
        else:
            result = self.booster.predict(matrix, num_threads=1)
        if result.ndim == 1:  # binary: the wrapper's (1 - p, p)
            result = np.vstack((1.0 - result, result)).transpose()
        return result

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """n × classes × (features + 1): SHAP values of each class's raw score, bias last."""
        values = self.booster.predict(matrix, pred_contrib=True, num_threads=1)
        return values.reshape(len(matrix), -1, self.n_features + 1)


class _Forest:
    """ForestClassifier.predict without joblib: each tree's class fractions summed in
    order, as the forest does with one job (its per-call pool costs more than 30 trees)."""

    def __init__(self, model):
        if model.n_outputs_ != 1:
            raise Unsupported("forest has several outputs")
        self.trees = [tree.tree_ for tree in model.estimators_]
        self.n_classes = int(model.n_classes_)
        self.classes = np.asarray(model.classes_)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(matrix, dtype=np.float32)
        proba = np.zeros((len(X), self.n_classes), dtype=np.float64)
        for tree in self.trees:
            proba += tree.predict(X)[:, : self.n_classes]
        proba /= len(self.trees)
        return proba


class _RbfNystroem:
    """Nystroem(kernel="rbf").transform in NumPy, in sklearn's own arithmetic (euclidean
    distances as |x|² - 2x·c + |c|², clipped at 0): on one row sklearn's input checks and
    dispatch cost 5× the kernel itself."""

    def __init__(self, step):
        if step.kernel != "rbf" or step.kernel_params:
            raise Unsupported(f"Nystroem kernel {step.kernel!r} with {step.kernel_params}")
        self.components = np.asarray(step.components_, dtype=np.float64)
        self.squared = (self.components**2).sum(axis=1)[np.newaxis, :]
        self.normalization = np.asarray(step.normalization_, dtype=np.float64).T
        self.gamma = 1.0 / self.components.shape[1] if step.gamma is None else step.gamma

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        distances = -2 * (matrix @ self.components.T)
        distances += (matrix * matrix).sum(axis=1)[:, np.newaxis]
        distances += self.squared
        np.maximum(distances, 0, out=distances)
        return np.exp(-self.gamma * distances) @ self.normalization


def _step(step):
    """A middle step's fast stand-in, or the step itself."""
    return _RbfNystroem(step) if type(step).__name__ == "Nystroem" else step


class _Linear:
    """LinearSVC.predict in NumPy: the class of the largest decision value (no
    probabilities, as LinearSVC has none)."""

    def __init__(self, model):
        self.coef = np.asarray(model.coef_, dtype=np.float64).T
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.classes = np.asarray(model.classes_)

    def classify(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        scores = matrix @ self.coef + self.intercept
        if scores.shape[1] == 1:  # two classes: one decision value, positive for the second
            return self.classes.take((scores[:, 0] > 0).astype(int)), None
        return self.classes.take(np.argmax(scores, axis=1)), None


class _Other:
    """Any other estimator through its own predict (and predict_proba where it has one)."""

    def __init__(self, model):
        self.model = model
        self.classes = np.asarray(model.classes_)
        self.has_proba = hasattr(model, "predict_proba")

    def classify(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        labels = self.model.predict(matrix)
        proba = self.model.predict_proba(matrix) if self.has_proba else None
        return labels, proba


def _model(model):
    """The final step's fast stand-in."""
    module, kind = type(model).__module__, type(model).__name__
    if module.startswith("lightgbm") and kind == "LGBMClassifier":
        return LightGBMModel(model)
    if module.startswith("sklearn.ensemble") and kind in (
        "ExtraTreesClassifier",
        "RandomForestClassifier",
    ):
        return _Forest(model)
    if module.startswith("sklearn.svm") and kind == "LinearSVC":
        return _Linear(model)
    return _Other(model)


class FastPredictor(_Labels):
    """Records → the encoder's matrix → the pipeline's later steps → classes, probabilities."""

    def __init__(self, pipeline):
        steps = [step for _, step in pipeline.steps]
        if len(steps) < 3:
            raise Unsupported(f"pipeline has {len(steps)} steps; expected engineer, encode, model")
        engineer, encode, *middle, model = steps
        if getattr(engineer, "func", None) is not features.add_engineered:
            raise Unsupported("first step is not features.add_engineered")
        if type(encode).__name__ != "ColumnTransformer":
            raise Unsupported(f"second step is a {type(encode).__name__}")
        self.encoder = Encoder(encode)
        self.middle = [_step(step) for step in middle]  # e.g. Nystroem, on the encoded matrix
        self.model = _model(model)
        self.model_kind = type(model).__name__

    @property
    def kind(self) -> str:
        onnx = isinstance(self.model, LightGBMModel) and self.model.trees is not None
        return "onnx" if onnx else "fast"

    def encode(self, records: Sequence[Record]) -> np.ndarray:
        return self.encoder.encode(records)

    def classify_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        for step in self.middle:
            matrix = step.transform(matrix)
        model = self.model
        if isinstance(model, _Other | _Linear):
            labels, proba = model.classify(matrix)
        else:
            proba = model.predict_proba(matrix)
            labels = model.classes.take(np.argmax(proba, axis=1), axis=0)
        return labels, None if proba is None else by_label(proba, model.classes)

    def classify_one(self, record: Record) -> tuple[int, np.ndarray | None]:
        labels, proba = self.classify_matrix(self.encoder.encode((record,)))
        return int(labels[0]), None if proba is None else proba[0]

    def classify_many(self, records: Sequence[Record]) -> tuple[list[int], np.ndarray | None]:
        if not records:
            return [], np.zeros((0, N_CLASSES))
        labels, proba = self.classify_matrix(self.encoder.encode(records))
        return [int(v) for v in labels], proba
