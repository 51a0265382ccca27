from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, insert

from covertype.db.tables import predictions


class Prediction(NamedTuple):
    """One answered record, as the prediction log stores it."""

    features: Mapping[str, object]  # the 12 fields as normalised by `schema`
    cover_type: int
    model_version: str
    latency_ms: float
    predicted_at: datetime
    request_id: str


def insert_predictions(engine: Engine, records: Sequence[Prediction]) -> int:
    """Store answered records in `predictions` in one transaction and one executemany of
    plain tuples; how many were stored.

    The API's log writer runs this beside the requests, holding the GIL: SQLAlchemy's
    per-row parameter handling cost ~15 µs a row (~30 ms for a flush of 2,000, a stall of
    every request of the worker meanwhile); the statement compiled once per dialect and
    the columns' own bind processors applied by hand leave the DB-API's executemany
    (sqlite3 in C, pymysql into multi-row INSERTs) ~4 µs a row (measured here)."""
    if not records:
        return 0
    sql, order, processors = _prediction_insert(engine.dialect)
    pick = operator.itemgetter(*order) if order else None  # positional: a tuple in C
    rows = []
    for r in records:
        values = {
            **r.features,
            "predicted_cover_type": r.cover_type,
            "model_version": r.model_version,
            "latency_ms": r.latency_ms,
            "predicted_at": r.predicted_at,
            "request_id": r.request_id,
        }
        for name, process in processors:
            values[name] = process(values[name])
        rows.append(pick(values) if pick else values)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, rows)
    return len(rows)


@functools.cache
def _prediction_insert(dialect) -> tuple[str, tuple[str, ...] | None, tuple]:
    """The INSERT's SQL for `dialect`, its parameters' order (None: named) and the bind
    processors of the columns that have one (e.g. SQLite's datetime → text)."""
    columns = [c for c in predictions.columns if c.name != "id"]
    compiled = insert(predictions).compile(dialect=dialect, column_keys=[c.name for c in columns])
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    processors = []
    for column in columns:
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((column.name, process))
    return compiled.string, order, tuple(processors)
