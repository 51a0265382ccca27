"""The fast prediction path: validated records → classes on NumPy, with no DataFrame.

A logged pipeline is engineer (`features.add_engineered`) → encode (a ColumnTransformer) →
[kernel] → model. On a one-row DataFrame the first two steps cost ten times what the
trees do. `compile_predictor` reads the fitted encoder once (which columns pass through,
the scaler's means and scales, each category's code or one-hot column) and afterwards
turns records into the very matrix the pipeline would hand its next step; the later steps
run as they are, except the models: LightGBM's booster is called directly with one thread
(one row through its single-row C API), a forest's trees without joblib's per-call pool.

Every compiled predictor is checked against its pipeline on probe rows (the encoded
matrices equal, the classes equal) before it serves. A step it does not know (another
transformer, a sparse output, a changed first step) or a disagreement means the pipeline
itself serves, so any model the training registers is served correctly, the known ones fast.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from covertype import features, schema

log = logging.getLogger(__name__)

Record = Mapping[str, object]  # one validated record: schema.FEATURES → canonical values
PROBE_ROWS = 512
SINGLE_ROW_PROBES = 64


class Predictor(Protocol):
    kind: str

    def predict_one(self, record: Record) -> int: ...

    def predict_many(self, records: Sequence[Record]) -> list[int]: ...


class Unsupported(Exception):
    """The pipeline has a step the fast path does not reproduce."""


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """Records as the DataFrame the pipeline was trained on (ints, and strings)."""
    columns: dict[str, object] = {
        name: np.array([r[name] for r in records], dtype=np.int64) for name in schema.NUMERIC
    }
    for name in schema.CATEGORICAL:
        columns[name] = pd.Series([r[name] for r in records], dtype=str)
    return pd.DataFrame(columns)


class PipelinePredictor:
    """The logged pipeline itself, on a DataFrame: always right, slow for one row."""

    kind = "pipeline"

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict_one(self, record: Record) -> int:
        return self.predict_many([record])[0]

    def predict_many(self, records: Sequence[Record]) -> list[int]:
        return [int(v) for v in self.pipeline.predict(records_frame(records))]


# ---------------------------------------------------------------- the encoder on NumPy

_NUMERIC_OUT = {name: i for i, name in enumerate(features.NUMERIC_OUT)}
_CATEGORICAL = {name: i for i, name in enumerate(schema.CATEGORICAL)}


class _Encoder:
    """The fitted ColumnTransformer, replayed on NumPy rows in its output layout."""

    def __init__(self, encode):
        if getattr(encode, "sparse_output_", False):
            raise Unsupported("the encoder's output is sparse")
        self.width = sum(s.stop - s.start for s in encode.output_indices_.values())
        # (output columns, input columns in NUMERIC_OUT, mean or None, scale or None)
        self.numeric: list[tuple[slice, np.ndarray | slice, np.ndarray | None, object]] = []
        self.ordinal: list[tuple[int, int, dict[str, float]]] = []  # (column, field, codes)
        self.onehot: list[tuple[int, dict[str, int]]] = []  # (field, column of each value)
        for name, step, columns in encode.transformers_:
            out = encode.output_indices_[name]
            if _is_drop(step) or out.stop == out.start:
                continue
            columns = _column_names(columns)
            kind = type(step).__name__
            if _is_passthrough(step) or kind == "StandardScaler":
                self.numeric.append((out, _numeric_source(columns), *_scaling(step)))
            elif kind == "OrdinalEncoder":
                self._add_ordinal(step, columns, out)
            elif kind == "OneHotEncoder":
                self._add_onehot(step, columns, out)
            else:
                raise Unsupported(f"encoder step {name!r} is a {kind}")

    def _add_ordinal(self, step, columns: list[str], out: slice) -> None:
        if getattr(step, "_infrequent_enabled", False):
            raise Unsupported("ordinal encoder groups infrequent categories")
        for j, column in enumerate(columns):
            codes = {str(v): float(k) for k, v in enumerate(step.categories_[j])}
            self.ordinal.append((out.start + j, _categorical_source(column), codes))

    def _add_onehot(self, step, columns: list[str], out: slice) -> None:
        if step.drop_idx_ is not None or getattr(step, "_infrequent_enabled", False):
            raise Unsupported("one-hot encoder drops or groups categories")
        start = out.start
        for j, column in enumerate(columns):
            values = step.categories_[j]
            self.onehot.append(
                (_categorical_source(column), {str(v): start + k for k, v in enumerate(values)})
            )
            start += len(values)

    def encode(self, records: Sequence[Record]) -> np.ndarray:
        n = len(records)
        raw = np.array([[r[name] for name in schema.NUMERIC] for r in records], dtype=np.float64)
        numeric = np.concatenate([raw, features.engineer_array(raw)], axis=1)
        out = (np.zeros if self.onehot else np.empty)((n, self.width), dtype=np.float64)
        for columns, source, mean, scale in self.numeric:
            block = numeric[:, source]
            if mean is not None:
                block = block - mean
            if scale is not None:
                block = block / scale
            out[:, columns] = block
        for column, field, codes in self.ordinal:
            name = schema.CATEGORICAL[field]
            out[:, column] = [codes[r[name]] for r in records]
        rows = np.arange(n)
        for field, positions in self.onehot:
            name = schema.CATEGORICAL[field]
            out[rows, [positions[r[name]] for r in records]] = 1.0
        return out


def _is_drop(step) -> bool:
    return isinstance(step, str) and step == "drop"


def _is_passthrough(step) -> bool:
    if isinstance(step, str):
        return step == "passthrough"
    # A fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer.
    return (
        type(step).__name__ == "FunctionTransformer"
        and step.func is None
        and getattr(step, "_sklearn_output_config", {}).get("transform") in (None, "default")
    )


def _column_names(columns) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    names = list(columns)
    if not all(isinstance(c, str) for c in names):
        raise Unsupported("encoder columns are not given by name")
    return names


def _numeric_source(columns: list[str]) -> np.ndarray | slice:
    unknown = [c for c in columns if c not in _NUMERIC_OUT]
    if unknown:
        raise Unsupported(f"numeric block takes non-numeric columns {unknown}")
    index = np.array([_NUMERIC_OUT[c] for c in columns])
    contiguous = np.array_equal(index, np.arange(index[0], index[0] + len(index)))
    return slice(int(index[0]), int(index[-1]) + 1) if contiguous else index


def _categorical_source(column: str) -> int:
    if column not in _CATEGORICAL:
        raise Unsupported(f"categorical encoder takes {column!r}")
    return _CATEGORICAL[column]


def _scaling(step) -> tuple[np.ndarray | None, np.ndarray | None]:
    if isinstance(step, str) or type(step).__name__ == "FunctionTransformer":
        return None, None
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std and step.scale_ is not None else None
    return mean, scale


# ---------------------------------------------------------------- the model on NumPy


class _LightGBM:
    """LGBMClassifier.predict without the sklearn wrapper: the booster with one thread, and
    a single row through LightGBM's single-row C API (see _SingleRow)."""

    def __init__(self, model):
        if callable(getattr(model, "_objective", None)):
            raise Unsupported("LightGBM model has a custom objective")
        self.booster = model.booster_
        self.classes = np.asarray(model.classes_)
        self.single = _SingleRow.create(self.booster, int(model.n_features_in_))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 1 and self.single is not None:
            result = self.single.predict(matrix)
        else:
            result = self.booster.predict(matrix, num_threads=1)
        if result.ndim == 1:  # binary: the wrapper's (1 - p, p)
            result = np.vstack((1.0 - result, result)).transpose()
        return self.classes[np.argmax(result, axis=1)]


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

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(matrix, dtype=np.float32)
        proba = np.zeros((len(X), self.n_classes), dtype=np.float64)
        for tree in self.trees:
            proba += tree.predict(X)[:, : self.n_classes]
        proba /= len(self.trees)
        return self.classes.take(np.argmax(proba, axis=1), axis=0)


