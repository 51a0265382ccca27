"""Evidently's data drift preset on the 12 features, read into plain numbers.

Evidently chooses each feature's test from the reference size: above 1,000 rows (our
reference is 5,000 by default) distances with a 0.1 threshold, Wasserstein (normed by the
reference's spread) for numbers and Jensen-Shannon for categories; at 1,000 or fewer,
p-values (KS, chi-square, Z) at 0.05. Distances do not flag every feature of a large batch
for differences too small to matter, which p-values on thousands of rows do. The dataset
drifts when at least `DRIFT_SHARE` of the features do (Evidently's default rule).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

import pandas as pd

# Importing this module runs covertype/monitor/__init__.py first: DO_NOT_TRACK is set
# before `_evidently` imports Evidently.
from covertype import schema

DRIFT_SHARE = 0.5


@dataclass(frozen=True)
class FeatureDrift:
    score: float
    test: str  # Evidently's method, e.g. "Wasserstein distance (normed)"
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class Drift:
    dataset_drift: bool
    drifted_features: int
    features: int
    share: float
    threshold: float  # the share of drifted features that makes dataset drift
    reference_rows: int
    current_rows: int
    feature_scores: dict[str, FeatureDrift]
    html: str  # Evidently's report, self-contained

    def summary(self) -> str:
        counts = f"{self.drifted_features} of {self.features} features drifted"
        if self.dataset_drift:
            return f"drift ({counts}, share {self.share:.2f} ≥ {self.threshold:g})"
        return f"no drift ({counts}, share {self.share:.2f} < {self.threshold:g})"

    def scores_json(self) -> str:
        return json.dumps({name: asdict(f) for name, f in self.feature_scores.items()})


def _evidently():
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        # Evidently 0.7 imports this pandas 2 helper at import time (for a legacy column-type
        # test we never run); pandas 3 removed it. The same answer for what it is given.
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    return DataDefinition, Dataset, Report, DataDriftPreset


def compare(reference: pd.DataFrame, current: pd.DataFrame, drift_share=DRIFT_SHARE) -> Drift:
    """Evidently's data drift of `current` against `reference` on the 12 features (other
    columns, the label too, are ignored). ValueError when either has no rows."""
    for name, rows in (("reference", reference), ("current", current)):
        if len(rows) == 0:
            raise ValueError(f"drift needs rows to compare; the {name} rows are empty")
    with warnings.catch_warnings():
        # Evidently 0.7 on pandas 3 and Litestar warns of deprecations in its own code.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # At 1,000 reference rows or fewer, a category the reference lacks makes scipy's
        # chi-square divide by zero: p-value 0, and Evidently counts the feature drifted.
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        return _evidently_drift(reference, current, drift_share)


def _evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, drift_share: float) -> Drift:
    DataDefinition, Dataset, Report, DataDriftPreset = _evidently()
    definition = DataDefinition(
        numerical_columns=list(schema.NUMERIC), categorical_columns=list(schema.CATEGORICAL)
    )

    def dataset(rows: pd.DataFrame):
        frame = rows[list(schema.FEATURES)].astype(
            {n: "int64" for n in schema.NUMERIC} | {c: "str" for c in schema.CATEGORICAL}
        )
        return Dataset.from_pandas(frame, data_definition=definition)

    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
    snapshot = report.run(dataset(current), dataset(reference))
    result = snapshot.dict()
    failed = {
        test["metric_config"]["metric_id"]
        for test in result["tests"]
        if str(getattr(test["status"], "value", test["status"])) == "FAIL"
    }
    features: dict[str, FeatureDrift] = {}
    dataset_drift, count, share = False, 0, 0.0
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
            dataset_drift = metric["id"] in failed
        elif config["type"].endswith(":ValueDrift"):
            features[config["column"]] = FeatureDrift(
                score=float(metric["value"]),
                test=str(config["method"]),
                threshold=float(config["threshold"]),
                drifted=metric["id"] in failed,
            )
    return Drift(
        dataset_drift=dataset_drift,
        drifted_features=count,
        features=len(features),
        share=share,
        threshold=drift_share,
        reference_rows=len(reference),
        current_rows=len(current),
        feature_scores={name: features[name] for name in schema.FEATURES},
        html=snapshot.get_html_str(as_iframe=False),
    )
