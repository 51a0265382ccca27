"""The retraining policy applied to the platform's state, and its decisions recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from covertype.retraining.policy import DriftFacts, RetrainDecision, RetrainFacts, retrain_decision
from covertype.settings import Settings


def decide(settings: Settings, manual: bool = False) -> RetrainDecision:
    """Gather the facts (the champion and the rows it read from the registry, the rows now
    and the latest batch drift report from the data DB) and decide; what the DAG calls."""
    from covertype import db
    from covertype.monitor.reference import find_champion
    from covertype.tracking.client import connect

    champion = find_champion(connect(settings), settings)
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        rows_now = db.count_rows(settings.data_db)[0]
        report = (
            db.latest_drift_report(engine, "batch", settings.mlflow.model_name, champion.version)
            if champion
            else None
        )
    finally:
        engine.dispose()
    drift = None
    if report is not None:
        drift = DriftFacts(
            batch_number=report["batch_number"],
            dataset_drift=bool(report["dataset_drift"]),
            drifted_features=report["drifted_features"],
            features=report["features"],
            share=report["drift_share"],
            threshold=report["drift_share_threshold"],
        )
    facts = RetrainFacts(
        champion_version=champion.version if champion else None,
        champion_rows=champion.rows if champion else 0,
        rows_now=rows_now,
        drift=drift,
        min_new_rows_percent=settings.monitor.retrain_min_new_rows_percent,
        manual=manual,
    )
    return retrain_decision(facts)


def record(settings: Settings, decision: RetrainDecision, run_id: str | None) -> int:
    """The decision into the data DB's `retrain_decisions` (what `covertype up` and the UI
    show); its id."""
    from covertype import db

    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        return db.add_retrain_decision(
            engine,
            {
                "decided_at": datetime.now(UTC),
                "model_name": settings.mlflow.model_name,
                "champion_version": decision.facts.champion_version,
                "train": decision.train,
                "reason": decision.reason,
                "rows_now": decision.facts.rows_now,
                "champion_rows": decision.facts.champion_rows,
                "run_id": run_id,
            },
        )
    finally:
        engine.dispose()
