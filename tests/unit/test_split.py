"""The training data: stable shares by row key, lineage hashes, what cannot be trained on."""

import numpy as np
import pytest

from covertype import db, schema
from covertype.settings import Settings
from covertype.train import TrainingError, load_rows, split
from covertype.train.data import check_trainable, content_hash
from tests.support.data import fill_data_db


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"COVERTYPE_DATA_DB_URL": f"sqlite:///{tmp_path / 'd.db'}"})


def test_holdout_rows_stay_held_out_as_data_grows(settings, real_frame):
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=1)
    engine = db.make_engine(settings.data_db)
    held_before = set(split(load_rows(engine), settings).holdout.keys)
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=1, start=3000)
    after = load_rows(engine)
    shares = split(after, settings)
    held_after = set(shares.holdout.keys)
    assert held_before < held_after  # still held out, and new rows joined
    assert not held_after & set(shares.validation.keys)
    assert 0.15 < len(shares.holdout) / len(after) < 0.25  # COVERTYPE_HOLDOUT_PERCENT = 20
    rest = len(shares.train) + len(shares.validation)
    assert len(shares.validation) / rest == pytest.approx(0.2, abs=0.05)
    engine.dispose()


def test_the_shares_part_the_rows_and_each_row_keeps_its_share(settings, real_frame):
    fill_data_db(settings.data_db, real_frame, rows=2000, batches=2)
    frame = load_rows(db.make_engine(settings.data_db))
    whole = split(frame, settings)
    shares = (whole.train, whole.validation, whole.holdout)
    keys = [set(share.keys) for share in shares]
    assert sum(len(k) for k in keys) == len(frame) and set.union(*keys) == set(frame["row_key"])
    for share in shares:  # features, labels and keys of the same rows, in the same order
        assert list(share.X.columns) == list(schema.FEATURES)
        assert len(share.X) == len(share.y) == len(share.keys)
    rows = frame.set_index("row_key").loc[whole.holdout.keys]
    assert (rows[schema.LABEL].to_numpy() == whole.holdout.y).all()
    # A row's share depends on its key alone, not on which other rows are there.
    part = split(frame.iloc[::3], settings)
    assert set(part.holdout.keys) == keys[2] & set(frame.iloc[::3]["row_key"])
    assert set(part.validation.keys) == keys[1] & set(frame.iloc[::3]["row_key"])


def test_content_hash_is_of_the_set_of_rows():
    assert content_hash(["b", "a"]) == content_hash(["a", "b"])
    assert content_hash(["a", "b"]) != content_hash(["a", "c"])


def test_no_rows_or_a_single_class_cannot_be_trained_on(settings):
    with pytest.raises(TrainingError, match=r"cover_type in the data DB sqlite:///.* has no rows"):
        check_trainable(np.array([], dtype=int), settings)
    with pytest.raises(TrainingError, match=r"has 3 rows of a single class \(Krummholz\)"):
        check_trainable(np.array([6, 6, 6]), settings, "the training share")
    check_trainable(np.array([6, 0]), settings)
