"""The release ledger (`releases`) and the challenger's shadow answers (`shadow_predictions`).

Revision ID: 0003_releases
Revises: 0002_cover_type_batch_index
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_releases"
down_revision = "0002_cover_type_batch_index"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_MICROSECONDS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("moved_at", _MICROSECONDS, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version", sa.String(32)),
        sa.Column("to_version", sa.String(32)),
        sa.Column("actor", sa.String(250), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("scores", sa.Text),
    )
    op.create_index("ix_releases_model_name_id", "releases", ["model_name", "id"])
    op.create_table(
        "shadow_predictions",
        sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("predicted_at", _MICROSECONDS, nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=False),
        sa.Column("champion_cover_type", sa.SmallInteger, nullable=False),
        sa.Column("champion_predict_us", sa.Float, nullable=False),
        sa.Column("challenger_version", sa.String(32), nullable=False),
        sa.Column("challenger_cover_type", sa.SmallInteger),
        sa.Column("challenger_predict_us", sa.Float),
        sa.Column("error", sa.Text),
    )
    op.create_index(
        "ix_shadow_predictions_challenger_version_id",
        "shadow_predictions",
        ["challenger_version", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_predictions_challenger_version_id", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
    op.drop_index("ix_releases_model_name_id", table_name="releases")
    op.drop_table("releases")
