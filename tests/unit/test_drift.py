"""Evidently's data drift on real rows (small samples), read into plain numbers."""

import os

import pytest

from covertype import schema
from covertype.monitor import drift

# Above 1,000 reference rows Evidently uses distances (what the platform's 5,000 get).
REFERENCE, CURRENT = 1_500, 600


@pytest.fixture(scope="module")
def rawah(real_frame):
    return real_frame[real_frame[schema.WILDERNESS] == "Rawah"].sample(
        REFERENCE + CURRENT, random_state=0
    )


@pytest.fixture(scope="module")
def same(rawah):
    return drift.compare(rawah.iloc[:REFERENCE], rawah.iloc[REFERENCE:])


def test_same_distribution_is_no_drift(same):
    result = same
    assert not result.dataset_drift
    assert result.features == 12 and list(result.feature_scores) == list(schema.FEATURES)
    assert result.share < 0.5 and result.drifted_features == round(result.share * 12)
    assert (result.reference_rows, result.current_rows) == (REFERENCE, CURRENT)
    elevation = result.feature_scores["Elevation"]
    assert elevation.test == "Wasserstein distance (normed)" and elevation.threshold == 0.1
    assert result.feature_scores[schema.SOIL].test == "Jensen-Shannon distance"
    assert result.summary().startswith("no drift (")
    assert "<html" in result.html.lower()


def test_another_wilderness_area_drifts(rawah, real_frame):
    commanche = real_frame[real_frame[schema.WILDERNESS] == "Commanche"].sample(
        CURRENT, random_state=1
    )
    result = drift.compare(rawah.iloc[:REFERENCE], commanche)
    assert result.dataset_drift and result.share >= 0.5
    assert result.feature_scores[schema.WILDERNESS].drifted
    assert result.feature_scores[schema.WILDERNESS].score > 0.5  # no Commanche in the reference
    drifted = [name for name, f in result.feature_scores.items() if f.drifted]
    assert len(drifted) == result.drifted_features
    assert all(f.drifted == (f.score >= f.threshold) for f in result.feature_scores.values())
    assert result.summary().startswith(f"drift ({len(drifted)} of 12 features drifted, share ")


def test_a_batch_of_one_class_is_still_compared(rawah):
    spruce = rawah[rawah[schema.LABEL] == 0]
    assert len(spruce) > 200
    result = drift.compare(rawah.iloc[:REFERENCE], spruce.iloc[-200:])
    assert result.features == 12 and result.current_rows == 200  # features compared as usual


def test_no_rows_is_a_clear_error(rawah):
    with pytest.raises(ValueError, match="the current rows are empty"):
        drift.compare(rawah, rawah.iloc[:0])
    with pytest.raises(ValueError, match="the reference rows are empty"):
        drift.compare(rawah.iloc[:0], rawah)


def test_evidently_sends_no_telemetry(same):
    from evidently.telemetry import event_logger

    assert os.environ["DO_NOT_TRACK"] == "1"
    assert not event_logger.is_enabled()