def _model(model):
    """The final step's fast stand-in, or the estimator itself (its own .predict)."""
    module, kind = type(model).__module__, type(model).__name__
    if module.startswith("lightgbm") and kind == "LGBMClassifier":
        return _LightGBM(model)
    if module.startswith("sklearn.ensemble") and kind in (
        "ExtraTreesClassifier",
        "RandomForestClassifier",
    ):
        return _Forest(model)
    return model


class FastPredictor:
    """Records → the encoder's matrix → the pipeline's later steps → classes."""

    kind = "fast"

    def __init__(self, pipeline):
        steps = [step for _, step in pipeline.steps]
        if len(steps) < 3:
            raise Unsupported(f"pipeline has {len(steps)} steps; expected engineer, encode, model")
        engineer, encode, *middle, model = steps
        if getattr(engineer, "func", None) is not features.add_engineered:
            raise Unsupported("first step is not features.add_engineered")
        if type(encode).__name__ != "ColumnTransformer":
            raise Unsupported(f"second step is a {type(encode).__name__}")
        self.encoder = _Encoder(encode)
        self.middle = middle  # e.g. Nystroem: run as is, on the encoded matrix
        self.model = _model(model)
        self.model_kind = type(model).__name__

    def encode(self, records: Sequence[Record]) -> np.ndarray:
        return self.encoder.encode(records)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        for step in self.middle:
            matrix = step.transform(matrix)
        return self.model.predict(matrix)

    def predict_one(self, record: Record) -> int:
        return int(self.predict_matrix(self.encoder.encode((record,)))[0])

    def predict_many(self, records: Sequence[Record]) -> list[int]:
        if not records:
            return []
        return [int(v) for v in self.predict_matrix(self.encoder.encode(records))]


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


