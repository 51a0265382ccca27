import os

import numpy as np
import pytest

from covertype import dataset, schema
from covertype.settings import Settings
from tests.support.data import uci_frame, write_uci_file


def settings_for(tmp_path, data) -> Settings:
    return Settings.from_env({"COVERTYPE_HOME": tmp_path / "home", "COVERTYPE_SOURCE_DATA": data})


def test_real_file_converts_to_course_format(tmp_path, real_data):
    frame = dataset.load_dataset(settings_for(tmp_path, real_data))
    assert list(frame.columns) == list(schema.FIELDS)
    assert set(frame[schema.WILDERNESS].unique()) <= set(schema.WILDERNESS_AREAS)
    assert set(frame[schema.SOIL].unique()) <= set(schema.SOIL_TYPES)
    assert frame[schema.LABEL].between(0, 6).all()
    clean, rejected, texts = schema.validate_rows(dataset.to_course_rows(frame.head(5000)))
    assert rejected == [] and len(clean) == 5000
    assert texts == [",".join(r) for r in dataset.to_course_rows(frame.head(5000))]
    if len(frame) == 403_383:  # the shared file: its SOURCE.md gives the counts
        counts = frame[schema.LABEL].value_counts().sort_index().tolist()
        assert counts == [145850, 195365, 25030, 2564, 7262, 12547, 14765]
        first = dataset.to_course_rows(frame.head(1))[0]
        assert first[:10] == ["3156", "287", "7", "579", "9", "2844", "200", "240", "179", "283"]
        assert first[10:] == ["Commanche", "C7756", "0"]


def test_one_hot_columns_map_to_names_and_codes(tmp_path):
    raw = uci_frame(300, seed=5)
    path = tmp_path / "raw.csv"
    raw.to_csv(path, index=False, header=False)  # the original covtype.data has no header
    frame = dataset.read_uci_file(path)
    wilderness = raw[[f"Wilderness_Area{i}" for i in range(1, 5)]].to_numpy().argmax(1)
    soil = raw[[f"Soil_Type{i}" for i in range(1, 41)]].to_numpy().argmax(1)
    assert frame[schema.WILDERNESS].tolist() == [schema.WILDERNESS_AREAS[i] for i in wilderness]
    assert frame[schema.SOIL].tolist() == [schema.SOIL_TYPES[i] for i in soil]
    assert (frame[schema.LABEL].to_numpy() == raw["Cover_Type"].to_numpy() - 1).all()
    assert (frame["Elevation"].to_numpy() == raw["Elevation"].to_numpy()).all()


def test_row_without_exactly_one_soil_flag_is_refused(tmp_path):
    raw = uci_frame(10, seed=6)
    raw.loc[7, "Soil_Type3"] = 1 - raw.loc[7, "Soil_Type3"]
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"row 7: Soil_Type1\.\.40 must have exactly one flag set"):
        dataset.read_uci_file(path)


def test_wrong_column_count_is_refused(tmp_path):
    path = tmp_path / "short.csv"
    uci_frame(5, seed=7).iloc[:, :50].to_csv(path, index=False)
    with pytest.raises(ValueError, match="expected 55 columns"):
        dataset.read_uci_file(path)


def test_missing_file_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="COVERTYPE_SOURCE_DATA="):
        dataset.load_dataset(settings_for(tmp_path, tmp_path / "nope.csv"))


def test_converted_frame_is_cached_and_refreshed_when_the_file_changes(tmp_path):
    path = write_uci_file(tmp_path / "d.csv.gz", 500, seed=8)
    settings = settings_for(tmp_path, path)
    first = dataset.load_dataset(settings)
    caches = list(settings.cache_dir.glob("dataset-*.pkl"))
    assert len(caches) == 1
    # A cached frame is what a second load returns (poison the cache to prove it is read).
    poisoned = first.head(3)
    poisoned.to_pickle(caches[0])
    assert len(dataset.load_dataset(settings)) == 3
    # A new file under the same name is converted again.
    write_uci_file(path, 600, seed=9)
    os.utime(path, ns=(1, 1))
    assert len(dataset.load_dataset(settings)) == 600


def test_sklearn_arrays_convert_like_the_file():
    raw = uci_frame(50, seed=10).to_numpy()
    frame = dataset.from_uci(raw[:, :-1].astype(np.float64), raw[:, -1])
    assert len(frame) == 50 and frame[schema.LABEL].max() <= 6
