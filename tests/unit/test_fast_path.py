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
from covertype.serve.onnx_trees import ONNX_TOLERANCE
from covertype.serve.predictor_choice import EXACT, compile_predictor
from covertype.train import build_pipeline, fit_pipeline
from tests.support.data import records_of, training_frame

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


PARITY_ROWS = slice(20000, 30000)  # 10,000 real rows, never trained on
SERVED_BY = {"lightgbm": "onnx", "extra_trees": "fast", "svm": "fast"}


@pytest.fixture(scope="module")
def pipelines(train_rows) -> dict:
    return {
        family: fit_pipeline(family, FAMILIES[family], *train_rows, seed=0) for family in FAMILIES
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_the_chosen_predictor_equals_the_pipeline_on_10000_real_rows(family, pipelines, real_frame):
    pipeline = pipelines[family]
    records = records_of(real_frame.iloc[PARITY_ROWS])
    predictor, note = compile_predictor(pipeline)
    assert predictor.kind == SERVED_BY[family] and note is None

    frame = training_frame(records)
    truth = [int(v) for v in pipeline.predict(frame)]
    labels, proba = predictor.classify_many(records)
    assert labels == truth  # the same class for every row
    assert [predictor.predict_one(r) for r in records[:300]] == truth[:300]
    assert predictor.predict_many([]) == []
    assert len(set(truth)) >= 3  # real rows, several classes
    if family == "svm":  # LinearSVC: no probabilities
        assert proba is None and predictor.classify_one(records[0])[1] is None
        return
    expected = pipeline.predict_proba(frame)
    tolerance = ONNX_TOLERANCE if predictor.kind == "onnx" else EXACT
    assert np.abs(proba - expected).max() <= tolerance
    ones = np.vstack([predictor.classify_one(r)[1] for r in records[:300]])
    assert np.abs(ones - expected[:300]).max() <= tolerance
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_the_booster_serves_when_onnx_is_not_wanted_or_misses_the_tolerance(
    pipelines, check_records
):
    pipeline = pipelines["lightgbm"]
    wanted, note = compile_predictor(pipeline, prefer="fast")
    assert wanted.kind == "fast" and note == "COVERTYPE_SERVE_PREDICTOR=fast"

    # A tolerance of 0: float32 trees differ from LightGBM's float64 in the 7th digit.
    strict, note = compile_predictor(pipeline, onnx_tolerance=0.0)
    assert strict.kind == "fast"
    assert note.startswith("onnx not used: probabilities differ from the pipeline's by up to")
    truth = [int(v) for v in pipeline.predict(training_frame(check_records))]
    assert strict.predict_many(check_records) == truth
    proba = strict.classify_many(check_records)[1]
    assert np.abs(proba - pipeline.predict_proba(training_frame(check_records))).max() <= EXACT

    served, note = compile_predictor(pipeline, prefer="pipeline")
    assert served.kind == "pipeline" and note == "COVERTYPE_SERVE_PREDICTOR=pipeline"
    assert served.predict_many(check_records[:200]) == truth[:200]


def test_the_onnx_file_is_converted_once_per_model_folder(pipelines, tmp_path):
    first, _ = compile_predictor(pipelines["lightgbm"], cache_dir=tmp_path)
    (kept,) = tmp_path.glob("*.onnx")
    written = kept.stat().st_mtime_ns
    second, _ = compile_predictor(pipelines["lightgbm"], cache_dir=tmp_path)
    assert first.kind == second.kind == "onnx"
    assert kept.stat().st_mtime_ns == written  # read back, not converted again


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
    assert predictor.kind == "pipeline"
    assert note == "fast path not used: encoder step 'numeric' is a MinMaxScaler"
    checks = check_records[:500]
    expected = [int(v) for v in pipeline.predict(training_frame(checks))]
    assert predictor.predict_many(checks) == expected
    assert [predictor.predict_one(r) for r in checks[:50]] == expected[:50]
