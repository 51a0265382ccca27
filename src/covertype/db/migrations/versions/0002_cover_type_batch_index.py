"""Index cover_type (batch_number, ingested_at): a batch's rows in ingestion order.

monitor/reference.py's training_rows filters by batch and orders by ingested_at, a batch's
drift report reads one batch, rows_by_batch and the Monitoring tab count rows per batch; all
scanned the whole table (benchmarks/bench_db_index.py measures it).

Revision ID: 0002_cover_type_batch_index
Revises: 0001_baseline
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0002_cover_type_batch_index"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_cover_type_batch_number_ingested_at", "cover_type", ["batch_number", "ingested_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_cover_type_batch_number_ingested_at", table_name="cover_type")
