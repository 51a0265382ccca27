"""The source's drift scenarios: how `COVERTYPE_SOURCE_ORDER` cuts the real rows into batches."""

import itertools

import numpy as np
import pandas as pd
import pytest

from covertype import schema, source


def test_every_order_cuts_all_rows_into_ten_equal_batches(real_frame):
    for order in source.ORDERS:
        batches = source.partition(real_frame, order)
        assert len(batches) == 10
        assert max(map(len, batches)) - min(map(len, batches)) <= 1
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(real_frame)))


def test_random_is_the_course_split():
    frame = pd.DataFrame({"Elevation": np.arange(1000)})  # unused by random
    old = np.array_split(np.random.default_rng(source.PARTITION_SEED).permutation(1000), 10)
    new = source.partition(frame, "random")
    assert all(np.array_equal(a, b) for a, b in zip(old, new, strict=True))


def test_elevation_bands_rise_batch_by_batch(real_frame):
    elevation = real_frame["Elevation"].to_numpy()
    bands = [elevation[b] for b in source.partition(real_frame, "elevation")]
    for lower, higher in itertools.pairwise(bands):
        assert lower.max() <= higher.min()
    assert bands[0].min() == elevation.min() and bands[-1].max() == elevation.max()


def test_wilderness_areas_come_one_after_another(real_frame):
    codes = real_frame[schema.WILDERNESS].map(schema.WILDERNESS_AREAS.index).to_numpy()
    areas = [np.unique(codes[b]) for b in source.partition(real_frame, "wilderness")]
    for earlier, later in itertools.pairwise(areas):
        assert earlier.max() <= later.min()
    assert areas[0].tolist() == [0] and areas[-1].max() == 3  # Rawah first, Cache last


def test_a_batch_is_not_sorted_within(real_frame):
    # Ties keep the seeded random order, so a batch is not ordered by row or by elevation.
    band = source.partition(real_frame, "elevation")[4]
    assert not np.all(np.diff(band) > 0)


def test_an_unknown_order_names_the_allowed_ones(real_frame):
    with pytest.raises(ValueError, match="order must be one of random, elevation, wilderness"):
        source.partition(real_frame, "sideways")
