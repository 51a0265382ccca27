"""The fast path on pipelines fitted here on real rows (no MLflow): each family the training
builds is reproduced exactly; a step it does not know leaves the pipeline to serve.

The same equality on pipelines logged to and loaded from the registry (skops) is checked
in tests/integration/test_serve.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covertype import schema
from covertype.serve.fast import FastPredictor, compile_predictor
from covertype.testing import records_of, training_frame
from covertype.train import build_pipeline, fit_pipeline

# Small models: the unit layer must stay fast.
FAMILIES = {
    "lightgbm": {"n_estimators": 20, "num_leaves": 15, "learning_rate": 0.1, "num_threads": 1},
    "extra_trees": {
        "n_estimators": 20,
        "max_features": 0.5,
        "min_samples_leaf": 1,
        "max_samples": 0.5,
    },
    "svm": {"C": 1.0, "gamma": 0.1, "n_components": 100},
}
TRAIN_ROWS = slice(0, 2000)
CHECK_ROWS = slice(20000, 23000)  # never trained on


@pytest.fixture(scope="module")
def train_rows(real_frame) -> tuple[pd.DataFrame, np.ndarray]:
    rows = real_frame.iloc[TRAIN_ROWS]
    return training_frame(records_of(rows)), rows[schema.LABEL].to_numpy()


@pytest.fixture(scope="module")
def check_records(real_frame) -> list[dict]:
    return records_of(real_frame.iloc[CHECK_ROWS])


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_path_equals_the_pipeline_for_every_family(family, train_rows, check_records):
    pipeline = fit_pipeline(family, FAMILIES[family], *train_rows, seed=0)
    predictor, note = compile_predictor(pipeline)
    assert isinstance(predictor, FastPredictor) and note is None

    truth = [int(v) for v in pipeline.predict(training_frame(check_records))]
    assert predictor.predict_many(check_records) == truth
    assert [predictor.predict_one(r) for r in check_records[:300]] == truth[:300]
    assert predictor.predict_many([]) == []
    assert len(set(truth)) >= 3  # real rows, several classes


def test_a_pipeline_the_fast_path_does_not_know_is_served_by_the_pipeline(
    train_rows, check_records
):
    from sklearn.preprocessing import MinMaxScaler

    pipeline = build_pipeline("svm", FAMILIES["svm"] | {"n_components": 50}, seed=0)
    encode = pipeline.named_steps["encode"]
    encode.transformers = [
        ("numeric", MinMaxScaler(), encode.transformers[0][2]),
        encode.transformers[1],
    ]
    pipeline.fit(*train_rows)

    predictor, note = compile_predictor(pipeline)
    assert predictor.kind == "pipeline" and note == "encoder step 'numeric' is a MinMaxScaler"
    checks = check_records[:500]
    expected = [int(v) for v in pipeline.predict(training_frame(checks))]
    assert predictor.predict_many(checks) == expected
    assert [predictor.predict_one(r) for r in checks[:50]] == expected[:50]
