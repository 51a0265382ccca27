"""The champion and the rows it learned from: what every drift report compares with.

The registry says which rows a version trained on: its tags `trained_batches` and
`trained_at`, its run's `data.rows` (rows the training read) and `data.content_hash`.
Rows are only ever added to `cover_type` and collection runs one at a time, so the rows a
training read are the first `data.rows` of its batches by `ingested_at`; the content hash
confirms it (`Reference.exact`). Of those, the reference keeps the training + validation
share of `covertype.train.data.split` (what the champion was fitted on; the holdout only
judged it) and a seeded sample of `COVERTYPE_DRIFT_REFERENCE_ROWS` (default 5,000: above
Evidently's 1,000-row switch to distance tests, and a report in seconds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from covertype import db, schema
from covertype.monitor import MonitoringError
from covertype.settings import Settings
from covertype.tracking.client import alias_missing
from covertype.train import data

log = logging.getLogger(__name__)
REFERENCE_SEED = 0  # the same sample of a champion's rows for every report


@dataclass(frozen=True)
class Champion:
    model_name: str
    version: str
    run_id: str
    trained_batches: tuple[int, ...]
    trained_at: datetime
    rows: int  # rows its training read from the data DB (every share)
    content_hash: str


@dataclass(frozen=True)
class Reference:
    champion: Champion
    rows: pd.DataFrame  # the sample: 12 features, Cover_Type, row_key
    trained_keys: frozenset[str]  # every row the training read (a batch report skips them)
    learned_rows: int  # training + validation rows before sampling
    exact: bool  # the rows found are exactly those the training read (content hash)


def find_champion(client, settings: Settings) -> Champion | None:
    """The version the alias points to, with what it trained on; None without one.
    MonitoringError when the version lacks the tags `covertype train` puts on it."""
    from mlflow.exceptions import MlflowException

    name, alias = settings.mlflow.model_name, settings.mlflow.model_alias
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if alias_missing(client, name, error):
            return None
        raise
    tags = version.tags
    run_tags = client.get_run(version.run_id).data.tags if version.run_id else {}
    needed = {"trained_batches": tags, "trained_at": tags, "data.rows": run_tags}
    missing = [key for key, where in needed.items() if not where.get(key)]
    if missing:
        raise MonitoringError(
            f"{name} v{version.version} (alias {alias}) lacks {', '.join(missing)}: only "
            "versions registered by `covertype train` say which rows they trained on"
        )
    return Champion(
        model_name=name,
        version=str(version.version),
        run_id=version.run_id,
        trained_batches=tuple(int(b) for b in tags["trained_batches"].split(",")),
        trained_at=datetime.fromisoformat(tags["trained_at"]).astimezone(UTC),
        rows=int(run_tags["data.rows"]),
        content_hash=run_tags.get("data.content_hash", ""),
    )


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows read from the DB with the dtypes the models and Evidently expect."""
    return frame.astype(
        {f.name: np.int64 for f in schema.NUMERIC_FIELDS}
        | {name: str for name in schema.CATEGORICAL}
        | ({schema.LABEL: np.int64} if schema.LABEL in frame else {})
    )


def training_rows(engine: sa.Engine, champion: Champion) -> pd.DataFrame:
    """The rows the champion's training read: 13 fields and row_key, oldest first."""
    table = db.cover_type
    # Stored naive UTC; trained_at has whole seconds and comes after the read.
    until = champion.trained_at.replace(tzinfo=None) + timedelta(seconds=1)
    query = (
        sa.select(*(table.c[name] for name in (*schema.FIELDS, "row_key")))
        .where(table.c.batch_number.in_(champion.trained_batches), table.c.ingested_at < until)
        .order_by(table.c.ingested_at, table.c.row_key)
        .limit(champion.rows)
    )
    with engine.connect() as conn:
        return typed(pd.read_sql(query, conn))


def load_reference(engine: sa.Engine, champion: Champion, settings: Settings) -> Reference:
    """The champion's reference rows (see the module's doc); `rows` may be empty."""
    read = training_rows(engine, champion)
    exact = len(read) == champion.rows and data.content_hash(read["row_key"]) == (
        champion.content_hash
    )
    if not exact:
        log.warning(
            "reference rows differ from the champion's training rows",
            extra={"version": champion.version, "expected": champion.rows, "found": len(read)},
        )
    rows = data.split(read, settings)
    learned = rows.train + rows.validation
    frame = learned.X.assign(**{schema.LABEL: learned.y, "row_key": learned.keys.to_numpy()})
    frame = frame.sort_values("row_key", ignore_index=True)
    size = min(settings.monitor.drift_reference_rows, len(frame))
    picked = np.sort(np.random.default_rng(REFERENCE_SEED).choice(len(frame), size, replace=False))
    return Reference(
        champion=champion,
        rows=frame.iloc[picked].reset_index(drop=True),
        trained_keys=frozenset(read["row_key"]),
        learned_rows=len(frame),
        exact=exact,
    )
