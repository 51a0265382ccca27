"""The data DB's tables as the code uses them: the schema at the migrations' head.

A change here needs a revision in migrations/versions/ (tests/unit/test_db_migrations.py
fails until the two agree).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

from covertype import schema

metadata = MetaData()
ROW_KEY_LENGTH = 32  # hex chars of a 16-byte BLAKE2b digest


def _feature_columns() -> list[Column]:
    """The 12 features as columns (fresh objects: a Column belongs to one table)."""
    return [
        *(
            Column(f.name, SmallInteger if f.high < 2**15 else Integer, nullable=False)
            for f in schema.NUMERIC_FIELDS
        ),
        Column(schema.WILDERNESS, String(16), nullable=False),
        Column(schema.SOIL, String(8), nullable=False),
    ]


# SQLite autoincrements only an INTEGER PRIMARY KEY; elsewhere 64 bits, for a long log.
_SERIAL = BigInteger().with_variant(Integer, "sqlite")
# MySQL's DATETIME drops fractions of a second unless asked to keep them.
_MICROSECONDS = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

cover_type = Table(
    "cover_type",
    metadata,
    Column("row_key", String(ROW_KEY_LENGTH), primary_key=True),
    *_feature_columns(),
    Column(schema.LABEL, SmallInteger, nullable=False),
    Column("batch_number", SmallInteger, nullable=False),
    Column("group_number", SmallInteger, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    # A batch's rows in ingestion order: the champion's training rows, rows per batch.
    Index("ix_cover_type_batch_number_ingested_at", "batch_number", "ingested_at"),
)

quarantine = Table(
    "cover_type_quarantine",
    metadata,
    Column("raw_key", String(ROW_KEY_LENGTH), primary_key=True),
    Column("raw", Text, nullable=False),  # the row as received, JSON
    Column("reason", Text, nullable=False),
    Column("batch_number", SmallInteger),
    Column("group_number", SmallInteger),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


# What the inference API answered, one row per record (written in bulk by its log writer).
predictions = Table(
    "predictions",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("predicted_at", _MICROSECONDS, nullable=False),
    Column("model_version", String(32), nullable=False),
    *_feature_columns(),  # as normalised by the schema (canonical area and soil code)
    Column("predicted_cover_type", SmallInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),  # of the request that answered it
    Index("ix_predictions_predicted_at", "predicted_at"),
)

# One row per drift report (computed or not: `reason` says why not); see covertype.monitor.
drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # "batch" or "predictions"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("champion_version", String(32)),  # None: there was no champion
    Column("batch_number", SmallInteger),  # kind "batch"
    Column("predictions_from_id", BigInteger),  # kind "predictions": the ids compared
    Column("predictions_to_id", BigInteger),
    Column("reference_rows", Integer, nullable=False),
    Column("current_rows", Integer, nullable=False),
    Column("computed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),  # the summary, or why it was not computed
    Column("dataset_drift", Boolean),
    Column("drifted_features", SmallInteger),
    Column("features", SmallInteger),
    Column("drift_share", Float),
    Column("drift_share_threshold", Float),
    Column("feature_scores", Text),  # JSON: feature → score, test, threshold, drifted
    Column("current_classes", SmallInteger),  # kind "batch": classes in the batch
    Column("live_accuracy", Float),  # kind "batch": the champion on the batch, before training
    Column("live_macro_f1", Float),
    Column("mlflow_run_id", String(32)),
    Index("ix_drift_reports_kind_model", "kind", "model_name", "id"),
)

# Every decision of the retraining policy (covertype.orchestrate), trained or skipped, why.
retrain_decisions = Table(
    "retrain_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("champion_version", String(32)),
    Column("train", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rows_now", Integer, nullable=False),
    Column("champion_rows", Integer, nullable=False),
    Column("run_id", String(250)),  # the Airflow DAG run that decided
)

# The release ledger: every move of the serving alias (`champion`) or of `challenger`, one
# row each, written in the same step as the move (covertype.release.moves).
releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("moved_at", _MICROSECONDS, nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),  # "champion" or "challenger" (their settings)
    # promote, challenge, retire, rollback, automatic_rollback (covertype.release.moves)
    Column("action", String(32), nullable=False),
    Column("from_version", String(32)),  # None: the alias pointed nowhere
    Column("to_version", String(32)),  # None: the alias was removed (a retirement)
    Column("actor", String(250), nullable=False),  # who or which process moved it
    Column("reason", Text, nullable=False),
    Column("scores", Text),  # JSON: the figures the move was decided on
    Index("ix_releases_model_name_id", "model_name", "id"),
)

# The challenger's answers beside the champion's, for the sampled requests the API shadowed
# (off the request path): one row per record, linked to `predictions` by request id.
shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("predicted_at", _MICROSECONDS, nullable=False),
    Column("champion_version", String(32), nullable=False),
    Column("champion_cover_type", SmallInteger, nullable=False),
    # Each model's predict per record as its thread's CPU time (time.thread_time): what the
    # model costs, not the GIL and core waits around a background thread under load.
    Column("champion_predict_us", Float, nullable=False),
    Column("challenger_version", String(32), nullable=False),
    Column("challenger_cover_type", SmallInteger),  # None: the challenger failed
    Column("challenger_predict_us", Float),
    Column("error", Text),  # why the challenger gave no answer
    Index("ix_shadow_predictions_challenger_version_id", "challenger_version", "id"),
)
