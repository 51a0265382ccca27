"""What a reproduction compares, on real rows: the rows' digest, the Parquet snapshot's round
trip, the search's draws, the data DB's differences and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from covertype.reproduce import compare
from covertype.reproduce.rows import DataDifference
from covertype.train import snapshot
from covertype.train.search import sample_candidates


@pytest.fixture
def rows(real_frame):
    frame = real_frame.head(500).copy()
    frame["row_key"] = [f"{i:064x}" for i in range(len(frame))]
    frame["batch_number"] = np.repeat([1, 2], 250)
    return frame


def test_the_digest_names_the_rows_exactly(rows):
    digest = snapshot.rows_digest(rows)
    assert snapshot.rows_digest(rows.copy()) == digest
    for name in ("Elevation", "Soil_Type", "Cover_Type"):
        edited = rows.copy()
        edited.loc[edited.index[7], name] = edited[name].iloc[8]
        assert edited[name].iloc[7] != rows[name].iloc[7]
        assert snapshot.rows_digest(edited) != digest, name
    assert snapshot.rows_digest(rows.iloc[1:]) != digest  # a row less
    assert snapshot.rows_digest(rows.iloc[::-1]) != digest  # another order: another fit
    moved = rows.assign(batch_number=3)
    assert snapshot.rows_digest(moved) == digest  # the same data ingested in another batch


def test_a_snapshot_reads_back_as_the_rows_it_stored(rows):
    typed = rows.astype({"Elevation": np.int64})
    back = snapshot.read_parquet(snapshot.parquet_bytes(typed))
    assert snapshot.rows_digest(back) == snapshot.rows_digest(typed)
    assert list(back.columns) == list(snapshot.COLUMNS)


def test_the_draws_are_drawn_again_from_the_seed():
    drawn = sample_candidates(4, ["lightgbm", "svm"], seed=3)
    manifest = {
        "search": {
            "drawn_by": "random",
            "n_iter": 4,
            "families": ["lightgbm", "svm"],
            "seed": 3,
            "candidates": [{"family": c.family, "params": c.params} for c in drawn],
        },
        "winner": {"family": "svm", "params": drawn[1].params},
    }
    [same, _] = compare.draws(manifest)
    assert same.same
    manifest["search"]["candidates"][2]["params"]["num_leaves"] = 5
    [changed, _] = compare.draws(manifest)
    assert not changed.same and not compare.identical([changed])


def test_predictions_differ_by_class_or_beyond_the_tolerance():
    classes, scores = np.array([0, 1, 2]), np.eye(3)
    checks, numbers = compare.predictions(classes, scores, classes, scores + 1e-12, 1e-9)
    assert compare.identical(checks) and numbers["differing_classes"] == 0
    checks, numbers = compare.predictions(classes, scores, classes, scores + 1e-6, 1e-9)
    assert not compare.identical(checks) and numbers["max_score_difference"] == pytest.approx(1e-6)
    checks, numbers = compare.predictions(classes, scores, np.array([0, 1, 1]), scores, 1e-9)
    assert not compare.identical(checks) and numbers["differing_classes"] == 1


def test_information_checks_never_decide():
    info = compare.Check("numpy", "2.3", "2.4", False, counts=False)
    assert compare.identical([info]) and info.verdict == "differs (info)"
    assert "differs (info)" in compare.table([info])


def test_a_difference_names_its_rows_and_batches():
    assert DataDifference(changed=1, batches=[2]).text() == "1 row changed (batch 2)"
    both = DataDifference(changed=2, missing=3, batches=[1, 4])
    assert both.text() == "2 rows changed and 3 rows missing (batches 1, 4)"