def disagreement(fast: FastPredictor, pipeline, records: Sequence[Record]) -> str | None:
    """Why `fast` is not the pipeline on `records`, or None when it is."""
    frame = records_frame(records)
    expected = np.asarray(pipeline[:2].transform(frame), dtype=np.float64)
    encoded = fast.encode(records)
    if encoded.shape != expected.shape:
        return f"encoded shape {encoded.shape} != pipeline's {expected.shape}"
    if not np.array_equal(encoded, expected):
        rows = int((encoded != expected).any(axis=1).sum())
        return f"encoded values differ from the pipeline's on {rows} of {len(records)} rows"
    truth = [int(v) for v in pipeline.predict(frame)]
    many = fast.predict_many(records)
    if many != truth:
        differ = sum(a != b for a, b in zip(many, truth, strict=True))
        return f"batch predictions differ from the pipeline's on {differ} of {len(records)} rows"
    single = [fast.predict_one(r) for r in records[:SINGLE_ROW_PROBES]]
    if single != truth[:SINGLE_ROW_PROBES]:
        return "one-row predictions differ from the pipeline's"
    return None


def compile_predictor(pipeline, extra: Sequence[Record] = ()) -> tuple[Predictor, str | None]:
    """The fast predictor for `pipeline` when it reproduces it on the probe rows (and
    `extra`), else the pipeline itself; plus why the fast one was not taken."""
    try:
        fast = FastPredictor(pipeline)
        reason = disagreement(fast, pipeline, [*extra, *probe_records()])
    except Unsupported as error:
        reason = str(error)
    except Exception as error:  # a step that fails on NumPy input: the pipeline serves
        reason = f"{type(error).__name__}: {error}"
    if reason is None:
        return fast, None
    log.warning("fast path not used; the pipeline serves", extra={"reason": reason})
    return PipelinePredictor(pipeline), reason
