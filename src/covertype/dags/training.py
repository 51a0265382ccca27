"""
### Training: drift and live accuracy of the new batch, the retraining policy, then (if it
### pays) a random search registered in MLflow and gated into the champion

Runs when the Asset `cover_type` was updated (a collection run stored new rows; updates that
arrive while a training runs are taken together by the next run), or by hand with params:
`n_iter` (candidates; empty: `COVERTYPE_TRAIN_N_ITER`), `families`, and `apply_policy` (a run
by hand trains unless this is set).

- **monitor_batches**: for each batch the triggering collections stored, its Evidently drift
  report against the champion's training rows and the champion's accuracy and macro F1 on the
  batch (`covertype.monitor.batch_report`): the one the collection made, else made now (the
  collection could not reach MLflow; a run by hand), stored in `drift_reports` and logged to
  the MLflow experiment `covertype-monitoring`. The "before" of every retraining.
- **decide**: the retraining policy (`covertype.retraining.decisions.decide`): train
  without a champion, on drift, or when the new rows are at least
  `COVERTYPE_RETRAIN_MIN_NEW_ROWS_PERCENT` of what the champion read; recorded in
  `retrain_decisions`.
- **train_model**: skipped with the policy's reason when it says no. Otherwise it calls
  `covertype.train.train` (what `covertype train` does): every stored row, a random search
  over the families, one MLflow run per candidate, the best registered as a new version; the
  gate moves the alias `champion` only when that version beats the champion on the same
  held-out rows. Its XCom is the result: version, family, holdout metrics, `promoted` and the
  gate's `decision`. Retried when MLflow is unreachable; a training that cannot start (no
  rows, one class) fails at once.
- **publish_champion** updates the Asset `covertype_champion` (extra: version, metrics,
  decision) for whatever serves or reports on the champion; skipped when the champion did not
  change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from covertype.orchestrate import schedule
from covertype.retraining import decisions
from covertype.settings import get_settings
from covertype.train.families import FAMILIES

log = logging.getLogger(__name__)
settings = get_settings()
COVER_TYPE = schedule.cover_type_asset()
CHAMPION = schedule.champion_asset(settings)


@dag(
    dag_id=schedule.TRAIN_DAG,
    schedule=[COVER_TYPE],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "n_iter": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Candidates of the random search (empty: COVERTYPE_TRAIN_N_ITER).",
        ),
        "families": Param(
            list(FAMILIES),
            type="array",
            items={"type": "string", "enum": list(FAMILIES)},
            minItems=1,
            uniqueItems=True,
            description="Model families to search, in turn.",
        ),
        "apply_policy": Param(
            False,
            type="boolean",
            description="A run by hand trains; with this set it asks the retraining policy.",
        ),
    },
    doc_md=__doc__,
    tags=["covertype"],
)
def covertype_train():
    @task(retries=2, retry_delay=timedelta(seconds=30))
    def monitor_batches(triggering_asset_events=None) -> list[dict]:
        from covertype import db
        from covertype.monitor.reports import batch_reports

        current = get_settings()
        extras = [e.extra for events in (triggering_asset_events or {}).values() for e in events]
        latest = max(db.rows_by_batch(current.data_db), default=None)
        return batch_reports(current, schedule.batches_to_report(extras, latest))

    @task
    def decide(reports: list[dict], params: dict | None = None, dag_run=None) -> dict:
        current = get_settings()
        by_hand = dag_run is not None and dag_run.run_type == "manual"
        assert params is not None  # Airflow hands every task the run's params
        manual = by_hand and not params["apply_policy"]
        decision = decisions.decide(current, manual=manual)
        decisions.record(current, decision, dag_run.run_id if dag_run else None)
        log.info("%s: %s", "train" if decision.train else "skip", decision.reason)
        return {"train": decision.train, "reason": decision.reason}

    @task(
        retries=2,
        retry_delay=timedelta(minutes=1),
        retry_exponential_backoff=2.0,
        execution_timeout=timedelta(seconds=settings.airflow.train_timeout_seconds),
    )
    def train_model(decision: dict, params: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from covertype.train import TrainingError, train

        if not decision["train"]:
            raise AirflowSkipException(f"no retraining: {decision['reason']}")
        log.info("retraining: %s", decision["reason"])
        assert params is not None  # Airflow hands every task the run's params
        try:
            result = train(get_settings(), params["n_iter"], params["families"], log.info)
        except TrainingError as error:
            raise AirflowFailException(f"training cannot run: {error}") from error
        log.info("version %s: %s", result.version, result.decision)
        return result.as_dict()

    @task(outlets=[CHAMPION])
    def publish_champion(result: dict, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if result["alias"] != get_settings().mlflow.model_alias:  # refused, or challenger
            raise AirflowSkipException(f"champion unchanged: {result['decision']}")
        extra = {
            key: result[key]
            for key in ("model_name", "version", "family", "holdout_macro_f1", "decision")
        }
        outlet_events[CHAMPION].extra = extra
        return extra

    # (Airflow types a task's call with its function's parameters, not the XComArgs it takes.)
    publish_champion(train_model(decide(monitor_batches())))  # type: ignore[arg-type]


covertype_train()
