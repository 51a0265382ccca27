"""Rows for the tests: generated UCI files, the real rows as records and frames, data DBs
filled through ingest, settings to train into a registry."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from covertype import schema
from covertype.settings import Settings


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON records (ints, and the canonical strings)."""
    rows = frame[list(schema.FEATURES)]
    numeric = rows[list(schema.NUMERIC)].astype(int).to_dict("records")
    categorical = rows[list(schema.CATEGORICAL)].astype(str).to_dict("records")
    return [n | c for n, c in zip(numeric, categorical, strict=True)]


def training_frame(records: list[dict]) -> pd.DataFrame:
    """Records typed as `train.load_rows` types the training rows (a pipeline's truth, built
    without the serving code under test)."""
    frame = pd.DataFrame(records, columns=list(schema.FEATURES))
    for name in schema.NUMERIC:
        frame[name] = frame[name].astype(np.int64)
    for name in schema.CATEGORICAL:
        frame[name] = frame[name].astype(str)
    return frame


def uci_frame(rows: int, seed: int) -> pd.DataFrame:
    """Random rows in the UCI 55-column layout, every value inside the schema's ranges."""
    rng = np.random.default_rng(seed)
    columns = {f.name: rng.integers(f.low, f.high + 1, rows) for f in schema.NUMERIC_FIELDS}
    wilderness = rng.integers(0, 4, rows)
    soil = rng.integers(0, 40, rows)
    for i in range(4):
        columns[f"Wilderness_Area{i + 1}"] = (wilderness == i).astype(int)
    for i in range(40):
        columns[f"Soil_Type{i + 1}"] = (soil == i).astype(int)
    columns["Cover_Type"] = rng.integers(1, 8, rows)
    return pd.DataFrame(columns)


def write_uci_file(path: Path, rows: int, seed: int, header: bool = True) -> Path:
    uci_frame(rows, seed).to_csv(path, index=False, header=header)
    return path


def real_frame(source_data: Path, home: Path) -> pd.DataFrame:
    """The rows of a covtype file in the course format (conversion cached in `home`)."""
    from covertype import dataset

    return dataset.load_dataset(
        Settings.from_env({"COVERTYPE_HOME": home, "COVERTYPE_SOURCE_DATA": source_data})
    )


def fill_data_db(
    url: str,
    frame: pd.DataFrame,
    rows: int,
    batches: int = 3,
    start: int = 0,
    batch_number: int = 1,
):
    """Store `rows` rows of `frame` (from `start`) through ingest, split into `batches`
    numbered from `batch_number`."""
    from covertype import dataset, db, ingest

    engine = db.make_engine(url)
    db.ensure_schema(engine)
    course = dataset.to_course_rows(frame.iloc[start : start + rows])
    size = -(-rows // batches)
    for b in range(batches):
        batch = ingest.Batch(7, batch_number + b, course[b * size : (b + 1) * size])
        ingest.store_batch(engine, batch)
    engine.dispose()


def training_settings(
    folder: Path, tracking_uri: str, prefix: str = "covertype", env: dict | None = None
) -> Settings:
    """Settings to train into a registry: state and a SQLite data DB in `folder`, a model and
    an experiment of their own (unique names, so many users share one MLflow server); `env`:
    more variables."""
    return Settings.from_env(
        {
            "COVERTYPE_HOME": folder / "home",
            "COVERTYPE_DATA_DB_URL": f"sqlite:///{folder / 'data.db'}",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "COVERTYPE_MODEL_NAME": f"{prefix}-{uuid.uuid4().hex[:6]}",
            "COVERTYPE_EXPERIMENT_NAME": f"{prefix}-{uuid.uuid4().hex[:6]}",
        }
        | (env or {})
    )
