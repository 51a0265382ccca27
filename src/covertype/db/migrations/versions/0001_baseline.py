"""Baseline: the five tables and two indexes that `metadata.create_all` made until now.

Frozen: the columns are written out here (every numeric feature SMALLINT: all fit 2**15),
not taken from tables.py, which moves on with later revisions.

Adopts a DB made by create_all (no alembic_version): a table that exists keeps its rows and
gets only the columns and indexes it lacks; a missing table is created. Releases before the
monitoring (git 0e9f908) made only cover_type and cover_type_quarantine.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MICROSECONDS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def features() -> list[sa.Column]:
    return [
        *(
            sa.Column(name, sa.SmallInteger(), nullable=False)
            for name in (
                "Elevation",
                "Aspect",
                "Slope",
                "Horizontal_Distance_To_Hydrology",
                "Vertical_Distance_To_Hydrology",
                "Horizontal_Distance_To_Roadways",
                "Hillshade_9am",
                "Hillshade_Noon",
                "Hillshade_3pm",
                "Horizontal_Distance_To_Fire_Points",
            )
        ),
        sa.Column("Wilderness_Area", sa.String(16), nullable=False),
        sa.Column("Soil_Type", sa.String(8), nullable=False),
    ]


def tables() -> dict[str, list[sa.Column]]:
    return {
        "cover_type": [
            sa.Column("row_key", sa.String(32), primary_key=True),
            *features(),
            sa.Column("Cover_Type", sa.SmallInteger(), nullable=False),
            sa.Column("batch_number", sa.SmallInteger(), nullable=False),
            sa.Column("group_number", sa.SmallInteger(), nullable=False),
            sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        ],
        "cover_type_quarantine": [
            sa.Column("raw_key", sa.String(32), primary_key=True),
            sa.Column("raw", sa.Text(), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("batch_number", sa.SmallInteger()),
            sa.Column("group_number", sa.SmallInteger()),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        ],
        "predictions": [
            sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(64), nullable=False),
            sa.Column("predicted_at", MICROSECONDS, nullable=False),
            sa.Column("model_version", sa.String(32), nullable=False),
            *features(),
            sa.Column("predicted_cover_type", sa.SmallInteger(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=False),
        ],
        "drift_reports": [
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model_name", sa.String(128), nullable=False),
            sa.Column("champion_version", sa.String(32)),
            sa.Column("batch_number", sa.SmallInteger()),
            sa.Column("predictions_from_id", sa.BigInteger()),
            sa.Column("predictions_to_id", sa.BigInteger()),
            sa.Column("reference_rows", sa.Integer(), nullable=False),
            sa.Column("current_rows", sa.Integer(), nullable=False),
            sa.Column("computed", sa.Boolean(), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("dataset_drift", sa.Boolean()),
            sa.Column("drifted_features", sa.SmallInteger()),
            sa.Column("features", sa.SmallInteger()),
            sa.Column("drift_share", sa.Float()),
            sa.Column("drift_share_threshold", sa.Float()),
            sa.Column("feature_scores", sa.Text()),
            sa.Column("current_classes", sa.SmallInteger()),
            sa.Column("live_accuracy", sa.Float()),
            sa.Column("live_macro_f1", sa.Float()),
            sa.Column("mlflow_run_id", sa.String(32)),
        ],
        "retrain_decisions": [
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model_name", sa.String(128), nullable=False),
            sa.Column("champion_version", sa.String(32)),
            sa.Column("train", sa.Boolean(), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("rows_now", sa.Integer(), nullable=False),
            sa.Column("champion_rows", sa.Integer(), nullable=False),
            sa.Column("run_id", sa.String(250)),
        ],
    }


INDEXES = {  # name: table, columns
    "ix_predictions_predicted_at": ("predictions", ["predicted_at"]),
    "ix_drift_reports_kind_model": ("drift_reports", ["kind", "model_name", "id"]),
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for name, columns in tables().items():
        if name not in present:
            op.create_table(name, *columns)
            continue
        have = {c["name"] for c in inspector.get_columns(name)}
        for column in columns:
            if column.name not in have:  # a NOT NULL one fails on rows: the DB says so
                op.add_column(name, column)
    for index, (table, indexed) in INDEXES.items():
        indexes = inspector.get_indexes(table) if table in present else []
        if index not in {i["name"] for i in indexes}:
            op.create_index(index, table, indexed)


def downgrade() -> None:
    for name in reversed(tables()):
        op.drop_table(name)
