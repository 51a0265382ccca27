"""The fitted encoder (a ColumnTransformer) replayed on NumPy rows, in its output layout,
and which of the 12 input fields each output column comes from (for explanations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from covertype import features, schema
from covertype.errors import CovertypeError

Record = Mapping[str, object]  # one validated record: schema.FEATURES → canonical values


class Unsupported(CovertypeError):
    """The pipeline has a step the fast path does not reproduce (the next predictor serves)."""


_NUMERIC_OUT = {name: i for i, name in enumerate(features.NUMERIC_OUT)}
_CATEGORICAL = {name: i for i, name in enumerate(schema.CATEGORICAL)}


class Encoder:
    """The fitted ColumnTransformer, replayed on NumPy rows in its output layout."""

    def __init__(self, encode):
        if getattr(encode, "sparse_output_", False):
            raise Unsupported("the encoder's output is sparse")
        self.width = sum(s.stop - s.start for s in encode.output_indices_.values())
        # (output columns, input columns in NUMERIC_OUT, mean or None, scale or None)
        self.numeric: list[tuple[slice, np.ndarray | slice, np.ndarray | None, object]] = []
        # Keyed by a category's text, looked up with a record's value (an `object` in Record).
        self.ordinal: list[tuple[int, int, dict[object, float]]] = []  # (column, field, codes)
        self.onehot: list[tuple[int, dict[object, int]]] = []  # (field, column of each value)
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
        self.shares = self._shares()

    def _shares(self) -> np.ndarray:
        """width × 12: the share of each output column in each input field (rows sum to 1;
        a derived feature splits evenly over the fields it is made of)."""
        shares = np.zeros((self.width, len(schema.FEATURES)))
        field = {name: i for i, name in enumerate(schema.FEATURES)}
        for columns, inputs, _, _ in self.numeric:
            names = np.array(features.NUMERIC_OUT)[inputs]
            for column, name in zip(range(columns.start, columns.stop), names, strict=True):
                made_of = features.MADE_OF.get(str(name), (str(name),))
                shares[column, [field[f] for f in made_of]] = 1 / len(made_of)
        for column, source, _ in self.ordinal:
            shares[column, field[schema.CATEGORICAL[source]]] = 1.0
        for source, positions in self.onehot:
            shares[list(positions.values()), field[schema.CATEGORICAL[source]]] = 1.0
        return shares

    def _add_ordinal(self, step, columns: list[str], out: slice) -> None:
        if getattr(step, "_infrequent_enabled", False):
            raise Unsupported("ordinal encoder groups infrequent categories")
        for j, column in enumerate(columns):
            codes: dict[object, float] = {
                str(v): float(k) for k, v in enumerate(step.categories_[j])
            }
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
