"""Load the UCI Covertype rows and convert them to the 13-field course format.

The UCI layout has 10 numeric columns, 4 one-hot wilderness flags, 40 one-hot soil flags
and Cover_Type 1..7. The course format has one wilderness name, one `C`+ELU soil code and a
label 0..6 (see `schema`). Conversion of the full file takes seconds, so the converted frame
is cached under `COVERTYPE_HOME/cache`, keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from covertype import schema
from covertype.settings import Settings

log = logging.getLogger(__name__)

UCI_COLUMNS = 10 + len(schema.WILDERNESS_AREAS) + len(schema.SOIL_TYPES) + 1  # 55
CACHE_VERSION = "1"  # bump when the converted format changes


def from_uci(features: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """UCI arrays (n×54 features, labels 1..7) → course-format frame with typed columns."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[1] != UCI_COLUMNS - 1:
        raise ValueError(f"expected {UCI_COLUMNS - 1} UCI feature columns, got {features.shape}")
    wilderness = _one_hot_index(features[:, 10:14], "Wilderness_Area")
    soil = _one_hot_index(features[:, 14:54], "Soil_Type")
    bad_labels = np.flatnonzero((labels < 1) | (labels > len(schema.COVER_TYPE_NAMES)))
    if bad_labels.size:
        raise ValueError(f"row {bad_labels[0]}: Cover_Type {labels[bad_labels[0]]} is not 1..7")

    frame = pd.DataFrame(
        {
            field.name: features[:, i].astype(field.dtype)
            for i, field in enumerate(schema.NUMERIC_FIELDS)
        }
    )
    frame[schema.WILDERNESS] = pd.Categorical.from_codes(wilderness, schema.WILDERNESS_AREAS)
    frame[schema.SOIL] = pd.Categorical.from_codes(soil, schema.SOIL_TYPES)
    frame[schema.LABEL] = (labels - 1).astype(schema.LABEL_FIELD.dtype)
    return frame


def _one_hot_index(flags: np.ndarray, name: str) -> np.ndarray:
    counts = flags.sum(axis=1)
    wrong = np.flatnonzero(counts != 1)
    if wrong.size:
        raise ValueError(
            f"row {wrong[0]}: {name}1..{flags.shape[1]} must have exactly one flag set"
        )
    return flags.argmax(axis=1)


def read_uci_file(path: Path) -> pd.DataFrame:
    """Read a UCI 55-column CSV (.csv or .csv.gz; with or without header line)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt") as handle:
        first = handle.readline()
    has_header = not first.split(",")[0].strip().lstrip("-").isdigit()
    raw = pd.read_csv(path, header=0 if has_header else None, dtype=np.int32, engine="c")
    if raw.shape[1] != UCI_COLUMNS:
        raise ValueError(f"{path}: expected {UCI_COLUMNS} columns (UCI layout), got {raw.shape[1]}")
    values = raw.to_numpy()
    return from_uci(values[:, :-1], values[:, -1])


def fetch_sklearn() -> pd.DataFrame:
    """The full 581,012-row dataset through scikit-learn's loader (downloads once)."""
    from sklearn.datasets import fetch_covtype

    bunch = fetch_covtype(download_if_missing=True)
    return from_uci(bunch.data.astype(np.int32), bunch.target)


def load_dataset(settings: Settings) -> pd.DataFrame:
    """The rows the source API serves, converted, from the cache when it is fresh."""
    path = settings.source.data
    if path is not None:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"COVERTYPE_SOURCE_DATA={path} is not a file")
        stat = path.stat()
        key = f"{CACHE_VERSION}|{path}|{stat.st_size}|{stat.st_mtime_ns}"
    else:
        key = f"{CACHE_VERSION}|sklearn.fetch_covtype"
    cache = settings.cache_dir / f"dataset-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pkl"
    if cache.is_file():
        log.info("dataset loaded from cache", extra={"cache": str(cache)})
        return pd.read_pickle(cache)

    log.info("converting dataset", extra={"source": str(path or "sklearn.fetch_covtype")})
    frame = read_uci_file(path) if path is not None else fetch_sklearn()
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a reader never sees half a cache file.
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    os.close(fd)
    frame.to_pickle(tmp)
    os.replace(tmp, cache)
    log.info("dataset cached", extra={"cache": str(cache), "rows": len(frame)})
    return frame


def to_course_rows(frame: pd.DataFrame) -> list[list[str]]:
    """Rows as the course API serves them: every value a string, FIELDS order."""
    return frame[list(schema.FIELDS)].astype(str).to_numpy().tolist()
