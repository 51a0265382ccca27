"""The monitoring's records: drift reports and the retraining policy's decisions."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine, Table, insert, select

from covertype.db.tables import drift_reports, retrain_decisions


def _insert(engine: Engine, table: Table, row: Mapping[str, object]) -> int:
    with engine.begin() as conn:
        key = conn.execute(insert(table), dict(row)).inserted_primary_key
    assert key is not None  # a single-row INSERT always has one
    return int(key[0])


def add_drift_report(engine: Engine, row: Mapping[str, object]) -> int:
    """Store one drift report; its id."""
    return _insert(engine, drift_reports, row)


def latest_drift_report(
    engine: Engine,
    kind: str,
    model_name: str,
    champion_version: str | None = None,
    batch_number: int | None = None,
) -> dict | None:
    """The newest computed report of `kind` for the model (and champion version, and batch,
    if given)."""
    query = select(drift_reports).where(
        drift_reports.c.kind == kind,
        drift_reports.c.model_name == model_name,
        drift_reports.c.computed.is_(True),
    )
    if champion_version is not None:
        query = query.where(drift_reports.c.champion_version == champion_version)
    if batch_number is not None:
        query = query.where(drift_reports.c.batch_number == batch_number)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(drift_reports.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def add_retrain_decision(engine: Engine, row: Mapping[str, object]) -> int:
    """Store one decision of the retraining policy; its id."""
    return _insert(engine, retrain_decisions, row)


def rows_after(engine: Engine, table: Table, after_id: int, limit: int = 100) -> list[dict]:
    """Rows of `table` (with an `id`) after `after_id`, oldest first: what is new since."""
    query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
