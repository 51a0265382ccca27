"""The fast prediction path: validated records → classes and probabilities, no DataFrame.

A logged pipeline is engineer (`features.add_engineered`) → encode (a ColumnTransformer) →
[kernel] → model. On a one-row DataFrame the first two steps cost ten times what the
trees do. `compile_predictor` reads the fitted encoder once (`encoder.Encoder`) and
afterwards turns records into the very matrix the pipeline would hand its next step; the
later steps run as they are, except the models: LightGBM's one row through its single-row
C API, several rows through ONNX Runtime's trees (`compiled`) or else its booster with one
thread; a forest's trees without joblib's per-call pool.

Every compiled predictor is checked against its pipeline on probe rows (the encoded
matrices equal, the classes equal, the probabilities within a tolerance) before it serves.
A step it does not know or a disagreement means the next one down serves: "onnx" (ONNX
Runtime for batches) → "fast" (the booster for batches) → the pipeline itself, so any
model the training registers is served correctly, the known ones fast; `/model` says
which one serves and why.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from covertype import features, schema
from covertype.serve.encoder import Encoder, Record, Unsupported

log = logging.getLogger(__name__)

PROBE_ROWS = 512
SINGLE_ROW_PROBES = 64
N_CLASSES = len(schema.COVER_TYPE_NAMES)
EXACT = 1e-6  # |Δp| allowed of a predictor that runs the model's own float64 arithmetic
PREDICTORS = ("auto", "fast", "pipeline")  # COVERTYPE_SERVE_PREDICTOR


class Predictor(Protocol):
    kind: str

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
    """predict_one / predict_many: the classes alone."""

    def predict_one(self, record: Record) -> int:
        return self.classify_one(record)[0]

    def predict_many(self, records: Sequence[Record]) -> list[int]:
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


class _LightGBM:
    """LGBMClassifier.predict_proba without the sklearn wrapper: a single row through
    LightGBM's single-row C API (see _SingleRow), several through ONNX Runtime's trees when
    attached (`trees`), else the booster with one thread."""

    def __init__(self, model):
        if callable(getattr(model, "_objective", None)):
            raise Unsupported("LightGBM model has a custom objective")
        self.model = model
        self.booster = model.booster_
        self.classes = np.asarray(model.classes_)
        self.n_features = int(model.n_features_in_)
        self.single = _SingleRow.create(self.booster, self.n_features)
        self.trees = None  # compiled.OnnxTrees, attached once it passed its check

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


class _SingleRow:
    """LGBM_BoosterPredictForMatSingleRowFast with a configuration prepared once.
    Booster.predict builds a predictor on every call, ~50 µs of a ~400 µs row of the
    3,500-tree champion. The configuration holds buffers: one call at a time."""

    def __init__(self, booster, n_features: int):
        from lightgbm.basic import _LIB, _safe_call

        self.lib, self.check, self.booster = _LIB, _safe_call, booster  # config points into it
        self.handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(booster.best_iteration),  # as Booster.predict: <= 0 is all
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self.handle),
            )
        )
        probe = booster.predict(np.zeros((1, n_features)), num_threads=1)
        self.multiclass = probe.ndim == 2
        self.out = np.empty(probe.size, dtype=np.float64)
        self.out_pointer = self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self.out_length = ctypes.c_int64()
        self.lock = threading.Lock()

    @classmethod
    def create(cls, booster, n_features: int) -> _SingleRow | None:
        try:
            return cls(booster, n_features)
        except Exception as error:  # an older or newer LightGBM: Booster.predict serves
            log.info("LightGBM single-row API not used", extra={"error": str(error)})
            return None

    def predict(self, row: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(row, dtype=np.float64)
        with self.lock:
            self.check(
                self.lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self.handle,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self.out_length),
                    self.out_pointer,
                )
            )
            result = self.out[: self.out_length.value].copy()
        return result.reshape(1, -1) if self.multiclass else result

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self.lib.LGBM_FastConfigFree(handle)


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
        return _LightGBM(model)
    if module.startswith("sklearn.ensemble") and kind in (
        "ExtraTreesClassifier",
        "RandomForestClassifier",
    ):
        return _Forest(model)
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
        self.middle = middle  # e.g. Nystroem: run as is, on the encoded matrix
        self.model = _model(model)
        self.model_kind = type(model).__name__

    @property
    def kind(self) -> str:
        onnx = isinstance(self.model, _LightGBM) and self.model.trees is not None
        return "onnx" if onnx else "fast"

    def encode(self, records: Sequence[Record]) -> np.ndarray:
        return self.encoder.encode(records)

    def classify_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        for step in self.middle:
            matrix = step.transform(matrix)
        model = self.model
        if isinstance(model, _Other):
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


# ---------------------------------------------------------------- choosing one


def probe_records(n: int = PROBE_ROWS, seed: int = 0) -> list[dict]:
    """Valid records spread over every range and every category (fixed seed)."""
    rng = np.random.default_rng(seed)
    numeric = {f.name: rng.integers(f.low, f.high + 1, n).tolist() for f in schema.NUMERIC_FIELDS}
    wilderness = [schema.WILDERNESS_AREAS[i % len(schema.WILDERNESS_AREAS)] for i in range(n)]
    soil = [schema.SOIL_TYPES[i % len(schema.SOIL_TYPES)] for i in range(n)]
    rng.shuffle(soil)
    return [
        {
            **{name: numeric[name][i] for name in schema.NUMERIC},
            **dict(zip(schema.CATEGORICAL, (wilderness[i], soil[i]), strict=True)),
        }
        for i in range(n)
    ]


def disagreement(
    fast: FastPredictor, pipeline, records: Sequence[Record], tolerance: float = EXACT
) -> str | None:
    """Why `fast` is not the pipeline on `records` (classes, probabilities within
    `tolerance`), or None when it is."""
    truth = PipelinePredictor(pipeline)
    frame = records_frame(records)
    expected = np.asarray(pipeline[:2].transform(frame), dtype=np.float64)
    encoded = fast.encode(records)
    if encoded.shape != expected.shape:
        return f"encoded shape {encoded.shape} != pipeline's {expected.shape}"
    if not np.array_equal(encoded, expected):
        rows = int((encoded != expected).any(axis=1).sum())
        return f"encoded values differ from the pipeline's on {rows} of {len(records)} rows"
    labels, proba = truth.classify_many(records)
    many, many_proba = fast.classify_many(records)
    if many != labels:
        differ = sum(a != b for a, b in zip(many, labels, strict=True))
        return f"batch predictions differ from the pipeline's on {differ} of {len(records)} rows"
    single = [fast.classify_one(r) for r in records[:SINGLE_ROW_PROBES]]
    if [label for label, _ in single] != labels[:SINGLE_ROW_PROBES]:
        return "one-row predictions differ from the pipeline's"
    if (proba is None) != (many_proba is None):
        return "probabilities: one of the pipeline and the fast path has none"
    if proba is not None:
        ones = np.vstack([p for _, p in single])
        gap = max(np.abs(many_proba - proba).max(), np.abs(ones - proba[: len(ones)]).max())
        if gap > tolerance:
            rows = int((np.abs(many_proba - proba) > tolerance).any(axis=1).sum())
            return (
                f"probabilities differ from the pipeline's by up to {gap:.1e} (> {tolerance:g}) "
                f"on {rows} of {len(records)} rows"
            )
    return None


def compile_predictor(
    pipeline,
    extra: Sequence[Record] = (),
    prefer: str = "auto",
    cache_dir: Path | None = None,
    onnx_tolerance: float | None = None,
) -> tuple[Predictor, str | None]:
    """The fastest predictor for `pipeline` that reproduces it on the probe rows (and
    `extra`): ONNX trees, the fast path, or the pipeline itself (`prefer` may skip the
    first, or both); plus why a faster one does not serve. `onnx_tolerance`: the largest
    |Δp| accepted from the ONNX trees [compiled.ONNX_TOLERANCE]."""
    if prefer == "pipeline":
        return PipelinePredictor(pipeline), "COVERTYPE_SERVE_PREDICTOR=pipeline"
    records = [*extra, *probe_records()]
    try:
        fast = FastPredictor(pipeline)
        reason = disagreement(fast, pipeline, records)
    except Unsupported as error:
        reason = str(error)
    except Exception as error:  # a step that fails on NumPy input: the pipeline serves
        reason = f"{type(error).__name__}: {error}"
    if reason is not None:
        log.warning("fast path not used; the pipeline serves", extra={"reason": reason})
        return PipelinePredictor(pipeline), f"fast path not used: {reason}"
    if not isinstance(fast.model, _LightGBM):
        return fast, None
    if prefer == "fast":
        return fast, "COVERTYPE_SERVE_PREDICTOR=fast"
    reason = _attach_onnx(fast, pipeline, records, cache_dir, onnx_tolerance)
    if reason is not None:
        log.warning("ONNX trees not used; the booster serves", extra={"reason": reason})
        return fast, f"onnx not used: {reason}"
    return fast, None


def _attach_onnx(fast: FastPredictor, pipeline, records, cache_dir, tolerance) -> str | None:
    """ONNX Runtime's trees in `fast`, or why not (they stay detached then)."""
    try:
        from covertype.serve.compiled import ONNX_TOLERANCE, onnx_trees

        fast.model.trees = onnx_trees(fast.model.model, fast.model.n_features, cache_dir)
        limit = ONNX_TOLERANCE if tolerance is None else tolerance
        reason = disagreement(fast, pipeline, records, limit)
    except ImportError as error:
        reason = f"{error.name} is not installed"
    except Exception as error:  # a conversion or a runtime that fails: the booster serves
        reason = f"{type(error).__name__}: {error}"
    if reason is not None:
        fast.model.trees = None
    return reason
