"""Index cover_type (batch_number, ingested_at): a batch's rows in ingestion order.

monitor/reference.py's training_rows filters by batch and orders by ingested_at, a batch's
drift report reads one batch, rows_by_batch and the Monitoring tab count rows per batch.

Measured 2026-12-06 on the 403,383 real rows in MariaDB 10.11 (benchmarks/bench_db_index.py,
median of 15, ms as the caller sees them / the server's own time): rows per batch 67 -> 38
(server 73 -> 47, the index alone is read); a batch's 40k rows 117 -> 112 server-side and the
champion's training rows (121k, 363k) unchanged: each batch is a tenth of the table, so the
server scans or reads most pages either way and fetching the rows dominates (0.3-3.3 s). The
cost: ingesting a 40k-row batch (LOAD DATA) 422 -> 519 ms. The migration took 0.4 s.

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
