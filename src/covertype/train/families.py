"""The model families the search draws from: one `Family` each, all a family is in one place.

LightGBM (native categorical), bagged extra trees (one-hot) and the seed's SVM, made
tractable as an RBF kernel approximation (Nystroem) + a linear SVM, fitted on at most
`SVM_MAX_ROWS` rows. Every pipeline starts with `features.add_engineered`.

Cheap to import (the DAG file reads `FAMILIES` at parse time): scikit-learn, LightGBM, SciPy
and even the schema (it loads pandas) are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from covertype.train import TrainingError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SVM_MAX_ROWS = 10_000


@dataclass(frozen=True)
class Family:
    """A model family: its search space, its pipeline, how it is fitted."""

    name: str
    space: Callable[[], dict]  # parameter lists and distributions for ParameterSampler
    build: Callable[[dict, int], Any]  # (params, seed) → an unfitted sklearn Pipeline
    fit_params: Callable[[], dict] = dict  # extra keyword arguments of Pipeline.fit
    max_rows: int | None = None  # fitted on a random sample of at most this many rows

    def fit_rows(self, available: int) -> int:
        """How many of `available` rows a fit uses."""
        return available if self.max_rows is None else min(available, self.max_rows)

    def fit(self, params: dict, X: pd.DataFrame, y: np.ndarray, seed: int, threads: int = 0):
        """Build and fit one configuration on at most `max_rows` rows, with `threads` threads
        (0: every core)."""
        import numpy as np

        if self.fit_rows(len(X)) < len(X):
            picked = np.random.default_rng(seed).choice(len(X), self.max_rows, replace=False)
            X, y = X.iloc[picked], y[picked]
        pipeline = self.build(params, seed)
        model = pipeline.steps[-1][1]
        if threads and "num_threads" not in params and "n_jobs" in model.get_params():
            model.set_params(n_jobs=threads)
        pipeline.fit(X, y, **self.fit_params())
        return pipeline


# ---------------------------------------------------------------- shared steps


def _pipeline(*tail: tuple[str, Any], numeric: Any = "passthrough", one_hot: bool = True):
    """engineer → encode (the numerics by `numeric`, the two categoricals one-hot or as
    ordinals) → the `tail` steps (the estimator, and any step before it)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

    from covertype import features, schema

    categories = [list(schema.WILDERNESS_AREAS), list(schema.SOIL_TYPES)]
    categorical = (
        OneHotEncoder(categories=categories)
        if one_hot
        else OrdinalEncoder(categories=categories, dtype=np.float64)
    )
    encode = ColumnTransformer(
        [
            ("numeric", numeric, list(features.NUMERIC_OUT)),
            ("categorical", categorical, list(schema.CATEGORICAL)),
        ],
        sparse_threshold=0,
    )
    engineer = FunctionTransformer(
        features.add_engineered, feature_names_out=features.engineered_names
    )
    return Pipeline([("engineer", engineer), ("encode", encode), *tail])


# ---------------------------------------------------------------- LightGBM


def _lightgbm_space() -> dict:
    from scipy.stats import loguniform

    return {
        # On the serving front (benchmarks/bench_frontier.py, 58k real rows): a single row
        # costs per tree, little per leaf, so 150-200 rounds of 127 leaves at 0.1-0.14 come
        # within 0.2-0.8 pt of the best macro F1 at 150-260 µs, under the default budget
        # (350-500 rounds cost 310-1,140 µs). Softmax over 7 classes diverges from a
        # learning rate of about 0.15 up.
        "n_estimators": [150, 200],
        "num_leaves": [127],
        "learning_rate": loguniform(0.1, 0.14),
        "min_child_samples": [10, 20],
        "colsample_bytree": [0.6, 0.8],
        "reg_lambda": [1.0, 5.0],  # one draw of 0 diverged (macro F1 0.38) on 58k rows
    }


def _lightgbm(params: dict, seed: int):
    from lightgbm import LGBMClassifier

    # Deterministic histograms (row-wise): the same rows, parameters, seed and thread count
    # give the same trees to the bit (measured: 2e-16 apart without), at the same fit time.
    fixed = {"deterministic": True, "force_row_wise": True}
    model = LGBMClassifier(**(fixed | params), random_state=seed, n_jobs=-1, verbose=-1)
    return _pipeline(("model", model), one_hot=False)


def _lightgbm_fit_params() -> dict:
    from covertype import features

    # LightGBM splits the two ordinal-encoded columns (after the numerics) as categories.
    first = len(features.NUMERIC_OUT)
    return {"model__categorical_feature": [first, first + 1]}


# ---------------------------------------------------------------- extra trees


def _extra_trees_space() -> dict:
    return {
        # One row costs ~5 µs a tree (the depth barely matters): 30-40 full trees serve in
        # 160-320 µs at 0.3 pt below 100 trees' macro F1 (benchmarks/bench_frontier.py).
        "n_estimators": [30, 40],
        "max_features": [0.3, 0.5, 0.7],
        "min_samples_leaf": [1, 2],
        "max_samples": [0.5, 0.8],
    }


def _extra_trees(params: dict, seed: int):
    from sklearn.ensemble import ExtraTreesClassifier

    model = ExtraTreesClassifier(**params, bootstrap=True, random_state=seed, n_jobs=-1)
    return _pipeline(("model", model))


# ---------------------------------------------------------------- SVM


def _svm_space() -> dict:
    from scipy.stats import loguniform

    return {
        "C": loguniform(0.5, 20),
        "gamma": loguniform(0.02, 0.3),
        "n_components": [300, 600, 1000],
    }


def _svm(params: dict, seed: int):
    from sklearn.kernel_approximation import Nystroem
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    kernel = Nystroem(
        kernel="rbf", gamma=params["gamma"], n_components=params["n_components"], random_state=seed
    )
    model = LinearSVC(C=params["C"], random_state=seed)
    return _pipeline(("kernel", kernel), ("model", model), numeric=StandardScaler())


LIGHTGBM = Family("lightgbm", _lightgbm_space, _lightgbm, fit_params=_lightgbm_fit_params)
EXTRA_TREES = Family("extra_trees", _extra_trees_space, _extra_trees)
# A kernel approximation keeps the SVM linear in rows; the cap keeps it in memory.
SVM = Family("svm", _svm_space, _svm, max_rows=SVM_MAX_ROWS)

BY_NAME = {family.name: family for family in (LIGHTGBM, EXTRA_TREES, SVM)}
FAMILIES = tuple(BY_NAME)


def select(names: Sequence[str]) -> list[Family]:
    """The families of these names; TrainingError naming what is allowed otherwise."""
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown or not names:
        raise TrainingError(
            f"families: {unknown or 'none given'} not allowed; allowed: {', '.join(FAMILIES)}"
        )
    return [BY_NAME[name] for name in names]


def get(name: str) -> Family:
    """The family of this name; TrainingError naming what is allowed otherwise."""
    return select([name])[0]


def build_pipeline(family: str, params: dict, seed: int):
    """The unfitted pipeline of one configuration of `family`."""
    return get(family).build(params, seed)


def fit_pipeline(
    family: str, params: dict, X: pd.DataFrame, y: np.ndarray, seed: int, threads: int = 0
):
    """Build and fit one configuration of a family by name (see `Family.fit`)."""
    return get(family).fit(params, X, y, seed, threads)
