"""The data layer: the 10 batches the source API serves from the real rows, in each order it
supports, as ingestion receives them (course format: 13 strings a row) and checks them.

On a machine without COVERTYPE_SOURCE_DATA the same expectations run on the generated
fallback (40,000 rows drawn uniformly inside the schema's ranges): they then check the
partition and the conversion, not the real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from covertype import dataset, schema, source


@dataclass(frozen=True)
class Served:
    """One batch: which rows of the data it holds, as served, as ingest's validation sees it."""

    number: int  # 1..10
    positions: np.ndarray  # in the real frame
    rows: list[list[str]]  # what /data answers, in the course format
    checked: schema.Validated


@pytest.fixture(scope="session", params=list(source.ORDERS))
def batches(request, real_frame) -> list[Served]:
    """The batches of one order (COVERTYPE_SOURCE_ORDER); each test runs once per order."""
    served = []
    for number, positions in enumerate(source.partition(real_frame, request.param), 1):
        rows = dataset.to_course_rows(real_frame.iloc[positions])
        served.append(Served(number, positions, rows, schema.validate_rows(rows)))
    return served
