"""The rows a training sees: read from the data DB, split by row key, described for lineage.

The split depends on each row's key alone (two hash buckets of it), so a row stays in its
share as data grows: a held-out row is never trained on by a later run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import sqlalchemy as sa

from covertype import db, schema
from covertype.settings import Settings, safe_url
from covertype.train import TrainingError


@dataclass(frozen=True)
class Share:
    """Some rows as stored (13 fields, row key, batch number: what a snapshot keeps), and
    what a fit reads of them: the 12 features, the labels, the row keys."""

    rows: pd.DataFrame

    @cached_property
    def X(self) -> pd.DataFrame:
        return self.rows[list(schema.FEATURES)]

    @cached_property
    def y(self) -> np.ndarray:
        return self.rows[schema.LABEL].to_numpy()

    @property
    def keys(self) -> pd.Series:
        return self.rows["row_key"]

    def __len__(self) -> int:
        return len(self.rows)

    def __add__(self, other: Share) -> Share:
        return Share(pd.concat([self.rows, other.rows]))


@dataclass(frozen=True)
class Split:
    """Training rows fit the candidates, validation rows choose one, holdout rows judge it."""

    train: Share
    validation: Share
    holdout: Share


def load_rows(engine: sa.Engine) -> pd.DataFrame:
    """Every stored row of `cover_type`: the 13 fields, row_key and batch_number."""
    columns = [db.cover_type.c[name] for name in (*schema.FIELDS, "row_key", "batch_number")]
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(*columns).order_by(db.cover_type.c.row_key), conn)
    for name in schema.CATEGORICAL:
        frame[name] = frame[name].astype(str)
    for f in (*schema.NUMERIC_FIELDS, schema.LABEL_FIELD):
        frame[f.name] = frame[f.name].astype(np.int64)
    return frame


def read_rows(settings: Settings) -> pd.DataFrame:
    """Every row of the settings' data DB; TrainingError if there is nothing to learn from."""
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        frame = load_rows(engine)
    finally:
        engine.dispose()
    check_trainable(frame[schema.LABEL].to_numpy(), settings)
    return frame


def check_trainable(labels: np.ndarray, settings: Settings, what: str = "cover_type") -> None:
    """TrainingError unless there are rows of at least two classes."""
    url = safe_url(settings.data_db)
    if len(labels) == 0:
        raise TrainingError(f"{what} in the data DB {url} has no rows; run `covertype ingest`")
    if len(np.unique(labels)) < 2:
        raise TrainingError(
            f"{what} in the data DB {url} has {len(labels)} rows of a single class "
            f"({schema.COVER_TYPE_NAMES[labels[0]]}); at least 2 are needed"
        )


def bucket(keys: pd.Series, part: int) -> pd.Series:
    """0..99 from the `part`-th 8 hex digits of each row key: the same for a row every time."""
    return keys.str[8 * part : 8 * part + 8].apply(int, base=16) % 100


def split(frame: pd.DataFrame, settings: Settings) -> Split:
    """Holdout and validation shares chosen from the row key alone, so they are stable."""
    holdout = bucket(frame["row_key"], 0) < settings.train.holdout_percent
    validation = ~holdout & (bucket(frame["row_key"], 1) < settings.train.validation_percent)
    return Split(
        train=Share(frame[~holdout & ~validation]),
        validation=Share(frame[validation]),
        holdout=Share(frame[holdout]),
    )


def content_hash(keys: Sequence[str]) -> str:
    """One hash of a set of rows (their row keys, sorted)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def lineage_tags(frame: pd.DataFrame, rows: Split, settings: Settings) -> dict[str, str]:
    """What the run saw, as MLflow tags: row counts, batches, content hashes, the DB."""
    return {
        "data.rows": str(len(frame)),
        "data.batches": ",".join(str(b) for b in sorted(frame["batch_number"].unique())),
        "data.content_hash": content_hash(frame["row_key"]),
        "data.train_rows": str(len(rows.train)),
        "data.validation_rows": str(len(rows.validation)),
        "data.holdout_rows": str(len(rows.holdout)),
        "data.holdout_hash": content_hash(rows.holdout.keys),
        "data.db": safe_url(settings.data_db),
    }
